"""VCF reading: per-ALT split, normalisation, skip counting, windows, annotated VCF output."""

from __future__ import annotations

import numpy as np
import polars as pl
import pysam
import pytest
from eval_data import CHR20_VCF

from hnet_dna.errors import InputError
from hnet_dna.evaluation.runner import PerBaseForward
from hnet_dna.evaluation.scoring import VariantScorer
from hnet_dna.evaluation.variants import (
    SkipCounter,
    Variant,
    normalize,
    read_variants,
    variant_windows,
)
from hnet_dna.evaluation.vcf_scoring import score_vcf, write_scored_vcf
from hnet_dna.genomics.alphabet import N, encode
from hnet_dna.genomics.fasta import Genome

WINDOW = 64


def _other(base: str, k: int = 1) -> str:
    return "ACGT"[("ACGT".index(base) + k) % 4]


@pytest.fixture(scope="module")
def edge_vcf(tmp_path_factory, chr20) -> tuple:
    """One record of each kind on the real chr20 excerpt (contig z, 30 kb)."""
    seq = chr20.fetch("z", 0, 30000).upper()
    b = lambda p: seq[p - 1]  # 1-based  # noqa: E731
    lines = [
        ("z", 1000, b(1000), _other(b(1000))),  # ok SNV
        ("z", 2000, _other(b(2000)), b(2000)),  # REF mismatch
        ("z", 3000, b(3000) + b(3001), f"{b(3000)},{_other(b(3000))}{b(3001)}"),  # del + SNV
        ("z", 4000, b(4000), b(4000) + "AC"),  # insertion
        ("z", 5000, b(5000), "<DEL>"),  # symbolic
        ("z", 6000, b(6000), "*"),  # spanning deletion
        ("chrQ", 100, "A", "G"),  # contig not in the FASTA (nor in the header)
        ("z", 3, b(3), _other(b(3))),  # 2 bases from the edge: N-padded, scored
        ("z", 29998, "AAAAA", "A"),  # runs past the contig end
        ("z", 7000, b(7000), "N"),  # ambiguous ALT
        ("z", 8000, b(8000), "."),  # no ALT
    ]
    lines.sort(key=lambda r: (r[0] != "z", r[1]))
    path = tmp_path_factory.mktemp("vcf") / "edge.vcf"
    header = "##fileformat=VCFv4.2\n##contig=<ID=z,length=30000>\n" \
             "##INFO=<ID=AF,Number=A,Type=Float,Description=\"x\">\n" \
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
    body = "".join(f"{c}\t{p}\tv{p}\t{r}\t{a}\t.\tPASS\t.\n" for c, p, r, a in lines)
    path.write_text(header + body)
    return path, lines


def test_every_alt_is_counted_once(edge_vcf, chr20):
    path, lines = edge_vcf
    counter = SkipCounter()
    variants = list(read_variants(path, chr20, WINDOW, counter))
    assert len(variants) == 12  # 11 records, one with two ALTs
    status = {(v.vcf_pos, v.alt_index): v.status for v in variants}
    assert status[(2000, 0)] == "ref_mismatch"
    assert status[(3000, 0)] == status[(3000, 1)] == "ok"
    assert status[(5000, 0)] == status[(6000, 0)] == status[(8000, 0)] == "symbolic"
    assert status[(100, 0)] == "missing_contig"
    assert status[(29998, 0)] == "out_of_range"
    assert status[(7000, 0)] == "ambiguous"
    assert dict(counter) == {"ref_mismatch": 1, "symbolic": 3, "missing_contig": 1,
                             "out_of_range": 1, "ambiguous": 1, "edge_padded": 1}
    ok = [v for v in variants if v.status == "ok"]
    assert [v.kind for v in ok] == ["snv", "snv", "deletion", "snv", "insertion"]
    assert [v.edge_padded for v in ok] == [True, False, False, False, False]
    # the 'TG -> GG'-style MNV form of the second ALT is normalised to a plain SNV
    snv = next(v for v in ok if v.vcf_pos == 3000 and v.alt_index == 1)
    assert (snv.pos, len(snv.ref), len(snv.alt)) == (2999, 1, 1)


