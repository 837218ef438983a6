"""Genome access: random access to FASTA files and streaming of sequence records.

:class:`Genome` wraps one indexed FASTA (plain or bgzip-compressed) behind ``pysam.FastaFile``,
with ``pyfaidx`` as fallback backend, or holds the sequences in memory (small genomes, and files
that cannot be indexed: plain gzip, GenBank, EMBL). It is picklable, and its file handle is
opened lazily in each process, so DataLoader workers never share an htslib handle.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from .alphabet import InvalidBaseError, as_bytes, encode

log = logging.getLogger(__name__)

Backend = Literal["auto", "pysam", "pyfaidx", "memory"]
SeqFormat = Literal["auto", "fasta", "fastq", "genbank", "embl"]

# "auto" holds files up to this size in memory: htslib re-inflates a 64 kB BGZF block for every
# fetch (pysam exposes no block cache), so a random 1 kb fetch from bgzipped yeast ran at ~4,600/s
# against ~345,000/s from memory, and whole windows 2-5x slower (benchmarks/bench_loader.py).
# Larger genomes stay on disk behind faidx.
AUTO_MEMORY_MAX_BYTES = 64 << 20

_GENBANK_SUFFIXES = {".gb": "genbank", ".gbk": "genbank", ".genbank": "genbank", ".embl": "embl"}


class SequenceFormatError(ValueError):
    """Bad sequence input; the message names the file, record and 0-based position."""


def is_bgzf(path: str | os.PathLike) -> bool:
    """True if ``path`` starts with a BGZF block (gzip with the 'BC' extra subfield)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    # gzip magic, FEXTRA flag, then the BGZF extra subfield id 'BC' at bytes 12-13 (SAM spec 4.1)
    return len(head) == 16 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def is_gzip(path: str | os.PathLike) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def guess_format(path: str | os.PathLike) -> SeqFormat:
    """Sequence format from the file name (compression suffix ignored); FASTA by default."""
    name = Path(path).name.lower()
    if name.endswith((".gz", ".bgz")):
        name = name.rsplit(".", 1)[0]
    suffix = Path(name).suffix
    if suffix in _GENBANK_SUFFIXES:
        return _GENBANK_SUFFIXES[suffix]  # type: ignore[return-value]
    if suffix in (".fq", ".fastq"):
        return "fastq"
    return "fasta"


def iter_records(path: str | os.PathLike, format: SeqFormat = "auto") -> Iterator[tuple[str, str]]:
    """Stream ``(name, sequence)`` records, case preserved.

    FASTA/FASTQ (plain, gzip or bgzip) are read with ``pysam.FastxFile`` (Biopython where pysam
    is not installed); GenBank/EMBL with Biopython ``SeqIO``. Records with an empty sequence are
    skipped, counted and logged as a warning; a GenBank/EMBL record without sequence data is an
    error.
    """
    fmt = guess_format(path) if format == "auto" else format
    skipped: list[str] = []
    if fmt not in ("fasta", "fastq", "genbank", "embl"):
        raise ValueError(f"{path}: unknown sequence format {format!r}")
    try:
        import pysam
    except ImportError:
        pysam = None
    if fmt in ("fasta", "fastq") and pysam is not None:
        with pysam.FastxFile(str(path)) as fh:
            for rec in fh:
                if not rec.sequence:
                    skipped.append(rec.name)
                    continue
                yield rec.name, rec.sequence
    else:
        yield from _iter_seqio(path, fmt, skipped)
    if skipped:
        log.warning("%s: skipped %d empty record(s): %s", path, len(skipped), skipped[:5])


def _iter_seqio(path: str | os.PathLike, fmt: str, skipped: list[str]) -> Iterator[tuple[str, str]]:
    from Bio import SeqIO
    from Bio.Seq import UndefinedSequenceError

    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rt") as fh:
        for i, rec in enumerate(SeqIO.parse(fh, fmt)):
            try:
                seq = str(rec.seq)
            except UndefinedSequenceError:
                raise SequenceFormatError(
                    f"{path}: record {rec.id!r} (#{i}) has no sequence data (CONTIG-only entry?)"
                ) from None
            if not seq:
                skipped.append(rec.id)
                continue
            yield rec.id, seq


