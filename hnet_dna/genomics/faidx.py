"""faidx indexes (``.fai``, ``.gzi``): where they go, when they are rebuilt, how they are built.

The index is written next to the FASTA, or into a cache folder keyed by the FASTA's absolute path
when that folder is read-only (installed data packages, shared storage).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from pathlib import Path

from .records import SequenceFormatError, is_bgzf

log = logging.getLogger(__name__)


class IndexFolderError(OSError):
    """The FASTA has no index and no folder to write one into; the message says what to run."""


def ensure_index(path: Path, index_dir: str | os.PathLike | None, backend: str
                  ) -> tuple[Path, Path | None]:
    """Return ``(fai, gzi | None)``, building them when missing or stale."""
    bgzf = is_bgzf(path)
    local = (Path(f"{path}.fai"), Path(f"{path}.gzi") if bgzf else None)
    if _fresh(path, *local):
        return local
    if index_dir is None and os.access(path.parent, os.W_OK):
        fai, gzi = local
    else:
        # read-only data folders (installed packages, shared storage): index into a cache keyed
        # by the absolute path so two genomes with the same file name do not collide
        root = Path(index_dir) if index_dir else Path.home() / ".cache" / "hnet_dna" / "faidx"
        key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
        root = root / key
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise IndexFolderError(
                f"{path}: no up-to-date faidx index, and cannot create the index folder {root} "
                f"({err.strerror}); build one with `samtools faidx {path}` where it is "
                "writable, or pass index_dir= a writable folder") from None
        fai = root / (path.name + ".fai")
        gzi = root / (path.name + ".gzi") if bgzf else None
        if _fresh(path, fai, gzi):
            return fai, gzi
    log.info("indexing %s -> %s", path, fai)
    _build_index(path, fai, gzi, backend)
    return fai, gzi


def _fresh(path: Path, fai: Path, gzi: Path | None) -> bool:
    mtime = path.stat().st_mtime
    return all(p.is_file() and p.stat().st_mtime >= mtime for p in (fai, gzi) if p is not None)


def _build_index(path: Path, fai: Path, gzi: Path | None, backend: str) -> None:
    try:
        _run_indexer(path, fai, gzi, backend)
    except SequenceFormatError:
        # a partial index (pyfaidx keeps one on duplicate names) would look fresh next time
        fai.unlink(missing_ok=True)
        raise


def _run_indexer(path: Path, fai: Path, gzi: Path | None, backend: str) -> None:
    if backend == "pysam":
        import pysam

        args = [str(path), "--fai-idx", str(fai)]
        if gzi is not None:
            args += ["--gzi-idx", str(gzi)]
        # htslib reports the actual problem (line, duplicate name) on the C-level stderr, not in
        # the SamtoolsError, so capture fd 2 to put it into our error message
        with _capture_fd2() as captured:
            try:
                pysam.faidx(*args)
                failed = False
            except pysam.SamtoolsError:
                failed = True
        log_text = " ".join(captured.text.split())
        if failed:
            raise SequenceFormatError(f"{path}: cannot build FASTA index: {log_text}")
        if "duplicate" in log_text:
            raise SequenceFormatError(f"{path}: duplicate record name ({log_text})")
    else:
        import pyfaidx

        try:
            pyfaidx.Faidx(str(path), indexname=str(fai),
                          gzi_indexname=str(gzi) if gzi else None, rebuild=True).close()
        except (pyfaidx.FastaIndexingError, ValueError) as err:
            raise SequenceFormatError(f"{path}: cannot build FASTA index: {err}") from None


class _capture_fd2:
    """Redirect file descriptor 2 into a temporary file for the duration of a block."""

    def __enter__(self) -> _capture_fd2:
        self.text = ""
        self._tmp = tempfile.TemporaryFile()
        sys.stderr.flush()
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode(errors="replace")
        self._tmp.close()


def read_fai(fai: Path) -> dict[str, int]:
    contigs: dict[str, int] = {}
    with open(fai) as fh:
        for line in fh:
            name, length = line.split("\t")[:2]
            contigs[name] = int(length)
    return contigs
