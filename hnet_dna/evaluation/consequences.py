"""Coding consequences of variants from GFF3/GTF CDS models and the reference (Biopython codons).

Consequences are Sequence Ontology terms, as VEP and SnpEff write them, so tables join. Most
severe first (a variant overlapping several transcripts gets the most severe, VEP's order):
``stop_gained``, ``frameshift_variant``, ``stop_lost``, ``start_lost``, ``inframe_insertion``,
``inframe_deletion``, ``missense_variant``, ``incomplete_terminal_codon_variant`` (bases of an
incomplete 3' codon), ``stop_retained_variant``, ``synonymous_variant``,
``coding_sequence_variant`` (in a CDS but not translatable: a codon cut by the 5' phase of a
partial CDS, or containing N), ``intron_variant`` (between two CDS segments of a transcript,
no CDS base touched) and ``sequence_variant`` (no CDS base touched, outside every CDS span:
UTR or intergenic, which CDS models cannot tell apart).

Rules: a substitution is judged codon by codon with ``Bio.Seq.translate`` under the chosen NCBI
genetic code; ``start_lost`` needs a complete 5' end (phase 0 and a start codon of that code),
``stop_lost`` changes the terminal stop codon of a complete 3' end. Indels are judged by the
number of CDS bases they add or remove (multiple of 3: ``inframe_insertion`` /
``inframe_deletion``, else ``frameshift_variant``); an insertion counts as coding only when both
flanking bases are CDS bases of one segment. Coordinates are 0-based; variants are expected
normalised (``variants.normalize``).

CDS models come from GFF3 (``Parent``; ``Parent=a,b`` puts a CDS in both transcripts) or GTF
(``transcript_id``; GTF ``CDS`` lines leave out the stop codon, so ``stop_codon`` lines are
merged back in and the models equal those of the GFF3 of the same genes). Contig names
resolve to the FASTA's through aliases (``chr1`` / ``1``).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from Bio.Data import CodonTable
from Bio.Seq import translate

from hnet_dna.genomics.aliases import resolve_contig
from hnet_dna.genomics.alphabet import reverse_complement_text
from hnet_dna.genomics.fasta import Genome

from .gff import GFFFormatError, iter_gff, parents

log = logging.getLogger(__name__)

CONSEQUENCES: tuple[str, ...] = (
    "stop_gained", "frameshift_variant", "stop_lost", "start_lost", "inframe_insertion",
    "inframe_deletion", "missense_variant", "incomplete_terminal_codon_variant",
    "stop_retained_variant", "synonymous_variant", "coding_sequence_variant", "intron_variant",
    "sequence_variant",
)
SEVERITY = {c: i for i, c in enumerate(CONSEQUENCES)}


@dataclass
class Transcript:
    """CDS model of one transcript: ``segments`` (0-based half-open) in transcript order."""

    id: str
    contig: str
    strand: str
    segments: list[tuple[int, int]]
    phase: int = 0  # bases before the first complete codon (GFF phase of the 5'-most CDS)
    _seq: str | None = field(default=None, repr=False)
    _offsets: np.ndarray | None = field(default=None, repr=False)

    @property
    def start(self) -> int:
        return min(s for s, _ in self.segments)

    @property
    def end(self) -> int:
        return max(e for _, e in self.segments)

    @property
    def cds_length(self) -> int:
        return sum(e - s for s, e in self.segments)

    def cds_index(self, pos: int) -> int | None:
        """Index of genomic ``pos`` in the CDS (transcript orientation), None outside."""
        if self._offsets is None:
            self._offsets = np.cumsum([0] + [e - s for s, e in self.segments])
        for i, (s, e) in enumerate(self.segments):
            if s <= pos < e:
                within = pos - s if self.strand == "+" else e - 1 - pos
                return int(self._offsets[i]) + within
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
    """Transcripts from the ``CDS`` lines of a GFF3 or GTF file, grouped by transcript.

    Coordinates are checked (1-based inclusive, start <= end, within ``contigs`` when given;
    contig names resolve through aliases); a GFF3 CDS without ``Parent`` is its own
    transcript (keyed by ``ID``). GTF ``stop_codon`` lines are merged into their transcript's
    CDS (GTF CDS lines exclude the stop codon; merging is a no-op where a CDS includes it).
    """
    groups: dict[str, list[tuple[int, int, str, str, int, int]]] = defaultdict(list)
    stops: dict[str, list[tuple[int, int]]] = defaultdict(list)
    resolved: dict[str, str] = {}
    for lineno, cols, attrs in iter_gff(path):
        if cols[2] not in ("CDS", "stop_codon"):
            continue
        where = f"{path}:{lineno}"
        try:
            start, end = int(cols[3]) - 1, int(cols[4])
        except ValueError:
            raise GFFFormatError(f"{where}: start/end not integers") from None
        if not 0 <= start < end:
            raise GFFFormatError(f"{where}: invalid range {cols[3]}-{cols[4]}")
        if cols[6] not in "+-" or len(cols[6]) != 1:
            raise GFFFormatError(f"{where}: {cols[2]} strand must be + or -, got {cols[6]!r}")
        contig = cols[0]
        if contigs is not None:
            if contig not in resolved:
                try:
                    resolved[contig] = resolve_contig(contig, contigs)
                except KeyError:
                    raise GFFFormatError(f"{where}: {cols[2]} contig {contig!r} is not in the "
                                         "genome (nor its aliases)") from None
            contig = resolved[contig]
            if end > contigs[contig]:
                raise GFFFormatError(f"{where}: {cols[2]} {contig}:{start}-{end} runs past the "
                                     f"end of the contig ({contigs[contig]})")
        keys = parents(attrs) or [attrs.get("ID") or f"line{lineno}"]
        if cols[2] == "stop_codon":
            for key in keys:
                stops[key].append((start, end))
            continue
        phase = int(cols[7]) if cols[7] in ("0", "1", "2") else 0
        for key in keys:
            groups[key].append((start, end, contig, cols[6], phase, lineno))
    out = []
    for tid, parts in groups.items():
        contig, strand = parts[0][2], parts[0][3]
        if any(p[2] != contig or p[3] != strand for p in parts):
            raise GFFFormatError(f"{path}:{parts[0][5]}: CDS of {tid!r} span contigs/strands")
        # 5'-most CDS carries the phase; then merge in the stop codon (touching intervals)
        five_prime = min(parts, key=lambda p: p[0]) if strand == "+" else \
            max(parts, key=lambda p: p[1])
        segments = _merge([(p[0], p[1]) for p in parts] + stops.get(tid, []))
        segments.sort(key=lambda se: se[0], reverse=strand == "-")
        out.append(Transcript(tid, contig, strand, segments, five_prime[4]))
    return out


def _merge(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of half-open intervals; touching ones join (CDS segments never touch: an intron
    separates them, so only a stop codon next to its CDS is joined)."""
    merged: list[list[int]] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


