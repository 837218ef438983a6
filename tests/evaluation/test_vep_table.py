"""Consequences of a table of designed variants agree with the terms VEP's rules give.

tests/data/evaluation/vep_designed/: chrD (349 bp) holds txP (+ strand: 5' UTR, three CDS
exons, 3' UTR), txM (- strand, the same plan) and txX (+ strand, a partial CDS without exon
lines: phase 2 at its 5' end, no stop codon); the same genes as GFF3 and as an Ensembl-style GTF
(CDS without the stop codon, stop_codon lines). variants.tsv holds each variant as a user would
write it (1-based, not necessarily normalised) and the most severe term by VEP's rules; the
comment column gives its HGVS-like place on the transcript.
"""

from __future__ import annotations

import logging
from itertools import product

import numpy as np
import pytest
from eval_data import DATA, YEAST_GFF

from hnet_dna.evaluation.consequences import (
    CONSEQUENCES,
    IMPACT,
    ConsequenceAnnotator,
    read_cds_models,
)
from hnet_dna.evaluation.variants import normalize
from hnet_dna.genomics.fasta import Genome

DESIGNED = DATA / "vep_designed"
COMP = str.maketrans("ACGT", "TGCA")


def _table() -> list[tuple[str, int, str, str, str]]:
    rows = []
    for line in (DESIGNED / "variants.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            vid, pos, ref, alt, expected, _ = line.split("\t")
            rows.append((vid, int(pos), ref, alt, expected))
    return rows


TABLE = _table()


@pytest.fixture(scope="module")
def genome() -> Genome:
    return Genome(DESIGNED / "designed.fa", backend="memory")


@pytest.fixture(scope="module", params=["designed.gff3", "designed.gtf"])
def ann(request, genome) -> ConsequenceAnnotator:
    return ConsequenceAnnotator(genome, read_cds_models(DESIGNED / request.param,
                                                        genome.contigs))


def test_gff3_and_gtf_give_the_same_models(genome):
    key = lambda t: (t.id, t.strand, t.segments, t.exons, t.phase)  # noqa: E731
    gff3 = sorted(map(key, read_cds_models(DESIGNED / "designed.gff3", genome.contigs)))
    gtf = sorted(map(key, read_cds_models(DESIGNED / "designed.gtf", genome.contigs)))
    assert gff3 == gtf and [k[0] for k in gff3] == ["txM", "txP", "txX"]


def test_the_table_covers_every_term_on_both_strands():
    assert {row[4] for row in TABLE} == set(CONSEQUENCES)
    coding = {row[4] for row in TABLE if row[0][0] == "P"} & \
        {row[4] for row in TABLE if row[0][0] == "M"}
    assert {"start_lost", "start_retained_variant", "stop_gained", "stop_lost",
            "stop_retained_variant", "frameshift_variant", "splice_donor_variant",
            "splice_acceptor_variant", "splice_region_variant", "intron_variant",
            "5_prime_UTR_variant", "3_prime_UTR_variant"} <= coding
    assert [IMPACT[c] for c in ("splice_acceptor_variant", "missense_variant",
                                "splice_region_variant", "intron_variant")] == \
        ["HIGH", "MODERATE", "LOW", "MODIFIER"]


@pytest.mark.parametrize("vid, pos, ref, alt, expected", TABLE, ids=[r[0] for r in TABLE])
def test_designed_variant(genome, ann, vid, pos, ref, alt, expected):
    assert genome.fetch("chrD", pos - 1, pos - 1 + len(ref)) == ref, "REF of the table"
    npos, nref, nalt = normalize(genome, "chrD", pos - 1, ref, alt)
    assert ann.annotate("chrD", npos, nref, nalt) == expected
    # the record as written (another placement of the same haplotype) gives the same term
    assert ann.annotate("chrD", pos - 1, ref, alt) == expected


@pytest.mark.parametrize("tid", ["txP", "txM"])
def test_every_snv_of_the_start_codon_is_start_lost(genome, ann, tid):
    (t,) = [t for t in ann.by_contig["chrD"] if t.id == tid]
    first = t.segments[0][0] if t.strand == "+" else t.segments[0][1] - 3
    codon = genome.fetch("chrD", first, first + 3)
    assert codon == ("ATG" if t.strand == "+" else "CAT")
    for k, base in product(range(3), "ACGT"):
        if base != codon[k]:
            new = codon[:k] + base + codon[k + 1:]
            tx = new if t.strand == "+" else new.translate(COMP)[::-1]
            assert ann.annotate("chrD", first + k, codon[k], base) == "start_lost", tx


def test_a_gff_without_cds_lines_warns(genome, tmp_path, caplog):
    path = tmp_path / "exons_only.gff3"
    path.write_text("".join(line + "\n" for line in
                            (DESIGNED / "designed.gff3").read_text().splitlines()
                            if "\tCDS\t" not in line))
    with caplog.at_level(logging.WARNING, logger="hnet_dna.evaluation.cds_models"):
        assert read_cds_models(path, genome.contigs) == []
    assert f"{path}: no CDS lines" in caplog.text


def test_a_cds_outside_its_exons_is_refused(genome, tmp_path):
    path = tmp_path / "bad.gff3"
    path.write_text((DESIGNED / "designed.gff3").read_text().replace(
        "exon\t78\t92", "exon\t79\t92"))
    with pytest.raises(ValueError, match=r"bad.gff3: CDS chrD:78-92 of 'txP' is not inside"):
        read_cds_models(path, genome.contigs)


def _placements(seq: str, g0: int, g1: int, ins: str):
    """Every genomic placement ``(g0, g1, ins)`` of a pure insertion or deletion."""
    out = [(g0, g1, ins)]
    while True:  # shift 3' (right) one base at a time
        if ins and g0 < len(seq) and seq[g0] == ins[0]:
            ins, g0, g1 = ins[1:] + seq[g0], g0 + 1, g1 + 1
        elif not ins and g1 < len(seq) and seq[g1] == seq[g0]:
            g0, g1 = g0 + 1, g1 + 1
        else:
            return out
        out.append((g0, g1, ins))


def test_an_indel_gets_one_term_wherever_it_is_placed(yeast):
    """Real yeast CDS: random indels in homopolymers and short repeats; every placement of the
    same haplotype (as a VCF record with its anchor base) gives the same term, when all of
    them lie within the exons (splice terms are judged on the record, as VEP does)."""
    models = read_cds_models(YEAST_GFF, yeast.contigs)
    ann = ConsequenceAnnotator(yeast, models)
    rng = np.random.default_rng(0)
    seen, tried = set(), 0
    singles = [t for t in models if len(t.exons) == 1 and t.cds_length > 300]
    while tried < 400:
        t = singles[rng.integers(len(singles))]
        seq = yeast.fetch(t.contig, 0, yeast.contigs[t.contig]).upper()
        g0 = int(rng.integers(t.start - 8, t.end + 8))
        k = int(rng.integers(1, 5))
        if rng.random() < 0.5:
            g0, g1, ins = g0, g0 + k, ""  # delete k bases
        else:
            g0, g1, ins = g0, g0, seq[g0:g0 + k]  # duplicate k bases: a shiftable insertion
        places = _placements(seq, g0, g1, ins)
        if len(places) < 2 or not all(t.start - 60 < p[0] and p[1] < t.end + 60 for p in places):
            continue
        tried += 1
        terms = {ann.annotate(t.contig, p0 - 1, seq[p0 - 1:p1], seq[p0 - 1] + pins)
                 for p0, p1, pins in places}
        assert len(terms) == 1, (t.id, places, terms)
        seen |= terms
    assert {"frameshift_variant", "inframe_deletion", "inframe_insertion"} <= seen