class Genome:
    """Random access to the contigs of one genome file.

    ``backend``: ``"pysam"`` (htslib faidx), ``"pyfaidx"`` (pure Python, same index format),
    ``"memory"`` (sequences held as bytes) or ``"auto"``: memory for GenBank/EMBL, plain gzip
    (which faidx cannot seek in) and files up to ``AUTO_MEMORY_MAX_BYTES``, otherwise pysam, or
    pyfaidx when pysam is unavailable.
    The faidx index (``.fai``, plus ``.gzi`` for bgzip) is built next to the file, or in
    ``index_dir`` (default ``~/.cache/hnet_dna/faidx``) when that folder is read-only, and rebuilt
    when older than the FASTA.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        name: str | None = None,
        backend: Backend = "auto",
        format: SeqFormat = "auto",
        index_dir: str | os.PathLike | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"genome file not found: {self.path}")
        self.name = name or _stem(self.path)
        fmt = guess_format(self.path) if format == "auto" else format
        if fmt == "fastq":
            raise SequenceFormatError(f"{self.path}: FASTQ reads are not a genome; "
                                      "use iter_records")
        self.backend = _resolve_backend(self.path, fmt, backend)
        self._handle = None
        self._handle_pid = 0
        self._memory: dict[str, bytes] | None = None
        self._fai = self._gzi = None
        if self.backend == "memory":
            self._memory = _load_records(self.path, fmt)
            self.contigs = {k: len(v) for k, v in self._memory.items()}
        else:
            self._fai, self._gzi = _ensure_index(self.path, index_dir, self.backend)
            self.contigs = _read_fai(self._fai)

    # ---------------------------------------------------------------- pickling (workers)
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def __repr__(self) -> str:
        return f"Genome({self.name!r}, {self.path}, backend={self.backend!r})"

    @property
    def total_length(self) -> int:
        return sum(self.contigs.values())

    def close(self) -> None:
        if self._handle is not None and self.backend == "pysam":
            self._handle.close()
        self._handle = None

    def _open(self):
        if self.backend == "pysam":
            import pysam

            kw = {"filepath_index": str(self._fai)}
            if self._gzi is not None:
                kw["filepath_index_compressed"] = str(self._gzi)
            return pysam.FastaFile(str(self.path), **kw)
        import pyfaidx

        return pyfaidx.Fasta(
            str(self.path),
            indexname=str(self._fai),
            gzi_indexname=str(self._gzi) if self._gzi else None,
            as_raw=True,
            sequence_always_upper=False,
            rebuild=False,
        )

    # ---------------------------------------------------------------- access
    def check_range(self, contig: str, start: int, end: int) -> None:
        """Raise a ``KeyError``/``IndexError`` naming the file unless the range is valid."""
        if contig not in self.contigs:
            raise KeyError(f"{self.path}: no record {contig!r}")
        length = self.contigs[contig]
        if not 0 <= start <= end <= length:
            raise IndexError(
                f"{self.path}: range {contig}:{start}-{end} outside record of length {length}"
            )

    def fetch_bytes(self, contig: str, start: int, end: int) -> np.ndarray:
        """Raw ASCII codes of ``contig[start:end]`` (0-based, half-open), case preserved.

        Out-of-range requests raise instead of being truncated (htslib would truncate).
        """
        self.check_range(contig, start, end)
        if self._memory is not None:
            return np.frombuffer(self._memory[contig], dtype=np.uint8, count=end - start,
                                 offset=start)
        if self._handle is None or self._handle_pid != os.getpid():
            # a handle inherited through fork shares its file offset with the parent: reads
            # from DataLoader workers would interleave and return garbage, so reopen per process
            self._handle = self._open()
            self._handle_pid = os.getpid()
        if self.backend == "pysam":
            seq = self._handle.fetch(contig, start, end)
        else:
            seq = self._pyfaidx_fetch(contig, start, end)
        try:
            return as_bytes(seq)
        except InvalidBaseError as err:
            raise self._error(contig, start + err.position, err.char) from None

    def _pyfaidx_fetch(self, contig: str, start: int, end: int) -> str:
        if end == start:
            return ""
        try:
            return self._handle[contig][start:end]
        except ValueError:
            # pyfaidx 0.9 bug: in a BGZF file, a start whose byte offset is exactly a block
            # boundary yields within-block offset 65536 ("Require 0 <= within_block_offset <
            # 2**16"); starting one base earlier lands inside the previous block
            if start == 0 or self._gzi is None:
                raise
            return self._handle[contig][start - 1:end][1:]

    def fetch(self, contig: str, start: int, end: int) -> str:
        """``contig[start:end]`` as a string, case preserved."""
        return self.fetch_bytes(contig, start, end).tobytes().decode("ascii")

    def fetch_encoded(self, contig: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids uint8, softmasked bool)`` of ``contig[start:end]``; see ``alphabet.encode``.

        A character outside ACGT/IUPAC raises :class:`SequenceFormatError` naming the file,
        record and 0-based position.
        """
        try:
            return encode(self.fetch_bytes(contig, start, end))
        except InvalidBaseError as err:
            raise self._error(contig, start + err.position, err.char) from None

    def _error(self, contig: str, position: int, char: str) -> SequenceFormatError:
        return SequenceFormatError(
            f"{self.path}: record {contig!r} position {position} (0-based): "
            f"invalid base {char!r}"
        )


