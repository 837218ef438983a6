"""``hnet-dna probe``: probes on frozen embeddings against a k-mer baseline and a random-init
control, on identical splits of one or several tasks, in one summary table."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from hnet_dna.errors import InputError
from hnet_dna.training.distributed import resolve_device

from .common import (
    add_model_options,
    add_output_options,
    add_window_options,
    check_outputs_and_space,
    command,
    new_parser,
    positive_int,
)

#: probe options that shape build:KIND tasks only (benchmark tasks come split and sized)
BUILD_OPTIONS = ("fasta", "gff", "task_window", "max_per_class", "block")


def build_parser() -> argparse.ArgumentParser:
    import inspect

    from ..probing import HEADS
    from ..task_builders import TASK_KINDS, build_task
    from ..tasks import TASK_ROOT_ENV

    built = inspect.signature(build_task).parameters
    p = new_parser("hnet-dna probe", (
        "Probe frozen embeddings (logistic regression, MLP) against a k-mer baseline and a "
        "random-init control on the same splits; optionally fine-tune. Several --task give one "
        "summary table."))
    add_model_options(p, model_required=False)
    p.add_argument("--task", action="append", required=True, metavar="SPEC",
                   help="required, repeatable: csv:FOLDER (train/dev/test.csv), gb:FOLDER "
                        "(Genomic Benchmarks), gue:NAME or nt:NAME (under --task-root), or "
                        f"build:KIND with KIND in {TASK_KINDS}")
    p.add_argument("--task-root", default=None,
                   help=f"folder holding GUE / NT task folders (default: ${TASK_ROOT_ENV})")
    # build:KIND only, refused with other tasks: None = not given (build_task's default applies)
    p.add_argument("--fasta", help="genome for build:KIND")
    p.add_argument("--gff", help="annotation for build:KIND")
    p.add_argument("--task-window", type=positive_int,
                   help=f"build: window length (default {built['window'].default})")
    p.add_argument("--max-per-class", type=positive_int, help="build: cap per class and split")
    p.add_argument("--block", type=positive_int,
                   help=f"build: split block size (default {built['block'].default})")
    p.add_argument("--random-init", action="store_true",
                   help="also probe a randomly initialised model of the same architecture")
    p.add_argument("--no-kmer", action="store_true", help="skip the k-mer baseline")
    p.add_argument("--kmer-k", default="4,5,6",
                   help="comma-separated k values of the baseline (each 1-8)")
    p.add_argument("--heads", default=",".join(HEADS), help=f"comma-separated, of {HEADS}")
    p.add_argument("--seeds", type=positive_int, default=3,
                   help="seeds per head (logreg with a dev split is deterministic: one fit)")
    p.add_argument("--depth", action="append", help="embedding depth(s); default final")
    p.add_argument("--pool", default="mean", help="mean | chunk_mean | last")
    p.add_argument("--strand-average", action="store_true",
                   help="average forward and reverse-complement embeddings")
    add_window_options(p, "embedding window")
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="also fine-tune the model end to end (0 = off)")
    p.add_argument("--finetune-lr", type=float, default=3e-4, help="fine-tuning learning rate")
    add_output_options(p, "per-seed results of every task (.parquet); the summary is printed",
                       required=False, overwrite_help="replace an existing --out")
    return p


def check_args(args: argparse.Namespace, p: argparse.ArgumentParser
               ) -> tuple[list[str], list[int]]:
    """Option values and combinations, before anything is read; returns (heads, k values)."""
    from ..embeddings import POOLS
    from ..kmer_features import check_ks
    from ..probing import HEADS

    heads = [h for h in args.heads.split(",") if h]
    if not heads or set(heads) - set(HEADS):
        p.error(f"--heads: choose from {HEADS}, got {args.heads!r}")
    if args.pool not in POOLS:
        p.error(f"--pool: choose from {POOLS}, got {args.pool!r}")
    try:
        ks = check_ks(int(k) for k in args.kmer_k.split(","))
    except ValueError as err:  # not integers, or out of range
        p.error(str(err) if isinstance(err, InputError) else
                f"--kmer-k: comma-separated integers, got {args.kmer_k!r}")
    if args.finetune_epochs < 0:
        p.error("--finetune-epochs must be >= 0")
    if not args.model and (args.random_init or args.finetune_epochs):
        p.error("--random-init and --finetune-epochs need --model")
    if not args.model and args.no_kmer:
        p.error("nothing to probe: give --model and/or keep the k-mer baseline")
    if not any(spec.startswith("build:") for spec in args.task):
        for dest in BUILD_OPTIONS:
            if getattr(args, dest) is not None:
                p.error(f"--{dest.replace('_', '-')} only applies to build:KIND tasks; "
                        "benchmark and CSV tasks come split and sized")
    return heads, ks


def run(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    from hnet_dna.outputs import atomic_output

    from ..probing import summarize

    heads, ks = check_args(args, p)
    # every task read and checked, and the output checked, before any compute
    tasks = [load_probe_task(spec, args, p) for spec in args.task]
    check_distinct_tasks(p, args.task, tasks)
    for task in tasks:
        task.require_every_class()
    if args.out:
        if Path(args.out).suffix != ".parquet":
            p.error(f"--out must end in .parquet, got {args.out}")
        sources = [src for t in tasks for src in t.sources.values()]
        check_outputs_and_space([args.out], [*sources, args.fasta, args.gff], args.overwrite)
    models = probed_models(args)
    rows: list[dict] = []
    for task in tasks:
        rows += [{"task": task.name, **r} for r in probe_task(args, task, models, heads, ks)]
    table = pl.DataFrame(rows)
    if args.out:
        with atomic_output(args.out) as tmp:
            table.write_parquet(tmp)
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, float_precision=4, tbl_rows=-1):
        print(summarize(table))
    return 0


def probed_models(args: argparse.Namespace) -> list[tuple[str, object]]:
    """``[("hnet", model)]`` (plus its random-init control), or none without ``--model``."""
    from hnet_dna.model.build import build_model

    from ..runner import load_model

    models = []
    if args.model:
        device = resolve_device(args.device)
        model = load_model(args.model, device)
        models.append(("hnet", model))
        if args.random_init:
            control = build_model(model.config, seed=0, device=device).eval()
            models.append(("hnet_random_init", control))
    return models


def probe_task(args: argparse.Namespace, task, models: Sequence[tuple[str, object]],
               heads: list[str], ks: list[int]) -> list[dict]:
    """Rows of one task: the k-mer baseline and every model's probes (and fine-tuning)."""
    from ..embeddings import Embedder
    from ..kmer_features import kmer_features
    from ..probing import embed_task, finetune, probe_features
    from ..runner import PerBaseForward

    seeds = list(range(args.seeds))
    progress = not args.no_progress
    print(f"task {task.name}: {task.summary()}")
    labels = {s: sp.labels for s, sp in task.splits.items()}
    rows: list[dict] = []
    if not args.no_kmer:
        feats = {s: kmer_features(sp.sequences, ks) for s, sp in task.splits.items()}
        rows += probe_features(f"kmer{''.join(map(str, ks))}", feats, labels, heads, seeds,
                               progress=progress)
    for name, model in models:
        embedder = Embedder(PerBaseForward(model, args.batch_size), args.depth or ["final"],
                            args.pool, args.strand_average, args.window,
                            min(256, args.window // 4), progress=progress)
        feats = embed_task(embedder, task)
        print(f"{name}: embedded at {embedder.bases_per_second:.0f} bases/s")
        rows += probe_features(name, feats, labels, heads, seeds, progress=progress)
        if args.finetune_epochs:
            for seed in seeds:
                m = finetune(model, task, args.finetune_epochs, args.finetune_lr,
                             args.batch_size, seed=seed, progress=progress)
                rows.append({"features": name, "head": "finetune", "seed": seed, **m})
    return rows


def load_probe_task(spec: str, args: argparse.Namespace, p: argparse.ArgumentParser):
    """The task of one ``--task`` spec (``build:KIND`` built from ``--fasta``/``--gff``)."""
    from ..tasks import load_task

    if spec.startswith("build:"):
        from hnet_dna.genomics.fasta import Genome

        from ..task_builders import TASK_KINDS, build_task

        kind = spec.split(":", 1)[1]
        if kind not in TASK_KINDS:
            p.error(f"--task {spec}: choose build:KIND with KIND in {TASK_KINDS}")
        if not (args.fasta and args.gff):
            p.error("build:KIND needs --fasta and --gff")
        sizes = {"window": args.task_window, "block": args.block,
                 "max_per_class": args.max_per_class}
        return build_task(kind, Genome(args.fasta), args.gff,
                          **{k: v for k, v in sizes.items() if v is not None})
    return load_task(spec, args.task_root)


def check_distinct_tasks(p: argparse.ArgumentParser, specs: Sequence[str], tasks) -> None:
    """Each task once: a task given twice would count as twice the seeds in the summary, and
    two tasks of one name would be merged there."""
    seen: dict[object, str] = {}
    names: dict[str, str] = {}
    for spec, task in zip(specs, tasks, strict=True):
        files = tuple(sorted(str(Path(f).resolve()) for f in task.sources.values()))
        key = files or spec  # built tasks read no task files: their spec identifies them
        if key in seen:
            p.error(f"--task {spec} names the same task as --task {seen[key]}; give each task "
                    "once (--seeds sets the repeats)")
        seen[key] = spec
        if task.name in names:
            p.error(f"--task {names[task.name]} and --task {spec} are both named {task.name!r}; "
                    "the summary would merge them (use gue:/nt: names or distinct folders)")
        names[task.name] = spec


main = command(build_parser, run)
main.__doc__ = "``hnet-dna probe``; returns the exit code."
