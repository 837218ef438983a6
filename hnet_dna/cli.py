"""``hnet-dna`` command line: a thin dispatcher to subcommands.

Subcommands register a runner taking their own argument list, so later tools (``embed``,
``score-variants``, ``probe``) plug in with :func:`register_command` without touching the rest.
``pretrain`` hands its arguments to hydra: ``hnet-dna pretrain model=... trainer.max_steps=...``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Runner = Callable[[list[str]], "int | None"]


@dataclass(frozen=True)
class Command:
    help: str
    run: Runner


COMMANDS: dict[str, Command] = {}


def register_command(name: str, help: str, run: Runner) -> None:
    """Add a subcommand; ``run(args)`` gets the arguments after the subcommand name."""
    if name in COMMANDS:
        raise ValueError(f"hnet-dna command {name!r} is already registered")
    COMMANDS[name] = Command(help, run)


def _pretrain(args: list[str]) -> int:
    # Imported here so `hnet-dna --help` does not pay for torch and hydra.
    from hnet_dna.training.pretrain import hydra_main

    # hydra.main reads sys.argv: present the overrides as if `pretrain` were the program.
    saved = sys.argv
    sys.argv = ["hnet-dna pretrain", *args]
    try:
        hydra_main()  # failures exit through hydra with status 1
    finally:
        sys.argv = saved
    return 0


def _evaluation(function_name: str) -> Runner:
    """Runner for a ``hnet_dna.evaluation.cli.main_*`` function, imported on first use."""

    def run(args: list[str]) -> int:
        from hnet_dna.evaluation import cli as evaluation_cli

        return getattr(evaluation_cli, function_name)(args)

    return run


register_command(
    "pretrain",
    "train an H-Net language model (hydra overrides follow; --help lists the config groups)",
    _pretrain,
)
register_command(
    "embed", "pooled / per-base embeddings and chunk boundaries of sequences",
    _evaluation("main_embed"),
)
register_command(
    "track", "per-base log-likelihood and chunk-boundary tracks (bedGraph, bigWig, BED)",
    _evaluation("main_track"),
)
register_command(
    "score-variants", "zero-shot scores for every ALT of a VCF/BCF",
    _evaluation("main_score_variants"),
)
register_command(
    "probe", "probe frozen embeddings against k-mer and random-init baselines",
    _evaluation("main_probe"),
)



def _merge(args: list[str]) -> int:
    from hnet_dna.evaluation.merge import main_merge

    return main_merge(args)


register_command(
    "merge", "gather the parts of a sharded score-variants / embed / track run", _merge)


def _convert_official(args: list[str]) -> int:
    from hnet_dna.convert import main as convert_main

    return convert_main(args)


register_command(
    "convert-official",
    "official H-Net checkpoint (JSON config + .pt) -> model folder (from_pretrained)",
    _convert_official,
)


def _prepare(args: list[str]) -> int:
    from hnet_dna.genomics.prepare_cli import main as prepare_main

    return prepare_main(args)


register_command(
    "prepare",
    "convert genomes once (gzip, GenBank, EMBL, folders) into the form every rank shares",
    _prepare,
)


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: hnet-dna [--version] <command> [arguments]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {cmd.help}" for name, cmd in sorted(COMMANDS.items())]
    lines += ["", "`hnet-dna <command> --help` describes a command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        from hnet_dna._version import __version__

        print(f"hnet-dna {__version__}")
        return 0
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"hnet-dna: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return command.run(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
