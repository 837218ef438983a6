"""Consequences of variants on the coding transcripts of a GFF3/GTF, as VEP defines them.

Terms are Sequence Ontology terms, as VEP and SnpEff write them, so tables join.
:data:`CONSEQUENCES` lists those emitted, most severe first (VEP's order); a variant gets the
most severe term over all its terms on all overlapping transcripts (VEP's "most severe
consequence"); :meth:`ConsequenceAnnotator.terms` gives all of them.

- Splice terms follow VEP on each intron (between two exons of a transcript; between two CDS
  segments where the file has no ``exon`` lines): ``splice_donor_variant`` /
  ``splice_acceptor_variant`` for the first / last two intronic bases in transcript orientation
  (so donor and acceptor swap sides on the minus strand), ``splice_region_variant`` for intronic
  bases 3-8 and the 1-3 exonic bases next to the intron (not beside a donor/acceptor term),
  ``intron_variant`` for intronic bases from the third to the third-last. Insertions count by
  VEP's special cases. Judged on the record as given (left-normalised), as VEP does.
- An edit within the exons (and the 64 flanking bases kept for context) is judged on the
  alternate haplotype by :mod:`.coding_effects`: start/stop codon lost, kept or gained, frame,
  codon changes, ``5_prime_UTR_variant`` / ``3_prime_UTR_variant``; the result does not depend
  on where in a repeat the VCF placed an indel.
- An edit from an exon into an intron: ``coding_sequence_variant`` where it removes CDS bases,
  else a UTR term, beside its splice terms.
- ``sequence_variant``: nothing of any coding transcript (intergenic, or a non-coding gene; the
  UTR of a file without ``exon`` lines). VEP's finer terms (``splice_donor_5th_base_variant``,
  ``splice_donor_region_variant``, ``splice_polypyrimidine_tract_variant``), upstream/downstream,
  NMD and non-coding transcript terms are not emitted.

CDS models: :mod:`.cds_models`. Coordinates are 0-based; variants are expected normalised
(``variants.normalize``).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from Bio.Data import CodonTable

from hnet_dna.genomics.alphabet import reverse_complement_text
from hnet_dna.genomics.fasta import Genome

from .cds_models import Transcript, read_cds_models
from .coding_effects import CodingFrame, edit_terms, translate_codons

__all__ = ["CONSEQUENCES", "HIGH_OR_MODERATE", "IMPACT", "SEVERITY", "ConsequenceAnnotator",
           "Transcript", "cds_snvs", "read_cds_models"]

CONSEQUENCES: tuple[str, ...] = (
    "splice_acceptor_variant", "splice_donor_variant", "stop_gained", "frameshift_variant",
    "stop_lost", "start_lost", "inframe_insertion", "inframe_deletion", "missense_variant",
    "protein_altering_variant", "splice_region_variant", "incomplete_terminal_codon_variant",
    "start_retained_variant", "stop_retained_variant", "synonymous_variant",
    "coding_sequence_variant", "5_prime_UTR_variant", "3_prime_UTR_variant", "intron_variant",
    "sequence_variant",
)
SEVERITY = {c: i for i, c in enumerate(CONSEQUENCES)}
#: VEP's IMPACT of each term (HIGH, MODERATE, LOW, MODIFIER)
IMPACT = {c: "HIGH" if i < 6 else "MODERATE" if i < 10 else "LOW" if i < 15 else "MODIFIER"
          for i, c in enumerate(CONSEQUENCES)}
#: the terms of HIGH or MODERATE impact, most severe first
HIGH_OR_MODERATE = tuple(c for c in CONSEQUENCES if IMPACT[c] in ("HIGH", "MODERATE"))

FLANK = 64  # genomic bases kept beyond each transcript end, context for indels at its ends


@dataclass
class _Layout:
    """A transcript's :class:`CodingFrame` and its genomic blocks (5' flank, exons, 3' flank).

    ``starts``/``ends``/``offsets``: the blocks in genomic order and the index in
    ``frame.seq`` of each block's 5'-most base (transcript orientation).
    """

    frame: CodingFrame
    strand: str
    starts: list[int]
    ends: list[int]
    offsets: list[int]
    intron_starts: list[int]
    intron_ends: list[int]

    def block(self, pos: int) -> int | None:
        i = bisect.bisect_right(self.starts, pos) - 1
        return i if i >= 0 and pos < self.ends[i] else None

    def index(self, pos: int, i: int) -> int:
        if self.strand == "+":
            return self.offsets[i] + pos - self.starts[i]
        return self.offsets[i] + self.ends[i] - 1 - pos

    def edit(self, g0: int, g1: int, ins: str) -> tuple[int, int, str] | None:
        """Genomic edit ``[g0, g1) -> ins`` in transcript coordinates; None where it reaches
        an intron or past the flanks."""
        lo, hi = (g0 - 1, g0) if g0 == g1 else (g0, g1 - 1)  # an insertion: its two flanks
        i, j = self.block(lo), self.block(hi)
        if i is None or j is None or any(self.ends[k] != self.starts[k + 1] for k in range(i, j)):
            return None
        if self.strand == "+":
            a = self.index(g0, i if g0 == lo else j)
            return a, a + g1 - g0, ins
        if g0 == g1:  # between genomic g0 - 1 and g0, which come in the reverse order here
            a = self.index(lo, i)
            return a, a, reverse_complement_text(ins)
        b = self.index(g0, i) + 1
        return b - (g1 - g0), b, reverse_complement_text(ins)


class ConsequenceAnnotator:
    """Classify normalised variants against coding transcripts (see the module docstring)."""

    def __init__(self, genome: Genome, transcripts: list[Transcript], table: int = 1,
                 cache: int = 1024) -> None:
        self.genome, self.table, self._cache_size = genome, table, cache
        self.code = CodonTable.unambiguous_dna_by_id[table]
        self.by_contig: dict[str, list[Transcript]] = defaultdict(list)
        for t in transcripts:
            self.by_contig[t.contig].append(t)
        for ts in self.by_contig.values():
            ts.sort(key=lambda t: t.start)
        self._starts = {c: np.array([t.start for t in ts]) for c, ts in self.by_contig.items()}
        self._max_span = {c: max(t.end - t.start for t in ts) for c, ts in self.by_contig.items()}
        self._layouts: OrderedDict[int, _Layout] = OrderedDict()  # LRU: sorted VCFs hit it

    def overlapping(self, contig: str, start: int, end: int) -> list[Transcript]:
        ts = self.by_contig.get(contig, [])
        if not ts:
            return []
        lo = int(np.searchsorted(self._starts[contig], start - self._max_span[contig]))
        hi = int(np.searchsorted(self._starts[contig], end, side="right"))
        return [t for t in ts[lo:hi] if t.start < end and start < t.end]

    def annotate(self, contig: str, pos: int, ref: str, alt: str) -> str:
        """Most severe consequence of ``ref -> alt`` at 0-based ``pos`` over all transcripts."""
        return min(self.terms(contig, pos, ref, alt), key=SEVERITY.__getitem__)

    def terms(self, contig: str, pos: int, ref: str, alt: str) -> set[str]:
        """Every term of ``ref -> alt`` on every overlapping transcript (``{"sequence_variant"}``
        when there is none)."""
        ref, alt = ref.upper(), alt.upper()
        p = 0  # trim the shared bases: the literal edit is [g0, g1) -> ins
        while p < min(len(ref), len(alt)) and ref[p] == alt[p]:
            p += 1
        s = 0
        while s < min(len(ref), len(alt)) - p and ref[-1 - s] == alt[-1 - s]:
            s += 1
        g0, g1, ins = pos + p, pos + len(ref) - s, alt[p:len(alt) - s]
        found: set[str] = set()
        # transcripts within FLANK: another placement of an indel may reach into them
        for t in self.overlapping(contig, pos - FLANK, pos + len(ref) + FLANK):
            found |= self._transcript_terms(t, g0, g1, ins)
        return found or {"sequence_variant"}

    def _transcript_terms(self, t: Transcript, g0: int, g1: int, ins: str) -> set[str]:
        lay = self._layout(t)
        terms = _splice_terms(lay, t.strand, g0, g1)
        edit = lay.edit(g0, g1, ins)
        if edit is not None:
            return terms | edit_terms(lay.frame, *edit)
        if g1 > g0:  # an exon-intron deletion (or one past the flanks)
            if any(s < g1 and g0 < e for s, e in t.segments):
                terms.add("coding_sequence_variant")
            elif any(s < g1 and g0 < e for s, e in t.exons):
                cds_lo = min(s for s, _ in t.segments)
                five = (g0 < cds_lo) == (t.strand == "+")
                terms.add("5_prime_UTR_variant" if five else "3_prime_UTR_variant")
        return terms

    def _layout(self, t: Transcript) -> _Layout:
        key = id(t)
        lay = self._layouts.get(key)
        if lay is not None:
            self._layouts.move_to_end(key)
            return lay
        lay = self._build_layout(t)
        self._layouts[key] = lay
        if len(self._layouts) > self._cache_size:
            self._layouts.popitem(last=False)
        return lay

    def _build_layout(self, t: Transcript) -> _Layout:
        size = self.genome.contigs[t.contig]
        five = (max(0, t.start - FLANK), t.start) if t.strand == "+" else \
            (t.end, min(size, t.end + FLANK))
        three = (t.end, min(size, t.end + FLANK)) if t.strand == "+" else \
            (max(0, t.start - FLANK), t.start)
        blocks = [b for b in (five, *t.exons, three) if b[1] > b[0]]
        parts = [self.genome.fetch(t.contig, s, e).upper() for s, e in blocks]
        if t.strand == "-":
            parts = [reverse_complement_text(x) for x in parts]
        offsets = np.cumsum([0] + [len(x) for x in parts[:-1]]).tolist()
        order = sorted(range(len(blocks)), key=lambda k: blocks[k][0])
        introns = t.introns
        lay = _Layout(None, t.strand, [blocks[k][0] for k in order],  # type: ignore[arg-type]
                      [blocks[k][1] for k in order], [offsets[k] for k in order],
                      [s for s, _ in introns], [e for _, e in introns])
        seq = "".join(parts)
        five_prime_cds = t.segments[0][0] if t.strand == "+" else t.segments[0][1] - 1
        three_prime_cds = t.segments[-1][1] - 1 if t.strand == "+" else t.segments[-1][0]
        cs = lay.index(five_prime_cds, lay.block(five_prime_cds))
        ce = lay.index(three_prime_cds, lay.block(three_prime_cds)) + 1
        x0 = len(parts[0]) if five[1] > five[0] else 0
        x1 = x0 + sum(e - s for s, e in t.exons)
        stop = (ce - cs - t.phase) % 3 == 0 and ce - cs - t.phase >= 6 and \
            translate_codons(seq[ce - 3:ce], self.table) == "*"
        lay.frame = CodingFrame(seq, (cs, ce), (x0, x1), t.phase,
                                t.phase == 0 and seq[cs:cs + 3] in self.code.start_codons,
                                stop, self.table)
        return lay


def _splice_terms(lay: _Layout, strand: str, g0: int, g1: int) -> set[str]:
    """VEP's intron effects of the literal edit ``[g0, g1)`` (an insertion: ``g0 == g1``)."""
    vs, ve = g0 + 1, g1  # VEP's 1-based start/end; an insertion has start = end + 1
    insertion = g0 == g1
    lo = bisect.bisect_left(lay.intron_ends, g0 - 4)
    hi = bisect.bisect_right(lay.intron_starts, g1 + 4)
    five_site = three_site = intronic = region = False  # genomic 5' / 3' end of an intron
    for ia, ib in zip(lay.intron_starts[lo:hi], lay.intron_ends[lo:hi], strict=True):
        s, e = ia + 1, ib  # 1-based first and last intronic base
        five_site |= _hit(vs, ve, s, s + 1)
        three_site |= _hit(vs, ve, e - 1, e)
        intronic |= _hit(vs, ve, s + 2, e - 2) or insertion and (vs == s + 2 or ve == e - 2)
        region |= (_hit(vs, ve, s + 2, s + 7) or _hit(vs, ve, e - 7, e - 2)
                   or _hit(vs, ve, s - 3, s - 1) or _hit(vs, ve, e + 1, e + 3)
                   or insertion and (vs in (s, s + 2) or ve in (e, e - 2)))
    donor, acceptor = (five_site, three_site) if strand == "+" else (three_site, five_site)
    terms = set()
    if donor:
        terms.add("splice_donor_variant")
    if acceptor:
        terms.add("splice_acceptor_variant")
    if region and not (donor or acceptor):
        terms.add("splice_region_variant")
    if intronic:
        terms.add("intron_variant")
    return terms


def _hit(vs: int, ve: int, x: int, y: int) -> bool:
    """VEP's ``overlap``: 1-based ``[vs, ve]`` meets ``[x, y]`` (an insertion has vs = ve + 1)."""
    return ve >= x and vs <= y


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