def open_genomes(paths: Iterable[str | os.PathLike], **kwargs) -> list[Genome]:
    """One :class:`Genome` per path; names must be distinct (they label windows)."""
    genomes = [Genome(p, **kwargs) for p in paths]
    names = [g.name for g in genomes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate genome names {dupes}; pass distinct files or names")
    return genomes


# -------------------------------------------------------------------- helpers
def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".bgz", ".fa", ".fasta", ".fna", ".gb", ".gbk", ".embl"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _resolve_backend(path: Path, fmt: str, backend: Backend) -> str:
    indexable = fmt == "fasta" and (is_bgzf(path) or not is_gzip(path))
    if backend == "auto":
        if not indexable or path.stat().st_size <= AUTO_MEMORY_MAX_BYTES:
            return "memory"
        try:
            import pysam  # noqa: F401
        except ImportError:  # e.g. Windows: pysam has no wheels there
            return "pyfaidx"
        return "pysam"
    if backend not in ("pysam", "pyfaidx", "memory"):
        raise ValueError(f"unknown backend {backend!r}")
    if backend != "memory" and not indexable:
        why = "plain gzip (recompress with bgzip)" if fmt == "fasta" else f"{fmt} format"
        raise SequenceFormatError(
            f"{path}: backend {backend!r} needs an indexable FASTA, this file is {why}; "
            "use backend='memory'"
        )
    return backend


def _load_records(path: Path, fmt: str) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    for name, seq in iter_records(path, fmt):  # type: ignore[arg-type]
        if name in records:
            raise SequenceFormatError(f"{path}: duplicate record name {name!r}")
        try:
            records[name] = seq.encode("ascii")
        except UnicodeEncodeError as err:
            raise SequenceFormatError(
                f"{path}: record {name!r} position {err.start} (0-based): "
                f"invalid base {seq[err.start]!r}"
            ) from None
    if not records:
        raise SequenceFormatError(f"{path}: no sequence records")
    return records


def _ensure_index(path: Path, index_dir: str | os.PathLike | None, backend: str
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
        root.mkdir(parents=True, exist_ok=True)
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


def _read_fai(fai: Path) -> dict[str, int]:
    contigs: dict[str, int] = {}
    with open(fai) as fh:
        for line in fh:
            name, length = line.split("\t")[:2]
            contigs[name] = int(length)
    return contigs
