"""What every evaluation subcommand shares: the parser, the options, the exit-code contract.

A command module defines ``build_parser()`` and a body ``run(args, parser) -> int`` and exposes
``main = command(build_parser, run)``. :func:`command` parses, sets up logging and maps what the
body raises to an exit code: 0 on success, 2 for bad input (one line naming the
file/record/option: :class:`hnet_dna.errors.InputError`, a missing or unreadable path, a full
disk), 1 for an internal error (a bug: one line, the traceback with ``-v``). Every output is
checked before any work (:func:`check_outputs_and_space`) and written through a temporary file
(:mod:`hnet_dna.outputs`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from hnet_dna.errors import InputError
from hnet_dna.outputs import check_free_space, check_outputs, is_disk_full
from hnet_dna.training.distributed import resolve_device

log = logging.getLogger("hnet_dna.evaluation")

#: OS errors on a user's path (missing input, unreadable file): reported as input.
USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)

#: the shortest window that gives the model context
MIN_WINDOW = 8

Body = Callable[[argparse.Namespace, argparse.ArgumentParser], int]


# ---------------------------------------------------------------------------- parsers
class HelpFormatter(argparse.HelpFormatter):
    """``--help`` shows every option's default (flags and unset options have none to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "%(default)" not in text):
            text += " (default: %(default)s)"
        return text


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=HelpFormatter)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def window_size(text: str) -> int:
    """argparse type: a window of at least :data:`MIN_WINDOW` bases."""
    value = positive_int(text)
    if value < MIN_WINDOW:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_WINDOW} bases to give the model context, got {value}")
    return value


def device_name(name: str) -> str:
    """argparse type for ``--device``: a known device type that exists here."""
    try:
        resolve_device(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name


# ---------------------------------------------------------------------------- shared options
def add_model_options(p: argparse.ArgumentParser, model_required: bool = True) -> None:
    """``--model``, ``--device``, ``--batch-size``, ``--no-progress``, ``-v``."""
    p.add_argument("--model", required=model_required,
                   help="saved model folder, trainer run folder (newest step-N checkpoint) or "
                        "Hugging Face Hub repository org/name[@revision]")
    p.add_argument("--device", default="auto", type=device_name,
                   help="auto | cpu | cuda[:i] (checked before any work)")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="windows per forward pass")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log progress details; show the traceback of an internal error")


def add_output_options(p: argparse.ArgumentParser, out_help: str, *, required: bool = True,
                       overwrite_help: str = "replace existing output files") -> None:
    """``--out`` and ``--overwrite`` (outputs are refused before any work, see
    :func:`check_outputs_and_space`)."""
    p.add_argument("--out", required=required, help=out_help)
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)


def add_window_options(p: argparse.ArgumentParser, window_help: str,
                       overlap_help: str | None = None) -> None:
    """``--window`` (bases per forward pass) and, for sliding windows, ``--overlap``
    (checked against the window by :func:`check_window`)."""
    p.add_argument("--window", type=window_size, default=1024, help=window_help)
    if overlap_help is not None:
        p.add_argument("--overlap", type=int, default=256, help=overlap_help)


def check_window(p: argparse.ArgumentParser, window: int, overlap: int) -> None:
    if not 0 <= overlap < window:
        p.error(f"--overlap must be >= 0 and smaller than --window ({window}), got {overlap}")


def check_outputs_and_space(paths: Sequence, inputs: Sequence, overwrite: bool,
                            free_bytes: int = 0) -> list[Path]:
    """Every output of a command checked before any work (see :mod:`hnet_dna.outputs`), plus
    a rough free-space estimate for all of them together."""
    checked = check_outputs(paths, inputs=[i for i in inputs if i is not None],
                            overwrite=overwrite)
    if checked:
        check_free_space(checked[0], free_bytes, what="outputs starting with")
    return checked


# ---------------------------------------------------------------------------- running
def setup_logging(verbose: bool) -> None:
    """Logging, and torch's threads from the CPUs this process was given (logged with -v)."""
    from hnet_dna.training.resources import setup_threads

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    setup_threads()


def command(build_parser: Callable[[], argparse.ArgumentParser], body: Body
            ) -> Callable[[Sequence[str] | None], int]:
    """``main(argv) -> exit code`` of a subcommand: parse, set up logging, run ``body``."""

    def main(argv: Sequence[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        try:
            parser = build_parser()
            parsed = parser.parse_args(argv)
            setup_logging(parsed.verbose)
            return body(parsed, parser)
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        except USER_OS_ERRORS as err:
            where = f"{err.filename}: " if err.filename else ""
            print(f"error: {where}{err.strerror or err}", file=sys.stderr)
            return 2
        except OSError as err:
            if is_disk_full(err):  # atomic_output: "disk full while writing PATH"
                print(f"error: {err.strerror or err}", file=sys.stderr)
                return 2
            return _internal(err, args)
        except Exception as err:  # noqa: BLE001 - everything else is a bug in hnet_dna
            return _internal(err, args)

    return main


def _internal(err: BaseException, args: list[str]) -> int:
    verbose = "-v" in args or "--verbose" in args
    if verbose:
        traceback.print_exc()
    print(f"internal error (a bug in hnet_dna, please report it): {type(err).__name__}: {err}"
          + ("" if verbose else "; rerun with -v for the traceback"), file=sys.stderr)
    return 1
