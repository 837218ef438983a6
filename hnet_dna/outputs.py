"""Outputs are written whole or not at all, and never over a user's input.

Every command checks each output location before it computes anything
(:func:`check_output`), then writes each file through :func:`atomic_output`: a temporary file
in the same folder, fsynced and renamed into place on success, removed on failure. A full disk
surfaces as ``disk full while writing <path>`` instead of a truncated file, whichever library
hit it (Python's ``OSError`` or a Rust writer's ``... (os error 28)``, e.g. polars' parquet).
While a temporary exists, SIGTERM (what batch schedulers and ``kill`` send) is turned into
``SystemExit(143)`` (:func:`sigterm_cleanup`), so temporaries are removed as on Ctrl-C.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hnet_dna.errors import OutputError

__all__ = [
    "atomic_output", "check_free_space", "check_output", "check_outputs", "current_umask",
    "is_disk_full",
    "same_file", "sigterm_cleanup",
]

PathLike = str | os.PathLike


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (hard links and symlinks included)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(
    path: PathLike,
    *,
    inputs: Iterable[PathLike | None] = (),
    overwrite: bool = False,
    min_free_bytes: int = 0,
    what: str = "output",
) -> Path:
    """Refuse an output before any work is done; returns the path.

    Refused: a path that resolves to one of ``inputs`` (even with ``overwrite``), an existing
    file without ``overwrite``, a directory, a parent folder that is not a writable directory
    (missing parents are created), and less than ``min_free_bytes`` free on its file system.
    """
    path = Path(path)
    for source in inputs:
        if source is not None and same_file(path, source):
            raise OutputError(f"{what} {path} is the input file {source}; refusing to overwrite it")
    if path.is_dir():
        raise OutputError(f"{what} {path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{what} {path} already exists; pass --overwrite to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the folder of {what} {path}: {err.strerror}") from None
    if not parent.is_dir():
        raise OutputError(f"cannot write {what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {what} {path}: folder {parent} is not writable")
    check_free_space(path, min_free_bytes, what)
    return path


def check_free_space(path: PathLike, min_free_bytes: int, what: str = "output") -> None:
    """Refuse (:class:`OutputError`) when the file system of ``path``'s folder has less than
    ``min_free_bytes`` free: a rough estimate, checked before writing, so a command stops
    with the size it needs rather than on a full disk."""
    if min_free_bytes <= 0:
        return
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    free = shutil.disk_usage(parent).free
    if free < min_free_bytes:
        raise OutputError(
            f"not enough free space for {what} {path}: about {min_free_bytes:,} bytes "
            f"needed, {free:,} free in {parent}")


def check_outputs(
    paths: Iterable[PathLike], *, inputs: Iterable[PathLike | None] = (), overwrite: bool = False
) -> list[Path]:
    """:func:`check_output` for several outputs of one command; also refuses duplicates."""
    inputs = list(inputs)
    checked: list[Path] = []
    for p in paths:
        p = check_output(p, inputs=inputs, overwrite=overwrite)
        if any(same_file(p, q) for q in checked):
            raise OutputError(f"output {p} is named twice")
        checked.append(p)
    return checked


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` reports a full disk: ``OSError`` ENOSPC, or a library that renders the OS
    error in its message (Rust's ``std::io::Error`` ends with ``(os error 28)``, which polars'
    parquet writer wraps in a ``ComputeError``)."""
    if isinstance(err, OSError):
        return err.errno == errno.ENOSPC
    return f"(os error {errno.ENOSPC})" in str(err)


_sigterm_depth = 0  # nesting of sigterm_cleanup() in the main thread
_sigterm_installed = False


def _raise_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def sigterm_cleanup() -> Iterator[None]:
    """While inside, SIGTERM raises ``SystemExit(143)`` in the main thread instead of ending the
    process at once, so ``finally`` / ``except`` blocks remove temporaries as on Ctrl-C.

    Re-entrant; the default action is restored when the outermost block exits. Nothing is
    changed outside the main thread (Python runs signal handlers there only) or when the
    program installed its own SIGTERM handler.
    """
    global _sigterm_depth, _sigterm_installed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _sigterm_depth == 0 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
        _sigterm_installed = True
    _sigterm_depth += 1
    try:
        yield
    finally:
        _sigterm_depth -= 1
        if _sigterm_depth == 0 and _sigterm_installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _sigterm_installed = False


@contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The writer writes the temporary file (by name; any library that takes a path works).
    On an exception (SIGTERM included, see :func:`sigterm_cleanup`) the temporary is removed
    and ``path`` is untouched; a full disk (:func:`is_disk_full`) becomes
    ``OSError(ENOSPC, "disk full while writing <path>")``. The result gets the permissions a
    plain ``open(path, "w")`` would (umask), not mkstemp's 0600.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    with sigterm_cleanup():
        # Keep the suffixes: writers such as pysam and polars choose the format from the name.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.",
                                        suffix=".tmp" + "".join(path.suffixes), dir=parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, path)
        except Exception as err:
            tmp.unlink(missing_ok=True)
            if is_disk_full(err):
                raise OSError(errno.ENOSPC, f"disk full while writing {path}") from err
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def current_umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask
