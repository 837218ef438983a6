"""Variant records from VCF/BCF: per-ALT split, normalisation, checks and scoring windows.

Every ALT of every record becomes one :class:`Variant` with a ``status``: ``"ok"`` (to be
scored) or the reason it is skipped, counted in :class:`SkipCounter` and never scored:

* ``symbolic``: ``<DEL>``-style, breakend (``[``/``]``), ``*`` or missing (``.``) ALT;
* ``missing_contig``: the contig is not in the reference FASTA, under its name or an alias
  (``chr20`` finds ``20`` and the reverse, :mod:`hnet_dna.genomics.aliases`);
* ``out_of_range``: REF runs past the end of the contig;
* ``ref_mismatch``: REF differs from the reference (case-insensitive);
* ``ambiguous``: REF or ALT has a non-ACGT letter (N, IUPAC codes);
* ``no_change``: REF equals ALT;
* ``too_long``: REF or ALT longer than half the scoring window.

A record that is not VCF (fewer than 8 columns, a POS that is not a 1-based position, an empty
REF/ALT, a sample count that differs from the header) is an error naming the file and line.
The records are read as raw text (:mod:`.vcf_io`), never re-encoded through the header's
typed definitions.

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
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from hnet_dna.genomics.alphabet import N, encode
from hnet_dna.genomics.fasta import Genome

from .vcf_io import HeaderChecker, VCFFormatError, open_vcf, record_where, split_line

log = logging.getLogger(__name__)

SKIP_REASONS: tuple[str, ...] = (
    "symbolic", "missing_contig", "out_of_range", "ref_mismatch", "ambiguous", "no_change",
    "too_long",
)
# a scored ALT whose model output was NaN/inf (e.g. corrupt weights): no number is reported
NONFINITE = "nonfinite"
_ACGT = frozenset("ACGT")
_REF = re.compile(r"[A-Za-z]+")


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
    ref_contig: str | None = None  # the FASTA record of ``contig`` (itself or an alias)
    info: str = "."  # the raw INFO column of the record

    @property
    def kind(self) -> str:
        if len(self.ref) == len(self.alt):
            return "snv" if len(self.ref) == 1 else "mnv"
        if len(self.ref) == 1 or len(self.alt) == 1:
            return "insertion" if len(self.alt) > len(self.ref) else "deletion"
        return "complex"


class SkipCounter(Counter):
    """Counts of skipped ALTs by reason, plus ``edge_padded`` (scored with N padding) and
    ``nonfinite`` (scored, but the model gave NaN/inf)."""

    def summary(self, scored: int) -> str:
        lines = [f"scored: {scored}"]
        lines += [f"skipped ({r}): {self[r]}" for r in SKIP_REASONS if self[r]]
        if self[NONFINITE]:
            lines.append(f"not finite (model output NaN/inf, no score written): "
                         f"{self[NONFINITE]}")
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


class VariantReader:
    """Every ALT of every record of a VCF/BCF, checked and normalised (iterate it).

    ``vcf`` is the header; ``checker`` warns once per INFO/FORMAT field that the header
    mis-declares. Skips are counted in ``counter``; REF mismatches are also logged (first 10).
    ``records``: ``(line number, raw line)`` to read instead of the file's (one block of it);
    ``checker``: a checker shared by several readers of one file (warns once per field).
    """

    def __init__(self, path: str | os.PathLike, genome: Genome, window: int,
                 counter: SkipCounter | None = None,
                 records: Iterable[tuple[int, str]] | None = None,
                 checker: HeaderChecker | None = None) -> None:
        self.path, self.genome, self.window = path, genome, window
        self.counter = counter if counter is not None else SkipCounter()
        self.vcf, self._records = open_vcf(path)
        if records is not None:  # a part of the file (one block, :mod:`.vcf_regions`)
            self._records = iter(records)
        self.checker = checker if checker is not None else HeaderChecker(self.vcf)
        self._contigs: dict[str, str | None] = {}

    def _resolve(self, name: str) -> str | None:
        if name not in self._contigs:
            try:
                self._contigs[name] = self.genome.resolve(name)
            except KeyError:
                self._contigs[name] = None
            if self._contigs[name] not in (None, name):
                log.info("%s: contig %s read as FASTA record %s", self.path, name,
                         self._contigs[name])
        return self._contigs[name]

    def __iter__(self) -> Iterator[Variant]:
        counter, genome, window = self.counter, self.genome, self.window
        n_samples = len(self.vcf.samples)
        for i, (lineno, line) in enumerate(self._records):
            cols, _ = split_line(line)
            chrom, pos, vid, ref, alts = _parse_record(cols, self.path, lineno, n_samples)
            self.checker.check(cols, lineno)
            ref_contig = self._resolve(chrom)
            for a, alt in enumerate(alts):
                v = Variant(i, a, chrom, pos, vid, ref, alt, ref_contig=ref_contig,
                            info=cols[7])
                v.status = _check(v, genome, window)
                if v.status == "ref_mismatch" and counter["ref_mismatch"] < 10:
                    actual = genome.fetch(ref_contig, pos - 1, pos - 1 + len(ref))
                    log.warning("%s: %s:%d REF %s does not match the reference (%s); "
                                "skipped", record_where(self.path, lineno, cols), chrom, pos,
                                ref, actual)
                if v.status != "ok":
                    counter[v.status] += 1
                else:
                    v.pos, v.ref, v.alt = normalize(genome, ref_contig, pos - 1, ref, alt)
                    left, right = flanks(v, window)
                    v.edge_padded = v.pos - left < 0 or \
                        v.pos + len(v.ref) + right > genome.contigs[ref_contig]
                    counter["edge_padded"] += v.edge_padded
                yield v


def _parse_record(cols: list[str], path, lineno: int, n_samples: int
                  ) -> tuple[str, int, str | None, str, list[str]]:
    """``(CHROM, POS, ID, REF, ALTs)`` of a raw record, or a :class:`VCFFormatError`."""
    where = record_where(path, lineno, cols)
    if len(cols) < 8:
        raise VCFFormatError(f"{where}: expected at least 8 tab-separated columns "
                             f"(CHROM POS ID REF ALT QUAL FILTER INFO), got {len(cols)}")
    if len(cols) > 8 and len(cols) != 9 + n_samples:
        raise VCFFormatError(f"{where}: {len(cols)} columns, but the #CHROM line names "
                             f"{n_samples} sample(s) (expected {9 + n_samples})")
    try:
        pos = int(cols[1])
    except ValueError:
        raise VCFFormatError(f"{where}: POS {cols[1]!r} is not an integer") from None
    if pos < 1:
        raise VCFFormatError(f"{where}: POS {pos} is not a 1-based position (the VCF is "
                             "wrong, not the FASTA: VCF positions start at 1)")
    ref, alt = cols[3], cols[4]
    if not cols[0] or not _REF.fullmatch(ref) or not alt or any(c.isspace() for c in alt):
        raise VCFFormatError(f"{where}: malformed CHROM/REF/ALT {cols[0]!r} {ref!r} {alt!r}")
    alts = alt.split(",") if alt != "." else ["."]  # '.' -> one missing allele, a skip
    return cols[0], pos, None if cols[2] == "." else cols[2], ref, alts


def read_variants(path: str | os.PathLike, genome: Genome, window: int,
                  counter: SkipCounter | None = None) -> Iterator[Variant]:
    """Every ALT of every record of a VCF/BCF (see :class:`VariantReader`)."""
    yield from VariantReader(path, genome, window, counter)


def _check(v: Variant, genome: Genome, window: int) -> str:
    if _is_symbolic(v.vcf_alt) or _is_symbolic(v.vcf_ref):
        return "symbolic"
    if v.ref_contig is None:
        return "missing_contig"
    start = v.vcf_pos - 1
    if start + len(v.vcf_ref) > genome.contigs[v.ref_contig]:
        return "out_of_range"
    if genome.fetch(v.ref_contig, start, start + len(v.vcf_ref)).upper() != v.vcf_ref.upper():
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
    contig = genome.resolve(contig)
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
    contig = v.ref_contig or v.contig
    ref_win = fetch_padded(genome, contig, v.pos - left, v.pos + len(v.ref) + right)
    alt_ids = encode(v.alt)[0]
    alt_win = np.concatenate([ref_win[:left], alt_ids, ref_win[left + len(v.ref):]])
    return ref_win, alt_win
