"""Genomic intervals: BED I/O, split definitions and N-free regions.

Coordinates are 0-based half-open, as in BED and ``pysam``, and are checked against the contig
lengths wherever a genome is known. The 4th BED column, when present, is kept as ``label``: the
Basenji/HyenaDNA ``sequences_human.bed`` stores the split (train/valid/test) there. Splits come
from such a BED, from contig lists (:func:`split_by_contigs`) or from positional cuts
(:func:`split_by_fraction`). Contig names resolve through :mod:`.aliases` (``chr1`` vs ``1``)
and are rewritten to the genome's spelling.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hnet_dna.errors import InputError

from .aliases import resolve_contig
from .records import is_gzip

if TYPE_CHECKING:
    from .fasta import Genome

_SKIP_PREFIXES = ("#", "track", "browser")


@dataclass(frozen=True, order=True)
class Interval:
    contig: str
    start: int
    end: int
    label: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"invalid interval {self.contig}:{self.start}-{self.end}")

    def __len__(self) -> int:
        return self.end - self.start


class BedFormatError(InputError):
    """Malformed BED line; the message names the file and 1-based line number."""


def bed_data_lines(path: str | os.PathLike) -> Iterator[tuple[int, list[str]]]:
    """``(1-based line number, tab-separated fields)`` of every data line of a BED file.

    Plain or gzip, told by content, not name (a compressed ``.bed`` or an uncompressed
    ``.bed.gz`` still reads); blank, ``#``, ``track`` and ``browser`` lines are headers and
    are skipped; binary or non-UTF-8 content is a :class:`BedFormatError` naming the file.
    """
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as fh:
        for lineno, line in enumerate(_text_lines(fh, path), 1):
            if line.strip() and not line.startswith(_SKIP_PREFIXES):
                yield lineno, line.rstrip("\r\n").split("\t")


def read_bed(path: str | os.PathLike, contigs: Mapping[str, int] | None = None) -> list[Interval]:
    """Read a BED file, plain or gzip (>= 3 columns; column 4 becomes ``label``).

    Blank, ``#``, ``track`` and ``browser`` lines are headers, not data, and are ignored. With
    ``contigs`` (name -> length) every interval is checked against the genome and its contig
    renamed to the genome's spelling (``chr1`` in the BED, ``1`` in the FASTA). Any malformed
    line raises :class:`BedFormatError` naming the file and line.
    """
    out = []
    for lineno, fields in bed_data_lines(path):

        def fail(msg: str, lineno: int = lineno) -> BedFormatError:
            return BedFormatError(f"{path}:{lineno}: {msg}")

        if len(fields) < 3:
            raise fail(f"expected >= 3 tab-separated columns, got {len(fields)}")
        contig, start_s, end_s = fields[:3]
        try:
            start, end = int(start_s), int(end_s)
        except ValueError:
            raise fail(f"start/end are not integers: {start_s!r}, {end_s!r}") from None
        if not 0 <= start < end:
            raise fail(f"need 0 <= start < end, got {start}-{end}")
        if contigs is not None:
            try:
                contig = resolve_contig(contig, contigs)
            except KeyError as err:
                raise fail(f"contig {contig!r} not in the genome: {err.args[0]}") from None
            if end > contigs[contig]:
                raise fail(f"end {end} beyond {contig} length {contigs[contig]}")
        label = fields[3] if len(fields) > 3 else ""
        out.append(Interval(contig, start, end, label))
    return out


def _text_lines(fh, path: str | os.PathLike) -> Iterable[str]:
    """Decoded lines; binary content is a :class:`BedFormatError` naming the file and line."""
    lineno = 0
    try:
        for lineno, raw in enumerate(fh, 1):  # noqa: B007  (lineno is read after the loop)
            if b"\0" in raw:
                raise BedFormatError(f"{path}:{lineno}: NUL byte: not a text BED file")
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise BedFormatError(
                    f"{path}:{lineno}: byte 0x{raw[err.start]:02x} at column {err.start + 1} is "
                    "not text: is this a binary file?") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise BedFormatError(f"{path}:{lineno + 1}: damaged gzip data ({err})") from None


def write_bed(path: str | os.PathLike, intervals: Iterable[Interval]) -> None:
    """Write intervals as BED (4 columns when any interval has a label)."""
    intervals = list(intervals)
    with_label = any(iv.label for iv in intervals)
    with open(path, "w") as fh:
        for iv in intervals:
            cols = [iv.contig, str(iv.start), str(iv.end)] + ([iv.label] if with_label else [])
            fh.write("\t".join(cols) + "\n")


def group_by_label(intervals: Iterable[Interval]) -> dict[str, list[Interval]]:
    """``{label: intervals}``, e.g. the splits of a Basenji-style BED."""
    groups: dict[str, list[Interval]] = defaultdict(list)
    for iv in intervals:
        groups[iv.label].append(iv)
    return dict(groups)


def whole_contigs(contigs: Mapping[str, int], label: str = "") -> list[Interval]:
    return [Interval(name, 0, length, label) for name, length in contigs.items() if length > 0]


def split_by_fraction(
    contigs: Mapping[str, int], fractions: Mapping[str, float]
) -> dict[str, list[Interval]]:
    """Cut every contig into consecutive blocks, one per split, in the order given.

    ``{"train": 0.8, "valid": 0.1, "test": 0.1}`` puts the first 80 % of each contig in train.
    Applying the same cut to related species keeps syntenic sequence in the same split (a
    random window split would leak near-identical homologous windows across splits).
    """
    total = sum(fractions.values())
    if not np.isclose(total, 1.0) or any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {dict(fractions)}")
    out: dict[str, list[Interval]] = {name: [] for name in fractions}
    for contig, length in contigs.items():
        cuts = np.rint(np.cumsum([0.0, *fractions.values()]) * length).astype(int)
        for name, a, b in zip(fractions, cuts[:-1], cuts[1:], strict=True):
            if b > a:
                out[name].append(Interval(contig, int(a), int(b), name))
    return out


def split_by_contigs(
    contigs: Mapping[str, int], lists: Mapping[str, Sequence[str] | None], where: str = "genome"
) -> dict[str, list[Interval]]:
    """Whole contigs per split, e.g. ``{"train": None, "valid": ["chr8"], "test": ["chr9"]}``.

    ``None`` (at most one split) takes every contig not listed elsewhere; without it, unlisted
    contigs are in no split. Names resolve through aliases; a contig listed twice, or not in
    ``contigs``, raises naming ``where`` (the genome file).
    """
    rest = [split for split, names in lists.items() if names is None]
    if len(rest) > 1:
        raise ValueError(f"only one split can take the remaining contigs, got {rest}")
    owner: dict[str, str] = {}
    for split, names in lists.items():
        for name in names or ():
            contig = resolve_contig(name, contigs, where)
            if contig in owner:
                raise ValueError(f"{where}: contig {contig!r} is in splits {owner[contig]!r} "
                                 f"and {split!r}")
            owner[contig] = split
    if rest:
        owner.update({c: rest[0] for c in contigs if c not in owner})
    out: dict[str, list[Interval]] = {split: [] for split in lists}
    for contig, length in contigs.items():  # genome order, so windows come in file order
        if contig in owner and length > 0:
            out[owner[contig]].append(Interval(contig, 0, length, owner[contig]))
    return out


def defined_intervals(
    genome: Genome, contigs: Sequence[str] | None = None, min_length: int = 1,
) -> list[Interval]:
    """Maximal runs without N (or other ambiguity codes) of at least ``min_length`` bases.

    Assembly gaps are long N runs; GPN restricts training windows to such "defined" regions.
    The N runs come from ``Genome.n_runs``: saved beside the genome's index after one pass
    (in bounded chunks), so a genome opened before, or prepared, costs no read of its bases.
    """
    min_length = max(min_length, 1)
    out = []
    for contig in contigs if contigs is not None else genome.contigs:
        prev = 0  # end of the last N run
        for start, end in [*genome.n_runs(contig), (genome.contigs[contig], 0)]:
            if start - prev >= min_length:
                out.append(Interval(contig, prev, start))
            prev = end
    return out


def intersect(a: Iterable[Interval], b: Iterable[Interval]) -> list[Interval]:
    """Pieces of ``a`` covered by ``b`` (labels from ``a``). ``b`` must not overlap itself."""
    by_contig: dict[str, list[Interval]] = defaultdict(list)
    for iv in b:
        by_contig[iv.contig].append(iv)
    for ivs in by_contig.values():
        ivs.sort()
        for prev, nxt in zip(ivs, ivs[1:], strict=False):
            if nxt.start < prev.end:
                raise ValueError(f"intervals overlap: {prev} and {nxt}")
    ends = {contig: np.array([o.end for o in ivs]) for contig, ivs in by_contig.items()}
    out = []
    for iv in a:
        others = by_contig.get(iv.contig, [])
        lo = int(np.searchsorted(ends[iv.contig], iv.start, side="right")) if others else 0
        for o in others[lo:]:
            if o.start >= iv.end:
                break
            s, e = max(iv.start, o.start), min(iv.end, o.end)
            if e > s:
                out.append(Interval(iv.contig, s, e, iv.label))
    return out


def total_length(intervals: Iterable[Interval]) -> int:
    return sum(len(iv) for iv in intervals)


def resolve_intervals(intervals: Iterable[Interval], contigs: Mapping[str, int], where: str
                      ) -> list[Interval]:
    """``intervals`` with contigs in the genome's spelling (aliases resolved), each checked to
    lie within its contig; raises naming ``where`` (a genome) otherwise."""
    out = []
    for iv in intervals:
        try:
            contig = resolve_contig(iv.contig, contigs, where)
        except KeyError as err:
            raise KeyError(f"{err.args[0]} for interval {iv}") from None
        if iv.end > contigs[contig]:
            raise IndexError(f"{where}: interval {iv} beyond record length {contigs[contig]}")
        out.append(iv if contig == iv.contig else Interval(contig, iv.start, iv.end, iv.label))
    return out


def check_within(intervals: Iterable[Interval], contigs: Mapping[str, int], where: str) -> None:
    """Raise naming ``where`` (a genome) if an interval falls outside ``contigs``."""
    resolve_intervals(intervals, contigs, where)


__all__ = [
    "BedFormatError", "Interval", "check_within", "defined_intervals", "group_by_label",
    "intersect", "read_bed", "resolve_intervals", "split_by_contigs", "split_by_fraction",
    "total_length", "whole_contigs", "write_bed",
]
