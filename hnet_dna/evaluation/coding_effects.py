"""Coding terms of one edit of a transcript's sequence, judged on the alternate haplotype.

The edit replaces ``seq[a:b]`` by ``ins`` (transcript orientation). An indel in a repeat has
several equivalent placements; the terms do not depend on which one the VCF record chose:

- an edit that fits wholly before the CDS (its 5'-most placement) leaves the CDS intact:
  ``start_retained_variant`` when its 3'-most placement still cuts into a complete start codon
  (VEP's rule on the HGVS 3'-shifted record), else ``5_prime_UTR_variant`` where it touches
  exonic UTR; mirrored after the CDS (``stop_retained_variant`` / ``3_prime_UTR_variant``).
- otherwise the frame changes when the CDS bases gained or lost are not a multiple of 3 (a
  deletion counts its placement with the most CDS bases): ``frameshift_variant``; a complete
  start codon cut in every placement is ``start_lost`` (any change of it: VEP); then the codons
  spanned by the 3'-most placement are translated before and after (NCBI table of the
  annotator) and compared as VEP compares peptide alleles: a stop gained, lost (the terminal
  one) or kept, else missense / synonymous (same length), ``inframe_insertion`` (the old
  peptide a prefix or suffix of the new), ``inframe_deletion`` (the new codons what is left of
  the old after cutting out whole codons) or ``protein_altering_variant``.
- the partial 5' codon of a CDS with phase, or a codon with N, is ``coding_sequence_variant``;
  the partial last codon of a CDS without its stop is ``incomplete_terminal_codon_variant``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from Bio.Seq import translate


@dataclass(frozen=True)
class CodingFrame:
    """A coding transcript laid out for :func:`edit_terms`.

    ``seq``: 5' flank + spliced exons + 3' flank, uppercase, transcript orientation;
    ``cds`` and ``exonic``: the CDS and the exons' span in ``seq`` (half-open); ``phase``: bases
    before the first complete codon; ``start_complete``: phase 0 and a start codon of the table
    at the CDS start; ``stop_complete``: the CDS ends with a stop codon in frame.
    """

    seq: str
    cds: tuple[int, int]
    exonic: tuple[int, int]
    phase: int
    start_complete: bool
    stop_complete: bool
    table: int = 1


@lru_cache(maxsize=4096)
def _aa(codon: str, table: int) -> str:
    """One amino acid ('*' = stop), 'X' for a codon with N."""
    if "N" in codon:
        return "X"
    return str(translate(codon, table=table))


def translate_codons(seq: str, table: int) -> str:
    """Translation of the complete codons of ``seq`` (a trailing partial codon is left out)."""
    return "".join(_aa(seq[i:i + 3], table) for i in range(0, len(seq) - 2, 3))


def shift_3prime(seq: str, a: int, b: int, ins: str) -> tuple[int, int, str]:
    """The placement of a pure insertion or deletion furthest 3' (a delins stays put)."""
    if a == b and ins:
        while a < len(seq) and seq[a] == ins[0]:
            ins, a = ins[1:] + seq[a], a + 1
        return a, a, ins
    if not ins:
        while b < len(seq) and seq[b] == seq[a]:
            a, b = a + 1, b + 1
    return a, b, ins


def shift_5prime(seq: str, a: int, b: int, ins: str) -> tuple[int, int, str]:
    """The placement of a pure insertion or deletion furthest 5' (a delins stays put)."""
    if a == b and ins:
        while a > 0 and seq[a - 1] == ins[-1]:
            ins, a = seq[a - 1] + ins[:-1], a - 1
        return a, a, ins
    if not ins:
        while a > 0 and seq[a - 1] == seq[b - 1]:
            a, b = a - 1, b - 1
    return a, b, ins


def _cuts(a: int, b: int, lo: int, hi: int) -> bool:
    """Does the edit ``[a, b)`` change a base of ``[lo, hi)``? (An insertion must fall between
    two of its bases, as VEP's overlap of ``start = end + 1`` coordinates.)"""
    return lo < a < hi if a == b else a < hi and lo < b


def _in_utr(a: int, b: int, lo: int, hi: int, five_prime: bool) -> bool:
    """Does the edit touch the exonic UTR ``[lo, hi)``? An insertion next to the CDS counts
    (VEP), one at the transcript's outer end does not (up/downstream)."""
    if a == b:
        return lo < a <= hi if five_prime else lo <= a < hi
    return a < hi and lo < b