@lru_cache(maxsize=4096)
def _aa(codon: str, table: int) -> str:
    """One amino acid ('*' = stop), 'X' for a codon with N."""
    if "N" in codon:
        return "X"
    return str(translate(codon, table=table))


class ConsequenceAnnotator:
    """Classify normalised variants against CDS models (see the module docstring)."""

    def __init__(self, genome: Genome, transcripts: list[Transcript], table: int = 1) -> None:
        self.genome, self.table = genome, table
        self.code = CodonTable.unambiguous_dna_by_id[table]
        self.by_contig: dict[str, list[Transcript]] = defaultdict(list)
        for t in transcripts:
            self.by_contig[t.contig].append(t)
        for ts in self.by_contig.values():
            ts.sort(key=lambda t: t.start)
        self._starts = {c: np.array([t.start for t in ts]) for c, ts in self.by_contig.items()}
        self._max_span = {c: max(t.end - t.start for t in ts) for c, ts in self.by_contig.items()}

    def overlapping(self, contig: str, start: int, end: int) -> list[Transcript]:
        ts = self.by_contig.get(contig, [])
        if not ts:
            return []
        lo = int(np.searchsorted(self._starts[contig], start - self._max_span[contig]))
        hi = int(np.searchsorted(self._starts[contig], end, side="right"))
        return [t for t in ts[lo:hi] if t.start < end and start < t.end]

    def annotate(self, contig: str, pos: int, ref: str, alt: str) -> str:
        """Most severe consequence of ``ref -> alt`` at 0-based ``pos`` over all transcripts."""
        best = "sequence_variant"
        for t in self.overlapping(contig, pos, pos + max(len(ref), 1)):
            c = self._one(t, pos, ref.upper(), alt.upper())
            if SEVERITY[c] < SEVERITY[best]:
                best = c
        return best

    def _one(self, t: Transcript, pos: int, ref: str, alt: str) -> str:
        if len(ref) != len(alt):
            return self._indel(t, pos, ref, alt)
        idx = {p: t.cds_index(p) for p in range(pos, pos + len(ref))}
        if all(i is None for i in idx.values()):
            return _non_cds(t, pos, pos + len(ref))
        seq = t.sequence(self.genome)
        mutated = list(seq)
        for k, p in enumerate(range(pos, pos + len(ref))):
            if idx[p] is not None and ref[k] != alt[k]:
                base = alt[k] if t.strand == "+" else reverse_complement_text(alt[k])
                mutated[idx[p]] = base
        new = "".join(mutated)
        codons = sorted({(i - t.phase) // 3 for i in idx.values()
                         if i is not None and i >= t.phase})
        if not codons:
            return "coding_sequence_variant"  # only bases of the partial 5' codon
        n_codons = (len(seq) - t.phase) // 3
        worst = "synonymous_variant"
        for c in codons:
            a = t.phase + 3 * c
            if a + 3 > len(seq):
                cls = "incomplete_terminal_codon_variant"
            else:
                cls = self._codon(seq[a:a + 3], new[a:a + 3], c, n_codons, t.phase)
            if SEVERITY[cls] < SEVERITY[worst]:
                worst = cls
        return worst

    def _codon(self, old: str, new: str, index: int, n_codons: int, phase: int) -> str:
        a, b = _aa(old, self.table), _aa(new, self.table)
        if "X" in (a, b):
            return "coding_sequence_variant"
        if index == 0 and phase == 0 and old in self.code.start_codons and \
                new not in self.code.start_codons:
            return "start_lost"
        if a == "*" and b != "*":
            return "stop_lost" if index == n_codons - 1 else "missense_variant"
        if b == "*" and a != "*":
            return "stop_gained"
        if a == b == "*":
            return "stop_retained_variant"
        return "synonymous_variant" if a == b else "missense_variant"

    def _indel(self, t: Transcript, pos: int, ref: str, alt: str) -> str:
        if len(ref) > len(alt):  # deletion (after the shared anchor bases)
            shared = len(alt)
            removed = [p for p in range(pos + shared, pos + len(ref)) if t.cds_index(p) is not None]
            if not removed:
                return _non_cds(t, pos + shared, pos + len(ref))
            return "inframe_deletion" if len(removed) % 3 == 0 else "frameshift_variant"
        # insertion between pos + len(ref) - 1 and pos + len(ref)
        left, right = pos + len(ref) - 1, pos + len(ref)
        il, ir = t.cds_index(left), t.cds_index(right)
        if il is None or ir is None or abs(il - ir) != 1:
            return _non_cds(t, left, right + 1)
        return "inframe_insertion" if (len(alt) - len(ref)) % 3 == 0 else "frameshift_variant"


def _non_cds(t: Transcript, lo: int, hi: int) -> str:
    """No CDS base in ``[lo, hi)``: intronic when it lies within the CDS span of ``t``."""
    return "intron_variant" if t.start <= lo and hi <= t.end else "sequence_variant"


def cds_snvs(genome: Genome, transcripts: list[Transcript]
             ) -> Iterator[tuple[str, int, str, str]]:
    """Every possible SNV ``(contig, pos0, ref, alt)`` at the ACGT bases of the CDS models,
    each genomic position once, sorted by contig and position."""
    positions: dict[str, set[int]] = defaultdict(set)
    for t in transcripts:
        for s, e in t.segments:
            positions[t.contig].update(range(s, e))
    for contig in sorted(positions):
        for pos in sorted(positions[contig]):
            ref = genome.fetch(contig, pos, pos + 1).upper()
            if ref not in "ACGT":
                continue
            for alt in "ACGT":
                if alt != ref:
                    yield contig, pos, ref, alt
