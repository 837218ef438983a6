"""Sequence records: format detection and sequential reading (FASTA/FASTQ, GenBank, EMBL).

Random access lives in :mod:`.fasta` (``Genome``); this module streams whole records, which is
all a plain-gzip FASTA or a GenBank/EMBL file allows.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from hnet_dna.errors import InputError

log = logging.getLogger(__name__)

SeqFormat = Literal["auto", "fasta", "fastq", "genbank", "embl"]

_GENBANK_SUFFIXES = {".gb": "genbank", ".gbk": "genbank", ".genbank": "genbank", ".embl": "embl"}


class SequenceFormatError(InputError):
    """Bad sequence input; the message names the file, record and 0-based position."""


def is_bgzf(path: str | os.PathLike) -> bool:
    """True if ``path`` starts with a BGZF block (gzip with the 'BC' extra subfield)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    # gzip magic, FEXTRA flag, then the BGZF extra subfield id 'BC' at bytes 12-13 (SAM spec 4.1)
    return len(head) == 16 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def is_gzip(path: str | os.PathLike) -> bool:
    """True if ``path`` starts with the gzip magic (plain gzip or BGZF)."""
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

    FASTA/FASTQ (plain, gzip or bgzip; LF or CRLF) are read with ``pysam.FastxFile`` (Biopython
    where pysam is not installed); GenBank/EMBL with Biopython ``SeqIO``. Records with an empty
    sequence are skipped, counted and logged as a warning; a GenBank/EMBL record without
    sequence data is an error.
    """
    skipped: list[str] = []
    yield from _records(path, format, skipped)
    if skipped:
        log.warning("%s: skipped %d empty record(s): %s", path, len(skipped), skipped[:5])


def _records(path: str | os.PathLike, format: SeqFormat, skipped: list[str]
             ) -> Iterator[tuple[str, str]]:
    """``iter_records`` without the log; names of empty records are appended to ``skipped``."""
    try:
        yield from _parse(path, format, skipped)
    except UnicodeDecodeError as err:
        raise not_text_error(path, err) from None


def not_text_error(path: str | os.PathLike, err: UnicodeDecodeError) -> SequenceFormatError:
    """A sequence file holding bytes that are not text (binary data, another compression)."""
    byte = err.object[err.start]
    return SequenceFormatError(
        f"{path}: not a text sequence file (byte 0x{byte:02x} is not ASCII); is it binary, or "
        "compressed with something other than gzip/bgzip?")


def _parse(path: str | os.PathLike, format: SeqFormat, skipped: list[str]
           ) -> Iterator[tuple[str, str]]:
    fmt = guess_format(path) if format == "auto" else format
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




def load_records(path: Path, fmt: str) -> tuple[dict[str, bytes], list[str]]:
    """All records as ASCII bytes, plus the names of the empty records that were skipped."""
    records: dict[str, bytes] = {}
    skipped: list[str] = []
    for name, seq in _records(path, fmt, skipped):  # type: ignore[arg-type]
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
        raise SequenceFormatError(f"{path}: no sequence records"
                                  + (f" ({len(skipped)} empty)" if skipped else ""))
    return records, skipped
