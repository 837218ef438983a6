"""Genome access: random access to the contigs of one FASTA/GenBank/EMBL file.

:class:`Genome` reads one genome through one of four backends: ``mmap`` (an uncompressed FASTA
read with ``pread`` at its faidx offsets, shared by every process through the page cache; plain
gzip, GenBank and EMBL are first converted once by :mod:`.prepare`), ``pysam`` (htslib faidx,
for bgzip), ``pyfaidx`` (its fallback) and ``memory`` (small files held as bytes). It is
picklable, and its file handle is opened lazily in each process, so DataLoader workers never
share a handle.

Opening reads the index only. What a corpus needs from the sequence itself (N runs, ambiguity
counts: :meth:`Genome.summary`) is computed by one pass on first use and saved beside the index
(:mod:`.summary`), so later opens, in any process, read no bases.

Contig names resolve through :mod:`.aliases` (``chr1`` finds ``1``, ``chrM`` finds ``MT``).
Records with an empty sequence are left out of ``contigs`` and listed in ``empty_records``
(htslib's faidx drops them while indexing, so the pysam backend cannot list them).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from .aliases import resolve_contig
from .alphabet import ENCODE_TABLE, InvalidBaseError, as_bytes, encode
from .faidx import ensure_index, read_fai
from .mapped import FaiReader, read_fai_entries
from .prepare import prepare_genome
from .records import (  # noqa: F401  (re-exported: the public home of these names)
    SeqFormat,
    SequenceFormatError,
    guess_format,
    is_bgzf,
    is_gzip,
    iter_records,
    load_records,
    not_text_error,
)
from .summary import GenomeSummary, load_summary, save_summary, scan

log = logging.getLogger(__name__)

Backend = Literal["auto", "mmap", "pysam", "pyfaidx", "memory"]

# "auto" holds bgzip files up to this size in memory: htslib re-inflates a 64 kB BGZF block for
# every fetch (pysam exposes no block cache), so a random 1 kb fetch from bgzipped yeast ran at
# ~4,600/s against ~345,000/s from memory, and whole windows 2-5x slower
# (benchmarks/bench_loader.py). Larger bgzip genomes stay on disk behind faidx.
AUTO_MEMORY_MAX_BYTES = 64 << 20
# plain gzip, GenBank and EMBL cannot be indexed: "auto" holds files up to this size in memory
# (about 4x the compressed size per process) and prepares larger ones once (prepare.py), as a
# one-byte-per-base file that every process shares through the page cache (hg38 as plain gzip
# held in memory cost 4.4 GB in every rank and worker)
AUTO_PREPARE_MIN_BYTES = 16 << 20

# contigs are read in pieces of this many bases when a whole-genome pass is needed
SCAN_CHUNK = 1 << 22


class Genome:
    """Random access to the contigs of one genome file.

    ``backend``: ``"mmap"`` (uncompressed FASTA read at its faidx offsets, see
    :mod:`.mapped`; other inputs are prepared first, see :mod:`.prepare`), ``"pysam"`` (htslib
    faidx), ``"pyfaidx"`` (pure Python, same index format), ``"memory"`` (sequences held as
    bytes) or ``"auto"``: mmap for uncompressed FASTA; for bgzip memory up to
    ``AUTO_MEMORY_MAX_BYTES``, else pysam (pyfaidx without pysam); for plain gzip, GenBank and
    EMBL memory below ``AUTO_PREPARE_MIN_BYTES``, else mmap of the prepared genome.
    The faidx index (``.fai``, plus ``.gzi`` for bgzip) is built next to the file, or in
    ``index_dir`` (default ``~/.cache/hnet_dna/faidx``) when that folder is read-only, and rebuilt
    when older than the FASTA or when it does not describe the file (see ``faidx``). A prepared
    genome goes beside its source, or into ``index_dir`` (default ``~/.cache/hnet_dna/prepared``)
    when that folder is read-only.
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
        if self.path.stat().st_size == 0:
            raise SequenceFormatError(f"{self.path}: empty file, no sequence records")
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
        self._data = self.path  # the file read: the source, or its prepared form
        self._entries: dict[str, tuple[int, int, int, int]] = {}
        self._summary: GenomeSummary | None = None
        self._ambiguity_logged = False
        if self.backend == "memory":
            self._memory, self.empty_records = load_records(self.path, fmt)
            self.contigs = {k: len(v) for k, v in self._memory.items()}
        else:
            indexer = self.backend
            if self.backend == "mmap":
                indexer = _indexer()
                if fmt != "fasta" or is_gzip(self.path):
                    self._data = prepare_genome(self.path, index_dir, format=fmt,
                                                progress=sys.stderr.isatty())
                    index_dir = None  # the prepared genome's index lies beside it
            self._fai, self._gzi = ensure_index(self._data, index_dir, indexer)
            if self.backend == "mmap":
                self._entries = read_fai_entries(self._fai)
            indexed = read_fai(self._fai)
            self.contigs = {k: n for k, n in indexed.items() if n > 0}
            self.empty_records = [k for k, n in indexed.items() if n == 0]
            if not self.contigs:
                raise SequenceFormatError(f"{self.path}: no sequence records")
        if self.empty_records:
            # a header without sequence is usually a truncated download or a filtering slip
            log.warning("%s: left out %d empty record(s): %s", self.path,
                        len(self.empty_records), self.empty_records[:5])

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
        if self._handle is not None and self.backend in ("pysam", "mmap"):
            self._handle.close()
        self._handle = None

    def _open(self):
        if self.backend == "mmap":
            return FaiReader(self._data, self._entries)
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
    def resolve(self, contig: str) -> str:
        """The record name ``contig`` refers to: itself or its alias (``chr1`` -> ``1``)."""
        if contig in self.contigs:  # fast path: no alias lookup per window
            return contig
        return resolve_contig(contig, self.contigs, str(self.path))

    def check_range(self, contig: str, start: int, end: int) -> str:
        """The resolved record name; raises ``KeyError``/``IndexError`` naming the file unless
        ``contig[start:end]`` (0-based, half-open) lies within the record."""
        contig = self.resolve(contig)
        length = self.contigs[contig]
        if not 0 <= start <= end <= length:
            raise IndexError(
                f"{self.path}: range {contig}:{start}-{end} outside record of length {length}"
            )
        return contig

    def fetch_bytes(self, contig: str, start: int, end: int) -> np.ndarray:
        """Raw ASCII codes of ``contig[start:end]`` (0-based, half-open), case preserved.

        Out-of-range requests raise instead of being truncated (htslib would truncate).
        """
        contig = self.check_range(contig, start, end)
        if self._memory is not None:
            return np.frombuffer(self._memory[contig], dtype=np.uint8, count=end - start,
                                 offset=start)
        if self._handle is None or self._handle_pid != os.getpid():
            # a handle inherited through fork shares its file offset with the parent: reads
            # from DataLoader workers would interleave and return garbage, so reopen per process
            self._handle = self._open()
            self._handle_pid = os.getpid()
        if self.backend == "mmap":
            return self._handle.read(contig, start, end)
        try:
            if self.backend == "pysam":
                seq = self._handle.fetch(contig, start, end)
            else:
                seq = self._pyfaidx_fetch(contig, start, end)
        except UnicodeDecodeError as err:
            raise not_text_error(self.path, err) from None
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
        contig = self.resolve(contig)
        try:
            return encode(self.fetch_bytes(contig, start, end))
        except InvalidBaseError as err:
            raise self._error(contig, start + err.position, err.char) from None

    def summary(self) -> GenomeSummary:
        """N runs and ambiguity counts of every record (see :mod:`.summary`): loaded from beside
        the index when saved there for this very data, else one pass over the genome (in
        ``SCAN_CHUNK`` pieces, validating every base), saved for the next open."""
        if self._summary is None:
            if self._fai is not None:
                self._summary = load_summary(self._data, self._fai)
            if self._summary is None:
                t0 = time.perf_counter()
                if self.backend != "memory":
                    log.info("%s: scanning %.1f Mb for N runs (once: saved beside the index)",
                             self.path, self.total_length / 1e6)
                self._summary = scan(self.contigs, self._checked_bytes, SCAN_CHUNK)
                if self._fai is not None:
                    saved = save_summary(self._data, self._fai, self._summary)
                    log.info("%s: scanned %.1f Mb for N runs in %.1f s%s", self.path,
                             self.total_length / 1e6, time.perf_counter() - t0,
                             f" (saved to {saved})" if saved else "")
        return self._summary

    def _checked_bytes(self, contig: str, start: int, end: int) -> np.ndarray:
        raw = self.fetch_bytes(contig, start, end)
        bad = np.flatnonzero(ENCODE_TABLE[raw] == 255)
        if bad.size:
            raise self._error(contig, start + int(bad[0]), chr(raw[bad[0]]))
        return raw

    def n_runs(self, contig: str) -> list[tuple[int, int]]:
        """Half-open runs of N (and of the IUPAC codes read as N) in ``contig``, in order."""
        return self.summary().n_runs[self.resolve(contig)]

    def ambiguity_counts(self) -> dict[str, dict[str, int]]:
        """``{record: {code: count}}`` of IUPAC codes other than N, which read as N.

        From :meth:`summary`; logged once as a warning when any record has them: the model
        cannot see the partial information (R = A or G, ...) those bases carry.
        """
        found = self.summary().ambiguity
        if found and not self._ambiguity_logged:
            self._ambiguity_logged = True
            log.warning("%s: %d IUPAC ambiguity code(s) read as N: %s", self.path,
                        sum(sum(c.values()) for c in found.values()), found)
        return found

    def _error(self, contig: str, position: int, char: str) -> SequenceFormatError:
        return SequenceFormatError(
            f"{self.path}: record {contig!r} position {position} (0-based): "
            f"invalid base {char!r}"
        )


