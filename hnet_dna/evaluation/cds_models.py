"""Transcript models (exons + CDS) of the coding transcripts of a GFF3 or GTF file.

A model is a transcript with ``CDS`` lines: its CDS segments (GTF ``stop_codon`` lines merged
back in: GTF ``CDS`` lines leave the stop codon out) and its exons (``exon`` lines with the same
parent; the CDS segments stand in for the exons when a transcript has none, so introns are then
the gaps between CDS segments and no UTR is known). Transcripts without CDS (non-coding RNAs)
are not modelled. GFF3 groups by ``Parent`` (``Parent=a,b`` puts a feature in both
transcripts), GTF by ``transcript_id``; contig names resolve to the FASTA's through aliases.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise

from hnet_dna.genomics.aliases import resolve_contig
from hnet_dna.genomics.alphabet import reverse_complement_text
from hnet_dna.genomics.fasta import Genome

from .gff import GFFFormatError, iter_gff, parents

log = logging.getLogger(__name__)

_FEATURES = ("CDS", "stop_codon", "exon")


@dataclass
class Transcript:
    """One coding transcript; intervals are 0-based half-open, in transcript order (5' first).

    ``segments``: CDS segments; ``exons``: exons (the CDS segments when the file had none);
    ``phase``: bases before the first complete codon (GFF phase of the 5'-most CDS).
    """

    id: str
    contig: str
    strand: str
    segments: list[tuple[int, int]]
    phase: int = 0
    exons: list[tuple[int, int]] = field(default_factory=list)
    start: int = field(init=False)  # genomic span of the exons
    end: int = field(init=False)
    _seq: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.exons:
            self.exons = list(self.segments)
        self.start = min(s for s, _ in self.exons)
        self.end = max(e for _, e in self.exons)

    @property
    def cds_length(self) -> int:
        return sum(e - s for s, e in self.segments)

    @property
    def introns(self) -> list[tuple[int, int]]:
        """Gaps between consecutive exons, genomic order."""
        ex = sorted(self.exons)
        return [(a[1], b[0]) for a, b in pairwise(ex) if a[1] < b[0]]

    def cds_index(self, pos: int) -> int | None:
        """Index of genomic ``pos`` in the CDS (transcript orientation), None outside."""
        offset = 0
        for s, e in self.segments:
            if s <= pos < e:
                return offset + (pos - s if self.strand == "+" else e - 1 - pos)
            offset += e - s
        return None

    def sequence(self, genome: Genome) -> str:
        """Spliced CDS in transcript orientation, uppercase (cached)."""
        if self._seq is None:
            parts = [genome.fetch(self.contig, s, e).upper() for s, e in self.segments]
            if self.strand == "-":
                parts = [reverse_complement_text(p) for p in parts]
            self._seq = "".join(parts)
        return self._seq


def read_cds_models(path: str | os.PathLike, contigs: dict[str, int] | None = None
                    ) -> list[Transcript]:
    """Transcript models from the ``CDS`` (+ ``stop_codon``, ``exon``) lines of a GFF3/GTF.

    Coordinates are checked (1-based inclusive, start <= end, within ``contigs`` when given;
    contig names resolve through aliases); a GFF3 CDS without ``Parent`` is its own transcript
    (keyed by ``ID``). A CDS outside its transcript's exons is refused; a file without CDS
    lines gives a warning naming it (every variant would be ``sequence_variant``).
    """
    rows: dict[str, dict[str, list[tuple[int, int, str, str, int, int]]]] = {
        f: defaultdict(list) for f in _FEATURES}
    resolved: dict[str, str] = {}
    for lineno, cols, attrs in iter_gff(path):
        feature = cols[2]
        if feature not in _FEATURES:
            continue
        where = f"{path}:{lineno}"
        try:
            start, end = int(cols[3]) - 1, int(cols[4])
        except ValueError:
            raise GFFFormatError(f"{where}: start/end not integers") from None
        if not 0 <= start < end:
            raise GFFFormatError(f"{where}: invalid range {cols[3]}-{cols[4]}")
        if cols[6] not in "+-" or len(cols[6]) != 1:
            raise GFFFormatError(f"{where}: {feature} strand must be + or -, got {cols[6]!r}")
        contig = cols[0]
        if contigs is not None:
            if contig not in resolved:
                try:
                    resolved[contig] = resolve_contig(contig, contigs)
                except KeyError:
                    raise GFFFormatError(f"{where}: {feature} contig {contig!r} is not in the "
                                         "genome (nor its aliases)") from None
            contig = resolved[contig]
            if end > contigs[contig]:
                raise GFFFormatError(f"{where}: {feature} {contig}:{start}-{end} runs past the "
                                     f"end of the contig ({contigs[contig]})")
        phase = int(cols[7]) if cols[7] in ("0", "1", "2") else 0
        for key in parents(attrs) or [attrs.get("ID") or f"line{lineno}"]:
            rows[feature][key].append((start, end, contig, cols[6], phase, lineno))
    if not rows["CDS"]:
        log.warning("%s: no CDS lines, so no coding transcripts: every variant will be "
                    "sequence_variant", path)
    return [_model(path, tid, parts, rows["stop_codon"].get(tid, []),
                   rows["exon"].get(tid, [])) for tid, parts in rows["CDS"].items()]


def _model(path, tid: str, parts: list, stops: list, exons: list) -> Transcript:
    contig, strand = parts[0][2], parts[0][3]
    if any(p[2] != contig or p[3] != strand for p in parts + stops + exons):
        raise GFFFormatError(f"{path}:{parts[0][5]}: CDS/exons of {tid!r} span contigs/strands")
    # 5'-most CDS carries the phase; then merge in the stop codon (touching intervals)
    five_prime = min(parts, key=lambda p: p[0]) if strand == "+" else \
        max(parts, key=lambda p: p[1])
    segments = _merge([(p[0], p[1]) for p in parts + stops])
    exon_iv = _merge([(p[0], p[1]) for p in exons])
    for s, e in segments if exon_iv else ():
        if not any(a <= s and e <= b for a, b in exon_iv):
            raise GFFFormatError(f"{path}: CDS {contig}:{s + 1}-{e} of {tid!r} is not inside "
                                 "one of its exons")
    reverse = strand == "-"
    return Transcript(tid, contig, strand, sorted(segments, reverse=reverse), five_prime[4],
                      sorted(exon_iv, reverse=reverse))


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of half-open intervals; touching ones join (a stop codon next to its CDS; CDS
    segments and exons of one transcript never touch: an intron separates them)."""
    merged: list[list[int]] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]
