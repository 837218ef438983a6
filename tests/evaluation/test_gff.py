"""GTF and GFF3 of the same genes give the same CDS models and consequences; Parent=a,b."""

from __future__ import annotations

import gzip
from collections import defaultdict

import pytest
from eval_data import YEAST_GFF

from hnet_dna.evaluation.consequences import (
    CONSEQUENCES,
    ConsequenceAnnotator,
    read_cds_models,
)
from hnet_dna.evaluation.gff import iter_gff
from hnet_dna.genomics.fasta import Genome


def _gtf_from_gff3(gff3, gtf, contig_prefix: str = "") -> None:
    """An Ensembl-style GTF of the CDS of ``gff3``: stop codons cut out of the CDS lines into
    ``stop_codon`` lines, ``key "value";`` attributes, contigs renamed (an alias)."""
    cds = defaultdict(list)
    for _, cols, attrs in iter_gff(gff3):
        if cols[2] == "CDS":
            cds[attrs["Parent"]].append(cols)
    lines = ['#!genome-build R64\n']
    for tid, parts in cds.items():
        strand = parts[0][6]
        parts.sort(key=lambda c: int(c[3]))
        last = parts[-1] if strand == "+" else parts[0]
        assert int(last[4]) - int(last[3]) + 1 > 3  # the stop codon is in one segment
        for cols in parts:
            start, end = int(cols[3]), int(cols[4])
            if cols is last:
                stop = (end - 2, end) if strand == "+" else (start, start + 2)
                start, end = (start, end - 3) if strand == "+" else (start + 3, end)
                lines.append(_gtf_line(cols, "stop_codon", *stop, tid, contig_prefix))
            lines.append(_gtf_line(cols, "CDS", start, end, tid, contig_prefix))
    gtf.write_text("".join(lines))


def _gtf_line(cols, feature, start, end, tid, prefix) -> str:
    attrs = f'gene_id "g-{tid}"; transcript_id "{tid}"; gene_name "x y";'
    return "\t".join([prefix + cols[0], cols[1], feature, str(start), str(end), cols[5],
                      cols[6], cols[7] if feature == "CDS" else "0", attrs]) + "\n"


def test_gtf_and_gff3_of_the_same_genes_agree(yeast, tmp_path):
    gtf = tmp_path / "genes.gtf"
    _gtf_from_gff3(YEAST_GFF, gtf, contig_prefix="chr")  # chrNC_001133.9: an alias
    from_gff3 = read_cds_models(YEAST_GFF, yeast.contigs)
    from_gtf = read_cds_models(gtf, yeast.contigs)
    assert len(from_gtf) == len(from_gff3) == 94
    key = lambda t: (t.id, t.contig, t.strand, t.segments, t.phase)  # noqa: E731
    assert sorted(map(key, from_gtf)) == sorted(map(key, from_gff3))
    a, b = ConsequenceAnnotator(yeast, from_gff3), ConsequenceAnnotator(yeast, from_gtf)
    seen = set()
    sites = sorted({(t.contig, p) for t in from_gff3 for s, e in t.segments
                    for p in (*range(s, e, 71), s, e - 1, e - 3)})
    for contig, pos in sites:
        ref = yeast.fetch(contig, pos, pos + 4).upper()
        for alt in "ACGT":
            if alt != ref[0]:
                c = a.annotate(contig, pos, ref[0], alt)
                assert b.annotate(contig, pos, ref[0], alt) == c
                seen.add(c)
        for indel in ((ref[0], ref[0] + "A"), (ref[0], ref[0] + "ACG"), (ref, ref[0])):
            c = a.annotate(contig, pos, *indel)
            assert b.annotate(contig, pos, *indel) == c
            seen.add(c)
    assert {"missense_variant", "synonymous_variant", "frameshift_variant",
            "inframe_insertion", "inframe_deletion"} <= seen <= set(CONSEQUENCES)


