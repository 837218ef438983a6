"""Outputs are written whole or not at all, and never over a user's input.

Every command checks each output location before it computes anything
(:func:`check_output`), then writes each file through :func:`atomic_output`: a temporary file
in the same folder, fsynced and renamed into place on success, removed on failure. A full disk
surfaces as ``disk full while writing <path>`` instead of a truncated file.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hnet_dna.errors import OutputError

__all__ = ["atomic_output", "check_output", "check_outputs", "same_file"]

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
    if min_free_bytes > 0:
        free = shutil.disk_usage(parent).free
        if free < min_free_bytes:
            raise OutputError(
                f"not enough free space for {what} {path}: about {min_free_bytes:,} bytes "
                f"needed, {free:,} free in {parent}")
    return path


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


@contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The writer writes the temporary file (by name; any library that takes a path works).
    On an exception the temporary is removed and ``path`` is untouched; ENOSPC becomes
    ``OSError("disk full while writing <path>")``. The result gets the permissions a plain
    ``open(path, "w")`` would (umask), not mkstemp's 0600.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    # Keep the suffixes: writers such as pysam and polars choose the format from the name.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes),
                                    dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"disk full while writing {path}") from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
