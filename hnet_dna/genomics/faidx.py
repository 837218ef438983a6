"""faidx indexes (``.fai``, ``.gzi``): where they go, when they are rebuilt, how they are built.

The index is written next to the FASTA, or into a cache folder keyed by the FASTA's absolute path
when that folder is read-only (installed data packages, shared storage).

An existing index is trusted only when it is at least as new as the FASTA *and* describes it:
a FASTA replaced by another file with an older timestamp (``cp -p``, ``rsync -t``, an unpacked
archive) would otherwise keep a stale index and be read at the wrong offsets, silently. The check
reads a few bytes where the index says the first and last records start and end (header line
before the offset, line length and line ending) and compares the end of the last record with the
file size; a mismatch is logged and the index rebuilt.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import struct
import sys
import tempfile
from pathlib import Path

from .records import SequenceFormatError, is_bgzf, not_text_error

log = logging.getLogger(__name__)


class IndexFolderError(OSError):
    """The FASTA has no index and no folder to write one into; the message says what to run."""


def ensure_index(path: Path, index_dir: str | os.PathLike | None, backend: str
                  ) -> tuple[Path, Path | None]:
    """Return ``(fai, gzi | None)``, building them when missing or stale."""
    bgzf = is_bgzf(path)
    local = (Path(f"{path}.fai"), Path(f"{path}.gzi") if bgzf else None)
    if _fresh(path, *local) and _describes(path, *local):
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
        if _fresh(path, fai, gzi) and _describes(path, fai, gzi):
            return fai, gzi
    log.info("indexing %s -> %s", path, fai)
    _build_index(path, fai, gzi, backend)
    return fai, gzi


def _fresh(path: Path, fai: Path, gzi: Path | None) -> bool:
    mtime = path.stat().st_mtime
    return all(p.is_file() and p.stat().st_mtime >= mtime for p in (fai, gzi) if p is not None)


def _describes(path: Path, fai: Path, gzi: Path | None) -> bool:
    """Whether a (fresh-looking) index matches the FASTA it sits beside; logs why not."""
    if not fai.is_file():
        return False
    problem = index_mismatch(path, fai, gzi)
    if problem:
        log.warning("%s: the index %s does not describe this file (%s); not using it",
                    path, fai, problem)
    return problem is None


# bytes read back from an index's record offset to find the header line that precedes it
_HEADER_LOOKBACK = 1 << 16
# bytes checked at each end of a sequence line
_LINE_PROBE = 1 << 12


def index_mismatch(path: Path, fai: Path, gzi: Path | None = None) -> str | None:
    """Why ``fai`` (and ``gzi``) do not describe the FASTA ``path``, or None when they do.

    Checked for the first and the last record: the line before the record's offset is its
    ``>name`` header, the first and last sequence lines have the indexed length and line ending,
    and only whitespace follows the last record.
    """
    try:
        entries = _read_fai_entries(fai)
        if not entries:
            return "the index lists no records"
        reader = _BgzfText(path, gzi) if gzi is not None else _PlainText(path)
        try:
            for entry in {id(e): e for e in (entries[0], entries[-1])}.values():
                problem = _record_mismatch(reader, *entry)
                if problem:
                    return problem
            end = _sequence_end(*entries[-1][1:])
            if reader.size < end:
                return f"record {entries[-1][0]!r} ends at byte {end}, beyond the file's end"
            if reader.read(end, _HEADER_LOOKBACK).strip():
                return f"data after the last indexed record {entries[-1][0]!r} (byte {end})"
        finally:
            reader.close()
    except (OSError, ValueError, struct.error, EOFError) as err:
        return f"unreadable at the indexed offsets: {err}"
    return None


def _read_fai_entries(fai: Path) -> list[tuple[str, int, int, int, int]]:
    entries = []
    with open(fai) as fh:
        for line in fh:
            name, length, offset, linebases, linewidth = line.rstrip("\n").split("\t")[:5]
            entries.append((name, int(length), int(offset), int(linebases), int(linewidth)))
    return entries


def _sequence_end(length: int, offset: int, linebases: int, linewidth: int) -> int:
    """Byte just past a record's last base."""
    if length == 0 or linebases <= 0:
        return offset
    full, rest = divmod(length, linebases)
    if rest == 0:
        return offset + (full - 1) * linewidth + linebases
    return offset + full * linewidth + rest