def test_a_cds_with_two_parents_belongs_to_both(tmp_path):
    # shared first CDS (ATG AAA), then exon 2a: GGG TAA or exon 2b: TGA
    seq = "CC" + "ATGAAA" + "GTAAGTTTCAG" + "GGGTAA" + "CCGTAAGCAG" + "TGACC"
    fa = tmp_path / "g.fa"
    fa.write_text(f">chr1\n{seq}\n")
    g = Genome(fa, backend="memory")
    s1, s2a, s2b = seq.index("ATGAAA"), seq.index("GGGTAA"), seq.index("TGACC")
    gff = tmp_path / "g.gff3.gz"
    with gzip.open(gff, "wt") as fh:
        fh.write("##gff-version 3\n" + "".join(
            f"1\tx\tCDS\t{s + 1}\t{e}\t.\t+\t0\t{attrs}\n" for s, e, attrs in (
                (s1, s1 + 6, "ID=c1;Parent=tx%2Ca,tx2"), (s2a, s2a + 6, "Parent=tx%2Ca"),
                (s2b, s2b + 3, "Parent=tx2"))))
    models = {t.id: t for t in read_cds_models(gff, g.contigs)}  # contig 1 -> chr1
    assert set(models) == {"tx,a", "tx2"} and models["tx2"].contig == "chr1"
    assert models["tx,a"].sequence(g) == "ATGAAAGGGTAA"
    assert models["tx2"].sequence(g) == "ATGAAATGA"
    ann = ConsequenceAnnotator(g, list(models.values()))
    # A of codon 2 -> T: AAA -> TAA is stop_gained in both transcripts
    assert ann.annotate("chr1", s1 + 3, "A", "T") == "stop_gained"
    # GGG -> GGA only in tx,a (synonymous, 3rd exonic base after the intron: splice region);
    # tx2 is intronic there
    assert ann.terms("chr1", s2a + 2, "G", "A") == {"synonymous_variant",
                                                    "splice_region_variant", "intron_variant"}
    assert ann.annotate("chr1", s2b, "T", "C") == "stop_lost"  # TGA -> CGA in tx2
    assert ann.annotate("chr1", 0, "C", "A") == "sequence_variant"


@pytest.mark.parametrize("text, dialect_attr", [
    ('c\tx\tCDS\t1\t9\t.\t+\t0\tgene_id "g1"; transcript_id "t1";\n', "t1"),
    ("##gff-version 3\nc\tx\tCDS\t1\t9\t.\t+\t0\tID=cds1;Parent=t1\n", "t1"),
])
def test_dialect_detection(tmp_path, text, dialect_attr):
    path = tmp_path / "x.gff"
    path.write_text(text)
    ((_, _, attrs),) = list(iter_gff(path))
    assert attrs["Parent"] == dialect_attr


def test_score_variants_reports_so_terms_from_a_gtf(yeast, model1, tmp_path):
    from hnet_dna.evaluation.vcf_scoring import score_variants

    gtf = tmp_path / "genes.gtf"
    _gtf_from_gff3(YEAST_GFF, gtf)
    t = next(t for t in read_cds_models(YEAST_GFF, yeast.contigs)
             if t.strand == "+" and len(t.segments) == 1 and t.cds_length > 300)
    s = t.segments[0][0]
    start = yeast.fetch(t.contig, s, s + 3).upper()
    assert start == "ATG"
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
             f"chr{t.contig}\t{s + 2}\t.\tT\tC\t.\t.\t.",  # ATG -> ACG, via a contig alias
             f"chr{t.contig}\t{s + 31}\t.\t{yeast.fetch(t.contig, s + 30, s + 31)}\t"
             f"{yeast.fetch(t.contig, s + 30, s + 31)}AA\t.\t.\t."]
    vcf = tmp_path / "in.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    summary = score_variants(model1, vcf, yeast, tmp_path / "o.vcf", gff=gtf, window=32,
                             progress=False)
    assert summary.table["consequence"].to_list() == ["start_lost", "frameshift_variant"]
    text = (tmp_path / "o.vcf").read_text()
    assert "HNET_CSQ=start_lost" in text and "HNET_CSQ=frameshift_variant" in text


def test_a_gtf_value_may_hold_a_semicolon(tmp_path):
    # NCBI's GTFs quote notes with ';' inside ("... (NAC001); FUNCTIONS IN: ...")
    path = tmp_path / "x.gtf"
    path.write_text('c\tx\tCDS\t1\t9\t.\t+\t0\tgene_id "g1"; transcript_id "t1"; '
                    'note "NAC domain (NAC001); FUNCTIONS IN: binding"; exon_number 2;\n')
    ((_, _, attrs),) = list(iter_gff(path))
    assert attrs["note"] == "NAC domain (NAC001); FUNCTIONS IN: binding"
    assert attrs["Parent"] == "t1" and attrs["exon_number"] == "2"