def test_normalize_left_aligns_and_trims(tmp_path):
    fa = tmp_path / "g.fa"
    fa.write_text(">c\nGGGCAAAATGGG\n")
    g = Genome(fa, backend="memory")
    # deletion of the last A of the run, written without the usual anchor
    assert normalize(g, "c", 7, "AT", "T") == (3, "CA", "C")
    # insertion of an A at the end of the run -> anchored before the run
    assert normalize(g, "c", 7, "A", "AA") == (3, "C", "CA")
    assert normalize(g, "c", 3, "CA", "GA") == (3, "C", "G")  # MNV form of an SNV
    assert normalize(g, "c", 3, "CAAAAT", "CAAAAC") == (8, "T", "C")


def test_windows_are_centred_and_edge_padded(chr20):
    v = Variant(0, 0, "z", 1000, None, "x", "x", pos=999, ref=chr20.fetch("z", 999, 1000),
                alt="ACG")
    ref, alt = variant_windows(chr20, v, WINDOW)
    left = (WINDOW - 1) // 2
    np.testing.assert_array_equal(ref, chr20.fetch_encoded("z", 999 - left, 999 - left + 64)[0])
    np.testing.assert_array_equal(alt, np.r_[ref[:left], encode("ACG")[0], ref[left + 1:]])
    edge = Variant(0, 0, "z", 3, None, "x", "x", pos=2, ref=chr20.fetch("z", 2, 3), alt="A")
    ref, _ = variant_windows(chr20, edge, WINDOW)
    assert len(ref) == WINDOW and (ref[: left - 2] == N).all() and (ref[left - 2:] != N).all()


def test_scored_vcf_has_info_for_every_alt(edge_vcf, chr20, model1, tmp_path):
    path, _ = edge_vcf
    scorer = VariantScorer(PerBaseForward(model1))
    table, counter = score_vcf(path, chr20, scorer, WINDOW, progress=False)
    assert table.height == 12
    ok = table.filter(pl.col("status") == "ok")
    assert ok.height == 5 and ok["llr"].is_not_null().all() and ok["cos_dist"].is_not_null().all()
    assert table.filter(pl.col("status") != "ok")["llr"].is_null().all()
    out = tmp_path / "scored.vcf.gz"
    assert write_scored_vcf(path, out, table, chr20) == 11
    with pysam.VariantFile(str(out)) as vf:
        assert "HNET_LLR" in vf.header.info and vf.header.info["HNET_LLR"].number == "A"
        recs = {r.pos: r for r in vf}
    assert recs[3000].info["HNET_STATUS"] == ("ok", "ok")
    assert all(x is not None for x in recs[3000].info["HNET_LLR"])
    assert recs[2000].info["HNET_STATUS"] == ("ref_mismatch",)
    assert recs[2000].info["HNET_LLR"] == (None,)
    assert recs[100].contig == "chrQ" and recs[100].info["HNET_STATUS"] == ("missing_contig",)
    expected = ok.filter(pl.col("pos") == 1000)["llr"][0]
    assert recs[1000].info["HNET_LLR"][0] == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_real_excerpt_all_alts_accounted(chr20):
    """769 real 1000G records: multi-allelic split, indels, symbolic SVs, no REF mismatch."""
    counter = SkipCounter()
    variants = list(read_variants(CHR20_VCF, chr20, 32, counter))
    with pysam.VariantFile(str(CHR20_VCF)) as vf:
        n_alts = sum(len(r.alts) for r in vf)
    assert len(variants) == n_alts == 772
    assert counter["ref_mismatch"] == 0 and counter["symbolic"] == 2
    kinds = {v.kind for v in variants if v.status == "ok"}
    assert {"snv", "insertion", "deletion"} <= kinds
    assert sum(v.status == "ok" for v in variants) == n_alts - sum(
        counter[r] for r in counter if r != "edge_padded")


def test_carry_info_and_max_variants_stop_at_a_record(chr20, model1):
    scorer = VariantScorer(PerBaseForward(model1, batch_size=64), strand_average=False)
    table, _ = score_vcf(CHR20_VCF, chr20, scorer, 32, carry_info=["AF"], max_variants=3,
                         progress=False)
    assert table["pos"].to_list() == [10, 65, 72]
    assert table["AF"].to_list() == pytest.approx([0.000199681, 0.000199681, 0.829273],
                                                  rel=1e-5)
    with pytest.raises(InputError, match="INFO field.*'XX'"):
        score_vcf(CHR20_VCF, chr20, scorer, 32, carry_info=["XX"], progress=False)