def _record_mismatch(reader, name: str, length: int, offset: int, linebases: int,
                     linewidth: int) -> str | None:
    back = min(offset, _HEADER_LOOKBACK)
    before = reader.read(offset - back, back)
    header = before[before.rstrip(b"\r\n").rfind(b"\n") + 1:].rstrip(b"\r\n")
    token = header[1:].split(maxsplit=1)[:1]
    if not before.endswith(b"\n") or not header.startswith(b">") or token != [name.encode()]:
        return f"no '>{name}' header line before byte {offset}"
    if length == 0 or linebases <= 0:
        return None
    newline = linewidth - linebases
    # the first line, and the last line of the record, with their line endings
    last_start = offset + ((length - 1) // linebases) * linewidth
    for start, bases in ((offset, min(length, linebases)),
                         (last_start, length - (last_start - offset) // linewidth * linebases)):
        # the head and the tail of the line (a prepared genome has one line of up to 250 Mb
        # per record: reading it whole would cost more than the whole open should)
        head = reader.read(start, min(bases, _LINE_PROBE))
        tail_at = start + max(bases - _LINE_PROBE, 0)
        line = reader.read(tail_at, start + bases - tail_at + newline)
        seq, ending = line[:start + bases - tail_at], line[start + bases - tail_at:]
        if (len(head) < min(bases, _LINE_PROBE) or len(seq) < start + bases - tail_at
                or any(c in head or c in seq for c in b"\r\n>")):
            return f"record {name!r}: no {bases}-base sequence line at byte {start}"
        if ending and ending.strip(b"\r\n") or len(ending) < newline and start != last_start:
            return f"record {name!r}: the line at byte {start} is not {bases} bases long"
    return None


class _PlainText:
    def __init__(self, path: Path) -> None:
        self._fh = open(path, "rb")
        self.size = os.fstat(self._fh.fileno()).st_size

    def read(self, offset: int, n: int) -> bytes:
        self._fh.seek(max(offset, 0))
        return self._fh.read(max(n, 0))

    def close(self) -> None:
        self._fh.close()


class _BgzfText:
    """Uncompressed offsets of a bgzip file, located through its ``.gzi`` block index."""

    def __init__(self, path: Path, gzi: Path) -> None:
        from Bio import bgzf

        raw = gzi.read_bytes()
        (count,) = struct.unpack_from("<Q", raw)
        pairs = struct.unpack_from(f"<{2 * count}Q", raw, 8)
        if len(raw) != 8 + 16 * count:
            raise ValueError(f"{gzi} has {len(raw)} bytes for {count} blocks")
        self._compressed = [0, *pairs[0::2]]
        self._uncompressed = [0, *pairs[1::2]]
        if os.path.getsize(path) <= self._compressed[-1]:
            raise ValueError(f"{gzi} lists a block beyond the end of the file")
        self._bgzf = bgzf
        self._fh = bgzf.BgzfReader(str(path), "rb")
        # the last block's uncompressed length (at most 64 KiB) completes the total size
        self.size = self._uncompressed[-1] + len(self.read(self._uncompressed[-1], 1 << 17))

    def read(self, offset: int, n: int) -> bytes:
        offset = max(offset, 0)
        block = bisect.bisect_right(self._uncompressed, offset) - 1
        within = offset - self._uncompressed[block]
        if within >= 1 << 16:
            raise ValueError(f"offset {offset} is not inside an indexed block")
        self._fh.seek(self._bgzf.make_virtual_offset(self._compressed[block], within))
        return self._fh.read(max(n, 0))

    def close(self) -> None:
        self._fh.close()


def _build_index(path: Path, fai: Path, gzi: Path | None, backend: str) -> None:
    # pyfaidx's rebuild=True keeps an index newer than the FASTA: remove a stale one first
    for old in (fai, gzi):
        if old is not None:
            old.unlink(missing_ok=True)
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
        except UnicodeDecodeError as err:
            raise not_text_error(path, err) from None
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