def edit_terms(f: CodingFrame, a: int, b: int, ins: str) -> set[str]:
    """Sequence Ontology terms of replacing ``f.seq[a:b]`` by ``ins`` (see the module doc)."""
    seq, (cs, ce), (x0, x1) = f.seq, f.cds, f.exonic
    a5, b5, _ = shift_5prime(seq, a, b, ins)
    a3, b3, i3 = shift_3prime(seq, a, b, ins)
    if b5 <= cs:  # fits before the CDS: the CDS is intact
        if f.start_complete and _cuts(a3, b3, cs, cs + 3):
            return {"start_retained_variant"}
        utr = any(_in_utr(p, q, x0, cs, True) for p, q in ((a5, b5), (a3, b3)))
        return {"5_prime_UTR_variant"} if utr else set()
    if a3 >= ce:  # fits after the CDS
        if f.stop_complete and _cuts(a5, b5, ce - 3, ce):
            return {"stop_retained_variant"}
        utr = any(_in_utr(p, q, ce, x1, False) for p, q in ((a5, b5), (a3, b3)))
        return {"3_prime_UTR_variant"} if utr else set()
    if not ins and b > a:  # a deletion: its placement with the most CDS bases
        k = b - a
        places = {a5, a3, min(max(cs, a5), a3), min(max(ce - k, a5), a3)}
        change = -max(max(0, min(x + k, ce) - max(x, cs)) for x in places)
    else:
        change = len(ins) - (b - a)
    first = cs + f.phase  # first base of the first complete codon
    if a3 < first:  # cuts the partial 5' codon, or runs from the 5' UTR into the CDS
        terms = {"frameshift_variant"} if change % 3 else set()
        if f.start_complete:
            terms.add("start_lost")
        return terms or {"coding_sequence_variant"}
    last = first + (ce - first) // 3 * 3  # end of the last complete codon
    if not f.stop_complete and last < ce and a3 >= last:
        return {"incomplete_terminal_codon_variant"}
    c0 = first + (a3 - first) // 3 * 3
    c1 = c0 + 3 if a3 == b3 else first - (first - b3) // 3 * 3
    if c1 > len(seq):
        return {"coding_sequence_variant"}
    ref_codons = seq[c0:c1]
    alt_codons = seq[c0:a3] + i3 + seq[b3:c1]
    ref_pep = translate_codons(ref_codons, f.table)
    alt_pep = translate_codons(alt_codons, f.table)
    terms = set()
    if change % 3:
        terms.add("frameshift_variant")
    if f.start_complete and a3 < cs + 3:
        terms.add("start_lost")
    if "X" in ref_pep + alt_pep:
        return terms or {"coding_sequence_variant"}
    if "*" in alt_pep and "*" not in ref_pep:
        terms.add("stop_gained")
    if terms:  # VEP: no peptide-level class beside a frameshift or a lost start
        return terms
    return _peptide_terms(f, c0, ref_codons, alt_codons, ref_pep, alt_pep)


def _to_stop(pep: str) -> str:
    return pep[:pep.index("*") + 1] if "*" in pep else pep


def _peptide_terms(f: CodingFrame, c0: int, ref_codons: str, alt_codons: str, ref_pep: str,
                   alt_pep: str) -> set[str]:
    """In-frame change of the codons from ``c0``: VEP's comparison of the peptide alleles."""
    rt, at = _to_stop(ref_pep), _to_stop(alt_pep)
    if "*" in rt and "*" not in at:
        terminal = f.stop_complete and c0 + 3 * rt.index("*") == f.cds[1] - 3
        return {"stop_lost" if terminal else "missense_variant"}
    if "*" in at and "*" not in rt:
        return {"stop_gained"}
    terms = {"stop_retained_variant"} if "*" in rt else set()
    if rt == at:
        return terms or {"synonymous_variant"}
    if len(at) == len(rt):
        return terms | {"missense_variant"}
    if len(at) > len(rt):
        inserted = at.startswith(rt) or at.endswith(rt)
        return terms | {"inframe_insertion" if inserted else "protein_altering_variant"}
    return terms | {"inframe_deletion" if _whole_codons_cut(ref_codons, alt_codons)
                    else "protein_altering_variant"}


def _whole_codons_cut(ref: str, alt: str) -> bool:
    """``alt`` is ``ref`` with a prefix, suffix or inner run of whole codons' length cut out."""
    if ref.startswith(alt) or ref.endswith(alt):
        return True
    p = 0
    while p < min(len(ref), len(alt)) and ref[p] == alt[p]:
        p += 1
    s = 0
    while s < min(len(ref), len(alt)) - p and ref[-1 - s] == alt[-1 - s]:
        s += 1
    return p + s == len(alt) and (len(ref) - len(alt)) % 3 == 0