def prepare(path: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
            format: SeqFormat = "auto", progress: bool = False) -> Path:
    """Make ``path`` ready for every process to read without a copy, once: an uncompressed
    FASTA is indexed and summarised where it lies (or in ``out_dir`` when its folder is
    read-only) and returned itself; anything else is converted by
    :func:`.prepare.prepare_genome` and the prepared file returned."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"genome file not found: {path}")
    fmt = guess_format(path) if format == "auto" else format
    if fmt == "fasta" and not is_gzip(path):
        Genome(path, backend="mmap", format="fasta", index_dir=out_dir).summary()
        return path
    return prepare_genome(path, out_dir, format=fmt, progress=progress)


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
    name = path.name.removesuffix(".prepared.fa")  # a prepared genome is named as its source
    for suffix in (".gz", ".bgz", ".fa", ".fasta", ".fna", ".gb", ".gbk", ".embl"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _indexer() -> str:
    """What builds a missing ``.fai``: htslib, or pyfaidx where pysam is unavailable."""
    try:
        import pysam  # noqa: F401
    except ImportError:  # e.g. Windows: pysam has no wheels there
        return "pyfaidx"
    return "pysam"


def _resolve_backend(path: Path, fmt: str, backend: Backend) -> str:
    gzipped = is_gzip(path)
    indexable = fmt == "fasta" and (not gzipped or is_bgzf(path))
    if backend == "auto":
        size = path.stat().st_size
        if fmt == "fasta" and not gzipped:
            return "mmap"
        if indexable:
            return "memory" if size <= AUTO_MEMORY_MAX_BYTES else _indexer()
        return "memory" if size < AUTO_PREPARE_MIN_BYTES else "mmap"
    if backend not in ("mmap", "pysam", "pyfaidx", "memory"):
        raise ValueError(f"unknown backend {backend!r}")
    if backend in ("pysam", "pyfaidx") and not indexable:
        if fmt == "fasta":
            why = (f"plain gzip, which cannot be indexed; recompress it: `gunzip -c {path} | "
                   f"bgzip > {path.with_suffix('')}.bgz` (bgzip ships with htslib)")
        else:
            why = f"{fmt} format"
        raise SequenceFormatError(
            f"{path}: backend {backend!r} needs an indexable FASTA, this file is {why}; "
            f"or prepare it once (`hnet-dna prepare {path}`, backend='mmap'), or use "
            "backend='memory' (reads the file sequentially)"
        )
    return backend
