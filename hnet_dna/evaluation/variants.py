"""Variant records from VCF/BCF: per-ALT split, normalisation, checks and scoring windows.

Every ALT of every record becomes one :class:`Variant` with a ``status``: ``"ok"`` (to be
scored) or the reason it is skipped, counted in :class:`SkipCounter` and never scored:

* ``symbolic``: ``<DEL>``-style, breakend (``[``/``]``), ``*`` or missing (``.``) ALT;
* ``missing_contig``: the contig is not in the reference FASTA;
* ``out_of_range``: REF runs past the end of the contig;
* ``ref_mismatch``: REF differs from the reference (case-insensitive);
* ``ambiguous``: REF or ALT has a non-ACGT letter (N, IUPAC codes);
* ``no_change``: REF equals ALT;
* ``too_long``: REF or ALT longer than half the scoring window.

Normalisation (as ``bcftools norm``/vt): trim the shared suffix, left-align by extending to the
left with reference bases while the last bases agree, then trim the shared prefix keeping one
anchor base for indels.

Windows are centred on the normalised REF: ``(W - len(REF)) // 2`` bases left of it, the rest
right of it, so the reference window has exactly ``W`` bases and the ALT window has the same
flanks around ALT. Flanks running off a contig end are padded with N (``edge_padded``; N is
never scored by :mod:`scoring`).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hnet_dna.genomics.alphabet import N, encode
from hnet_dna.genomics.fasta import Genome

log = logging.getLogger(__name__)

SKIP_REASONS: tuple[str, ...] = (
    "symbolic", "missing_contig", "out_of_range", "ref_mismatch", "ambiguous", "no_change",
    "too_long",
)
_ACGT = frozenset("ACGT")


@dataclass
class Variant:
    """One ALT allele of one VCF record (``record``: 0-based index in the file)."""

    record: int
    alt_index: int
    contig: str
    vcf_pos: int  # 1-based POS as in the file
    vcf_id: str | None
    vcf_ref: str
    vcf_alt: str
    pos: int = -1  # 0-based normalised start
    ref: str = ""
    alt: str = ""
    status: str = "ok"
    edge_padded: bool = False

    @property
    def kind(self) -> str:
        if len(self.ref) == len(self.alt):
            return "snv" if len(self.ref) == 1 else "mnv"
        if len(self.ref) == 1 or len(self.alt) == 1:
            return "insertion" if len(self.alt) > len(self.ref) else "deletion"
        return "complex"


class SkipCounter(Counter):
    """Counts of skipped ALTs by reason, plus ``edge_padded`` (scored with N padding)."""

    def summary(self, scored: int) -> str:
        lines = [f"scored: {scored}"]
        lines += [f"skipped ({r}): {self[r]}" for r in SKIP_REASONS if self[r]]
        if self["edge_padded"]:
            lines.append(f"scored with N padding at a contig edge: {self['edge_padded']}")
        return "\n".join(lines)


def normalize(genome: Genome, contig: str, pos: int, ref: str, alt: str
              ) -> tuple[int, str, str]:
    """Parsimonious, left-aligned ``(pos0, ref, alt)`` (Tan et al. 2015, the vt algorithm)."""
    ref, alt = ref.upper(), alt.upper()
    while True:
        changed = False
        if ref and alt and ref[-1] == alt[-1] and (len(ref) > 1 or len(alt) > 1):
            ref, alt = ref[:-1], alt[:-1]
            changed = True
        if (not ref or not alt) and pos > 0:
            base = genome.fetch(contig, pos - 1, pos).upper()
            ref, alt, pos = base + ref, base + alt, pos - 1
            changed = True
        if not changed:
            break
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


def _is_symbolic(alt: str | None) -> bool:
    return alt is None or alt in (".", "*") or alt.startswith("<") or "[" in alt or "]" in alt


def read_variants(path: str | os.PathLike, genome: Genome, window: int,
                  counter: SkipCounter | None = None) -> Iterator[Variant]:
    """Every ALT of every record of a VCF/BCF (pysam), checked and normalised.

    Skips are counted in ``counter``; REF mismatches are also logged (first 10 in full).
    """
    import pysam

    counter = counter if counter is not None else SkipCounter()
    with pysam.VariantFile(str(path)) as vf:
        for i, rec in enumerate(vf):
            alts = rec.alts or (None,)  # ALT '.' -> one missing allele, reported as skipped
            for a, alt in enumerate(alts):
                v = Variant(i, a, rec.contig, rec.pos, rec.id, rec.ref, alt or ".")
                v.status = _check(v, genome, window)
                if v.status == "ref_mismatch":
                    actual = genome.fetch(v.contig, rec.pos - 1, rec.pos - 1 + len(rec.ref))
                    if counter["ref_mismatch"] < 10:
                        log.warning("%s: record %d (%s:%d) REF %s does not match the reference "
                                    "(%s); skipped", path, i + 1, rec.contig, rec.pos, rec.ref,
                                    actual)
                if v.status != "ok":
                    counter[v.status] += 1
                else:
                    v.pos, v.ref, v.alt = normalize(genome, v.contig, rec.pos - 1,
                                                    rec.ref, alt)
                    left, right = flanks(v, window)
                    v.edge_padded = v.pos - left < 0 or \
                        v.pos + len(v.ref) + right > genome.contigs[v.contig]
                    counter["edge_padded"] += v.edge_padded
                yield v


def _check(v: Variant, genome: Genome, window: int) -> str:
    if _is_symbolic(v.vcf_alt) or _is_symbolic(v.vcf_ref):
        return "symbolic"
    if v.contig not in genome.contigs:
        return "missing_contig"
    start = v.vcf_pos - 1
    if start + len(v.vcf_ref) > genome.contigs[v.contig]:
        return "out_of_range"
    if genome.fetch(v.contig, start, start + len(v.vcf_ref)).upper() != v.vcf_ref.upper():
        return "ref_mismatch"
    if not set(v.vcf_ref.upper()) <= _ACGT or not set(v.vcf_alt.upper()) <= _ACGT:
        return "ambiguous"
    if v.vcf_ref.upper() == v.vcf_alt.upper():
        return "no_change"
    if max(len(v.vcf_ref), len(v.vcf_alt)) > window // 2:
        return "too_long"
    return "ok"


def fetch_padded(genome: Genome, contig: str, start: int, end: int) -> np.ndarray:
    """Base ids of ``contig[start:end]``, positions outside the contig as N."""
    length = genome.contigs[contig]
    a, b = max(start, 0), min(end, length)
    ids = genome.fetch_encoded(contig, a, b)[0] if b > a else np.empty(0, np.uint8)
    return np.concatenate([np.full(a - start, N, np.uint8), ids,
                           np.full(end - b, N, np.uint8)])


def flanks(v: Variant, window: int) -> tuple[int, int]:
    """Bases left and right of the normalised REF in its scoring window."""
    left = (window - len(v.ref)) // 2
    return left, window - len(v.ref) - left


def variant_windows(genome: Genome, v: Variant, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ref window, alt window)`` base ids on the forward strand (see the module doc)."""
    left, right = flanks(v, window)
    ref_win = fetch_padded(genome, v.contig, v.pos - left, v.pos + len(v.ref) + right)
    alt_ids = encode(v.alt)[0]
    alt_win = np.concatenate([ref_win[:left], alt_ids, ref_win[left + len(v.ref):]])
    return ref_win, alt_win
