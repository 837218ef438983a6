"""Coding consequences: real yeast CDS models translate to the RefSeq proteins; each class on
hand-made variants of a plus- and a minus-strand gene and of a spliced synthetic gene."""

from __future__ import annotations

import gzip

import pytest
from Bio import SeqIO
from Bio.Seq import Seq
from eval_data import YEAST_GFF, YEAST_PROTEINS

from hnet_dna.evaluation.consequences import (
    ConsequenceAnnotator,
    Transcript,
    cds_snvs,
    read_cds_models,
)
from hnet_dna.evaluation.gff import GFFFormatError
from hnet_dna.genomics.fasta import Genome

COMP = str.maketrans("ACGT", "TGCA")


@pytest.fixture(scope="module")
def models(yeast) -> list[Transcript]:
    return read_cds_models(YEAST_GFF, yeast.contigs)


@pytest.fixture(scope="module")
def ann(yeast, models) -> ConsequenceAnnotator:
    return ConsequenceAnnotator(yeast, models)


def test_cds_models_translate_to_the_refseq_proteins(yeast, models):
    with gzip.open(YEAST_PROTEINS, "rt") as fh:
        proteins = {str(r.seq) for r in SeqIO.parse(fh, "fasta")}
    assert len(models) == 94 and sum(len(t.segments) > 1 for t in models) == 3
    for t in models:
        cds = t.sequence(yeast)[t.phase:]
        protein = str(Seq(cds[: len(cds) // 3 * 3]).translate()).rstrip("*")
        assert protein in proteins, t.id


def _gene(models, strand: str, min_len: int = 600) -> Transcript:
    return next(t for t in models if t.strand == strand and len(t.segments) == 1
                and t.phase == 0 and t.cds_length >= min_len)


def _genomic(t: Transcript, cds_index: int) -> int:
    s, e = t.segments[0]
    return s + cds_index if t.strand == "+" else e - 1 - cds_index


def _snv(ann, yeast, t, cds_index: int, new_base_tx: str) -> str:
    """Consequence of changing CDS base ``cds_index`` to ``new_base_tx`` (transcript strand)."""
    pos = _genomic(t, cds_index)
    ref = yeast.fetch(t.contig, pos, pos + 1).upper()
    alt = new_base_tx if t.strand == "+" else new_base_tx.translate(COMP)
    return ann.annotate(t.contig, pos, ref, alt)


@pytest.mark.parametrize("strand", ["+", "-"])
def test_substitution_classes(yeast, models, ann, strand):
    t = _gene(models, strand)
    seq = t.sequence(yeast)
    assert seq[:3] == "ATG" and Seq(seq[-3:]).translate() == "*"
    assert _snv(ann, yeast, t, 1, "C") == "start_lost"  # ATG -> ACG
    assert _snv(ann, yeast, t, len(seq) - 3, "C") == "stop_lost"  # TAA/TAG/TGA -> C..
    # bases 30-59: the expected class of every change from Biopython's codon translation
    found = {}
    for i in range(30, 60):
        codon_start = i - i % 3
        codon = seq[codon_start:codon_start + 3]
        for b in "ACGT":
            if b == seq[i]:
                continue
            new = codon[: i % 3] + b + codon[i % 3 + 1:]
            a, c = Seq(codon).translate(), Seq(new).translate()
            kind = "synonymous_variant" if a == c else ("stop_gained" if c == "*"
                                                        else "missense_variant")
            found.setdefault(kind, (i, b))
    for kind, (i, b) in found.items():
        assert _snv(ann, yeast, t, i, b) == kind
    assert {"synonymous_variant", "missense_variant"} <= set(found)


def test_indels_and_non_coding(yeast, models, ann):
    t = _gene(models, "+")
    s = t.segments[0][0]
    anchor = yeast.fetch(t.contig, s + 30, s + 31).upper()
    # T|AC -> TA|AC: the shifted frame reads TAA at once: VEP adds stop_gained (more severe)
    assert ann.terms(t.contig, s + 30, anchor, anchor + "A") == {"frameshift_variant",
                                                                 "stop_gained"}
    assert ann.annotate(t.contig, s + 30, anchor, anchor + "C") == "frameshift_variant"
    # TAC -> T+AAA+AC: an in-frame stop (VEP: stop_gained, not inframe_insertion)
    assert ann.annotate(t.contig, s + 30, anchor, anchor + "AAA") == "stop_gained"
    before = yeast.fetch(t.contig, s + 29, s + 30).upper()  # a codon boundary
    assert ann.annotate(t.contig, s + 29, before, before + "GCC") == "inframe_insertion"
    ref = yeast.fetch(t.contig, s + 30, s + 34).upper()
    assert ann.annotate(t.contig, s + 30, ref, ref[0]) == "inframe_deletion"
    assert ann.annotate(t.contig, s + 30, ref[:2], ref[0]) == "frameshift_variant"
    gap = min(u.start for u in models if u.start > t.end) - 1  # last base before next CDS
    assert not any(u.start <= gap < u.end for u in models)
    base = yeast.fetch(t.contig, gap, gap + 1).upper()
    assert ann.annotate(t.contig, gap, base, "A" if base != "A" else "C") == "sequence_variant"
    assert ann.annotate("not_a_contig", 5, "A", "C") == "sequence_variant"


def test_spliced_minus_strand_gene(tmp_path):
    """CDS of two segments on the minus strand: ATG GCC | AAA TAA (exon 1 is downstream)."""
    tx = "ATGGCC" + "AAATAA"  # transcript orientation
    exon1, exon2 = tx[:6], tx[6:]
    intron = "GTAAGTTTTTTTTTTCAG"  # read on the minus strand
    plus = (exon1 + intron + exon2)[::-1].translate(COMP)  # forward-strand genomic sequence
    genome_seq = "CCCCC" + plus + "CCCCC"
    fa = tmp_path / "g.fa"
    fa.write_text(f">c\n{genome_seq}\n")
    e2 = (5, 11)  # forward coordinates of the 3' exon (lower on the minus strand)
    e1 = (5 + 6 + len(intron), 5 + 12 + len(intron))
    gff = tmp_path / "g.gff"
    gff.write_text("##gff-version 3\n" + "".join(
        f"c\tx\tCDS\t{s + 1}\t{e}\t.\t-\t0\tID=cds1;Parent=tx1\n" for s, e in (e1, e2)))
    g = Genome(fa, backend="memory")
    (t,) = read_cds_models(gff, g.contigs)
    assert t.sequence(g) == tx and t.segments == [e1, e2]
    ann = ConsequenceAnnotator(g, [t])
    # codon 3 (AAA, Lys) lies in the lower exon: forward bases of e2 read TTA TTT
    pos_of = {i: t.segments[0][1] - 1 - i if i < 6 else e2[1] - 1 - (i - 6) for i in range(12)}
    lys_third = pos_of[8]
    ref = g.fetch("c", lys_third, lys_third + 1)
    assert ref == "T"
    # AAA -> AAG, in the 3 exonic bases beside the intron: splice region is more severe
    assert ann.terms("c", lys_third, "T", "C") == {"synonymous_variant",
                                                   "splice_region_variant"}
    assert ann.annotate("c", pos_of[6], "T", "C") == "missense_variant"  # AAA -> GAA
    assert ann.annotate("c", pos_of[9], "A", "C") == "stop_lost"  # TAA -> GAA
    assert ann.annotate("c", pos_of[6], "T", "A") == "stop_gained"  # AAA -> TAA
    assert ann.annotate("c", pos_of[1], "A", "G") == "start_lost"  # ATG -> ACG
    assert ann.annotate("c", e2[1] + 5, g.fetch("c", e2[1] + 5, e2[1] + 6), "G") \
        == "splice_region_variant"  # 6th intronic base from the 3' exon (minus strand)
    mid_intron = e2[1] + 8
    assert ann.annotate("c", mid_intron, g.fetch("c", mid_intron, mid_intron + 1), "G") \
        == "intron_variant"
    assert ann.annotate("c", 2, "C", "G") == "sequence_variant"  # before the CDS span
    assert len(list(cds_snvs(g, [t]))) == 3 * 12


@pytest.mark.parametrize("text, message", [
    ("##gff-version 3\nchr\tx\tCDS\t10\n", r"bad.gff:2: expected 9"),
    ("NC_001133.9\tx\tCDS\t10\t5\t.\t+\t0\tParent=a\n", r"bad.gff:1: invalid range"),
    ("chrX\tx\tCDS\t10\t50\t.\t+\t0\tParent=a\n", r"bad.gff:1: .*not in the genome"),
    ("##gff-version 3\nNC_001133.9\tx\tCDS\t10\t50\t.\t+\t0\tParent a\n",
     r"bad.gff:2: GFF3 attribute 'Parent a'"),
    ('NC_001133.9\tx\tCDS\t10\t50\t.\t+\t0\ttranscript_id "a"; junk\n',
     r"bad.gff:1: GTF attribute 'junk'"),
    ('##gff-version 2\nNC_001133.9\tx\tCDS\t10\t50\t.\t+\t0\tgene_id "g";\n',
     r"bad.gff:2: GTF CDS line without transcript_id"),
])
def test_gff_errors_name_the_line(tmp_path, yeast, text, message):
    bad = tmp_path / "bad.gff"
    bad.write_text(text)
    with pytest.raises(GFFFormatError, match=message):
        read_cds_models(bad, yeast.contigs)
