"""Genome preparation: any sequence file, once, into the form every rank and worker reads.

``prepare_genome`` streams the records of a plain-gzip, bgzip or plain FASTA, or a GenBank/EMBL
file, and writes ``<name>.prepared.fa``: an uncompressed FASTA with each record's bases on one
line (one byte per base, soft-mask case, N and every IUPAC code exactly as in the source), its
``.fai`` index (samtools-compatible) and its summary (:mod:`.summary`: N runs and ambiguity
counts, plus the source's path, size and mtime). ``fasta.Genome`` reads it through
:class:`~.mapped.FaiReader`: ``pread`` into the page cache that every process shares, so N
processes on a node hold the genome once, not N times, and open it without reading a base.

Why this form (measured on the 3.1 Gb hg38-shaped genome, benchmarks/README.md "genome-scale"):
a random window from bgzip costs a 64 kB block inflation in each process (pysam has no block
cache), which caps a DataLoader worker far below the 20 Mb/s target, and plain gzip cannot be
indexed at all; one byte per base costs 3.1 GB of disk for hg38 and nothing per process.

Atomic: the three files are written under temporary names and renamed into place, data first
and summary last, so an interrupted run leaves either the old result or temporary files, never
a half-written genome that looks complete. Ranks that open the same unprepared genome together
wait on a lock file beside the output (``.<name>.lock``, left in place) for the one that
prepares it. Reused: a prepared genome whose summary names the source's path, current size and
mtime, and whose own data and index are unchanged, is up to date; one made from another file
that still exists (two ``genome.fa.gz`` prepared into one ``out_dir``) is never overwritten.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from hnet_dna.errors import OutputError

from .alphabet import ENCODE_TABLE
from .faidx import IndexFolderError
from .records import SeqFormat, SequenceFormatError, _records
from .summary import GenomeSummary, RunScanner, add_record, load_summary, save_summary, summary_path

log = logging.getLogger(__name__)

SUFFIX = ".prepared.fa"
_CHUNK = 1 << 22  # bases validated and written per step
# what a folder given to ``hnet-dna prepare`` or as a corpus counts as genome files
GENOME_SUFFIXES = (".fa", ".fasta", ".fna", ".fas", ".gb", ".gbk", ".genbank", ".embl")


def genome_files(folder: str | os.PathLike) -> list[Path]:
    """The sequence files of a folder (FASTA, GenBank, EMBL; plain, gzip or bgzip), sorted;
    a prepared genome whose source lies beside it is left out (opening the source finds it),
    so a folder of sources, of prepared genomes (``--out-dir``) or of both lists each once."""
    out = []
    paths = sorted(Path(folder).iterdir())
    names = {p.name for p in paths}
    for path in paths:
        name = path.name.lower()
        for zipped in (".gz", ".bgz"):
            name = name.removesuffix(zipped)
        if not (path.is_file() and name.endswith(GENOME_SUFFIXES)):
            continue
        if path.name.endswith(SUFFIX) and path.name.removesuffix(SUFFIX) in names:
            continue
        out.append(path)
    if not out:
        raise FileNotFoundError(f"{folder}: no genome files ({', '.join(GENOME_SUFFIXES)}, "
                                "optionally .gz/.bgz)")
    return out


def prepared_path(source: Path, out_dir: str | os.PathLike | None = None) -> Path:
    """Where the prepared form of ``source`` goes: ``out_dir``, else beside the source when that
    folder is writable, else ``~/.cache/hnet_dna/prepared/<key of the absolute path>``."""
    if out_dir is not None:
        folder = Path(out_dir)
    elif os.access(source.parent, os.W_OK):
        folder = source.parent
    else:
        key = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:16]
        folder = Path.home() / ".cache" / "hnet_dna" / "prepared" / key
    return folder / (source.name + SUFFIX)


def _source_stamp(source: Path) -> dict:
    st = source.stat()
    return {"path": str(source.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def up_to_date(source: Path, prepared: Path) -> bool:
    """Whether ``prepared`` was made from ``source`` as it is now, and is itself unchanged."""
    fai = Path(f"{prepared}.fai")
    if not (prepared.is_file() and fai.is_file()):
        return False
    if load_summary(prepared, fai) is None:
        return False
    saved = json.loads(summary_path(fai).read_text()).get("source", {})
    return saved == _source_stamp(source)


def prepare_genome(source: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                   format: SeqFormat = "auto", progress: bool = False) -> Path:
    """The prepared form of ``source`` (see the module doc), written unless up to date.

    An existing file at the output path that is not a prepared genome of ``source`` is never
    overwritten (error). ``progress``: a report of bases written (:mod:`hnet_dna.progress`).
    (An uncompressed FASTA needs no conversion: ``fasta.prepare`` indexes and summarises it
    where it lies.)
    """
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"genome file not found: {source}")
    out = prepared_path(source, out_dir)
    if up_to_date(source, out):
        log.info("%s: prepared genome %s is up to date", source, out)
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise IndexFolderError(f"{source}: cannot create {out.parent} for the prepared genome "
                               f"({err.strerror}); pass a writable output folder") from None
    # ranks that start together wait for the one preparing, then reuse its result
    with open(out.with_name(f".{out.name}.lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: another process is preparing it into %s; waiting", source, out)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if up_to_date(source, out):
            return out
        return _prepare(source, out, format, progress)


def _prepare(source: Path, out: Path, format: SeqFormat, progress: bool) -> Path:
    if out.exists():
        made_from = _made_from(out)
        if made_from is None:
            raise OutputError(f"{out} exists and is not a prepared genome; move it away or "
                              "choose another output folder")
        if made_from != str(source.resolve()) and Path(made_from).exists():
            raise OutputError(f"{out} is the prepared genome of another file, {made_from}; "
                              "choose another output folder")
    t0 = time.perf_counter()
    log.info("preparing %s -> %s (once; later opens reuse it)", source, out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp_fai = out.with_name(f".{out.name}.fai.{os.getpid()}.tmp")
    try:
        entries, summary = _write(source, format, tmp, progress)
        with open(tmp_fai, "w") as fh:
            fh.writelines(f"{name}\t{n}\t{offset}\t{n}\t{n + 1}\n" for name, n, offset in entries)
        # data first, index after it (an index older than its data would be rebuilt), the
        # summary last: it is what declares the genome complete
        os.replace(tmp, out)
        os.replace(tmp_fai, Path(f"{out}.fai"))
    finally:
        tmp.unlink(missing_ok=True)
        tmp_fai.unlink(missing_ok=True)
    if save_summary(out, Path(f"{out}.fai"), summary, {"source": _source_stamp(source)}) is None:
        raise IndexFolderError(f"{out}: cannot write the summary beside it")
    bases = sum(n for _, n, _ in entries)
    log.info("prepared %s: %d record(s), %.1f Mb in %.1f s", out, len(entries), bases / 1e6,
             time.perf_counter() - t0)
    return out


def _made_from(out: Path) -> str | None:
    """The source path recorded in a prepared genome's summary (None: not a prepared genome)."""
    try:
        return json.loads(summary_path(Path(f"{out}.fai")).read_text())["source"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(source: Path, format: SeqFormat, tmp: Path, progress: bool
           ) -> tuple[list[tuple[str, int, int]], GenomeSummary]:
    """Stream the records into ``tmp``: ``(name, length, byte offset)`` per record, summary."""
    from hnet_dna.progress import progress as progress_bar

    entries: list[tuple[str, int, int]] = []
    summary = GenomeSummary()
    skipped: list[str] = []
    seen: set[str] = set()
    bar = progress_bar(unit="b", unit_scale=True, desc=f"prepare {source.name}",
                       disable=not progress)
    with open(tmp, "wb") as fh:
        for name, seq in _records(source, format, skipped):
            if name in seen:
                raise SequenceFormatError(f"{source}: duplicate record name {name!r}")
            seen.add(name)
            try:
                raw = np.frombuffer(seq.encode("ascii"), dtype=np.uint8)
            except UnicodeEncodeError as err:
                raise SequenceFormatError(f"{source}: record {name!r} position {err.start} "
                                          f"(0-based): invalid base {seq[err.start]!r}") from None
            del seq
            fh.write(f">{name}\n".encode())
            entries.append((name, raw.size, fh.tell()))
            scanner = RunScanner()
            for a in range(0, raw.size, _CHUNK):
                chunk = raw[a:a + _CHUNK]
                bad = np.flatnonzero(ENCODE_TABLE[chunk] == 255)
                if bad.size:
                    pos = a + int(bad[0])
                    raise SequenceFormatError(f"{source}: record {name!r} position {pos} "
                                              f"(0-based): invalid base {chr(raw[pos])!r}")
                scanner.add(chunk)
                fh.write(chunk.tobytes())
                bar.update(chunk.size)
            fh.write(b"\n")
            add_record(summary, name, scanner)
    bar.close()
    if skipped:
        log.warning("%s: left out %d empty record(s): %s", source, len(skipped), skipped[:5])
    if not entries:
        raise SequenceFormatError(f"{source}: no sequence records"
                                  + (f" ({len(skipped)} empty)" if skipped else ""))
    return entries, summary


__all__ = ["SUFFIX", "genome_files", "prepare_genome", "prepared_path", "up_to_date"]
