"""score_variants passes the user's VCF through byte for byte: removing the HNET_* keys and
header lines gives the input back exactly, whatever its header declares."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import pysam
import pytest
from eval_data import CHR20_VCF

from hnet_dna.evaluation.vcf_scoring import score_variants

WINDOW = 32
SAMPLES = ("NA1", "NA2", "NA3")


def strip_hnet(text: str) -> str:
    """The scored VCF text without what score_variants adds (independent of vcf_io)."""
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("##INFO=<ID=HNET_"):
            continue
        if not line.startswith("#"):
            body = line.rstrip("\r\n")
            cols = body.split("\t")
            kept = [i for i in cols[7].split(";") if not i.startswith("HNET_")]
            cols[7] = ";".join(kept) or "."
            line = "\t".join(cols) + line[len(body):]
        out.append(line)
    return "".join(out)


def misdeclared_vcf(chr20, newline: str = "\n") -> str:
    """Header defects of public call sets, samples with phased/missing GTs, odd INFO."""
    seq = chr20.fetch("z", 0, 30000).upper()
    b = lambda p: seq[p - 1]  # noqa: E731
    alt = lambda p: "ACGT"[("ACGT".index(b(p)) + 1) % 4]  # noqa: E731
    header = [
        "##fileformat=VCFv4.2",
        "##source=a truth set",
        '##INFO=<ID=datasetsmissingcall,Number=1,Type=Integer,Description="free text">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="freq">',
        '##INFO=<ID=CAT,Number=2,Type=String,Description="two values declared">',
        '##INFO=<ID=LONG,Number=1,Type=String,Description="long">',
        '##INFO=<ID=SOMATIC,Number=0,Type=Flag,Description="flag">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="genotype">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="depths">',
        '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="declared Integer, has text">',
        "##contig=<ID=z,length=30000>",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(SAMPLES),
    ]
    long_info = "x" * 20000
    records = [
        (100, "rs1", b(100), alt(100), "50.5", "PASS",
         "datasetsmissingcall=IonExome,SolidPE50x50bp;DP=12;AF=0.25",
         "GT:AD:GQ", "0|1:3,4:99\t1/1:0,7:high\t./.:.:."),
        (200, ".", b(200), f"{alt(200)},{b(200)}{b(201)}", ".", "q10;lowDP",
         "DP=7;AF=0.1,0.05;CAT=a,b,c;UNDECLARED=1;SOMATIC", "GT:AD",
         "1|2:1,2,3\t0|0:.\t.:."),
        (300, "rs3;rs4", b(300), alt(300), "1e+03", ".", f"LONG={long_info}",
         "GT", "0/1\t1|0\t./1"),
        (400, ".", b(400), ".", ".", ".", ".", "GT:GQ", "0/0:12\t0/0:.\t0/0:x"),
        (500, ".", b(500), "<DEL>", "30", "PASS", "SVTYPE=DEL;END=520", "GT", "0/1\t0/0\t0/0"),
        (600, ".", "NNN", "A", ".", ".", "DP=.", "GT", ".\t.\t."),  # REF mismatch: skipped
    ]
    lines = header + ["\t".join(map(str, ("z", *r))) for r in records]
    return "".join(line + newline for line in lines)


@pytest.fixture(scope="module")
def scored_texts(tmp_path_factory, chr20, model1):
    """The constructed VCF in every input form, scored once each to text and bgzip output."""
    root = tmp_path_factory.mktemp("passthrough")
    results = {}
    for form in ("plain", "crlf", "bgzip", "gzip"):
        text = misdeclared_vcf(chr20, "\r\n" if form == "crlf" else "\n")
        if form in ("plain", "crlf"):
            path = root / f"{form}.vcf"
            path.write_bytes(text.encode())
        elif form == "bgzip":
            path = root / "in.vcf.gz"
            with pysam.BGZFile(str(path), "wb") as fh:
                fh.write(text.encode())
        else:
            path = root / "plain_gzip.vcf.gz"
            with gzip.open(path, "wb") as fh:
                fh.write(text.encode())
        out = root / f"{form}.out.vcf{'.gz' if form != 'plain' else ''}"
        summary = score_variants(model1, path, chr20, out, window=WINDOW, progress=False)
        results[form] = (text, out, summary)
    return results


@pytest.mark.parametrize("form", ["plain", "crlf", "bgzip", "gzip"])
def test_removing_hnet_keys_gives_the_input_back(scored_texts, form):
    text, out, summary = scored_texts[form]
    raw = gzip.open(out, "rb").read() if out.suffix == ".gz" else out.read_bytes()
    assert strip_hnet(raw.decode()).encode() == text.encode()
    assert raw.decode().count("\r\n") == (raw.decode().count("\n") if form == "crlf" else 0)
    # the header defects did not touch the values
    assert "datasetsmissingcall=IonExome,SolidPE50x50bp;" in raw.decode()
    assert "1/1:0,7:high" in raw.decode() and "LONG=" + "x" * 20000 + ";HNET" in raw.decode()
    assert summary.counts == {"ok": 4, "symbolic": 2, "ref_mismatch": 1}


def test_hnet_values_and_index(scored_texts):
    _, out, summary = scored_texts["bgzip"]
    assert summary.index == out.with_name(out.name + ".tbi") and summary.index.exists()
    with pysam.TabixFile(str(out)) as tbx:  # region queries work (what IGV needs)
        (line,) = list(tbx.fetch("z", 150, 250))
    info = dict(i.split("=", 1) for i in line.split("\t")[7].split(";") if "=" in i)
    assert info["HNET_STATUS"] == "ok,ok"
    table = summary.table.filter(summary.table["pos"] == 200).sort("alt_index")
    llrs = [float(x) for x in info["HNET_LLR"].split(",")]
    np.testing.assert_allclose(llrs, table["llr"].to_list(), rtol=1e-5)
    records = {int(r.split("\t")[1]): r for r in gzip.open(out, "rt") if r[0] != "#"}
    assert "HNET" not in records[400]  # ALT '.': no per-ALT slot, copied unchanged
    assert "HNET_STATUS=ref_mismatch" in records[600]
    assert "HNET_LLR=.;" in records[600] and "HNET_STATUS=symbolic" in records[500]


def test_misdeclared_fields_warn_once(chr20, model1, tmp_path, caplog):
    path = tmp_path / "in.vcf"
    path.write_text(misdeclared_vcf(chr20))
    with caplog.at_level(logging.WARNING, logger="hnet_dna.evaluation.vcf_io"):
        score_variants(model1, path, chr20, tmp_path / "o.vcf", window=WINDOW, progress=False)
    text = caplog.text
    for field in ("INFO datasetsmissingcall is declared Type=Integer", "INFO CAT is declared "
                  "Number=2", "INFO UNDECLARED is not declared", "FORMAT GQ is declared "
                  "Type=Integer", "INFO SVTYPE is not declared"):
        assert text.count(field) == 1, field


def test_bcf_out_keeps_every_field(chr20, model1, tmp_path):
    """BCF is typed: mis-declared fields are re-declared as strings, so every field survives;
    compared record by record through htslib's rendering of the BCF."""
    path = tmp_path / "in.vcf"
    text = misdeclared_vcf(chr20)
    path.write_text(text)
    out = tmp_path / "o.bcf"
    score_variants(model1, path, chr20, out, window=WINDOW, progress=False)
    with pysam.VariantFile(str(out)) as vf:
        assert vf.header.info["datasetsmissingcall"].type == "String"
        got = [str(r) for r in vf]
    want = [line for line in text.splitlines(keepends=True) if not line.startswith("#")]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        g, w = strip_hnet(g).rstrip("\n").split("\t"), w.rstrip("\n").split("\t")
        assert g[:7] == w[:7] or (g[:5] == w[:5] and float(g[5]) == float(w[5]))
        assert sorted(g[7].split(";")) == sorted(w[7].split(";"))
        assert g[8:] == w[8:] or _same_samples(g[8:], w[8:])


def _same_samples(got: list[str], want: list[str]) -> bool:
    """htslib writes a missing trailing FORMAT value as '.' per field; compare field-wise."""
    keys = want[0].split(":")
    for g, w in zip(got[1:], want[1:], strict=True):
        gv = dict(zip(got[0].split(":"), g.split(":"), strict=False))
        wv = dict(zip(keys, w.split(":"), strict=False))
        if any(gv.get(k, ".") != wv.get(k, ".") for k in keys):
            return False
    return True


def test_bcf_in_passes_htslib_text_through(chr20, model1, tmp_path):
    bcf = tmp_path / "in.bcf"
    with pysam.VariantFile(str(CHR20_VCF)) as vin, \
            pysam.VariantFile(str(bcf), "wb", header=vin.header) as vout:
        for i, rec in enumerate(vin):
            if i < 12:
                vout.write(rec)
    out = tmp_path / "o.vcf"
    summary = score_variants(model1, bcf, chr20, out, window=WINDOW, max_variants=5,
                             progress=False)
    with pysam.VariantFile(str(bcf)) as vf:
        expected = str(vf.header) + "".join(str(r) for _, r in zip(range(5), vf, strict=False))
    assert strip_hnet(out.read_text()) == expected
    assert summary.records == 5


def test_real_excerpt_round_trips(chr20, model1, tmp_path):
    out = tmp_path / "o.vcf"
    score_variants(model1, CHR20_VCF, chr20, out, window=WINDOW, max_variants=60,
                   progress=False)
    lines = CHR20_VCF.read_text().splitlines(keepends=True)
    got = strip_hnet(out.read_text())
    header = sum(line.startswith("#") for line in lines)
    assert got == "".join(lines[: header + got.count("\n") - header])
    assert got.count("\n") > header + 50


def test_unsorted_input_is_written_but_not_indexed(chr20, model1, tmp_path, caplog):
    lines = misdeclared_vcf(chr20).splitlines(keepends=True)
    header = [line for line in lines if line.startswith("#")]
    records = [line for line in lines if not line.startswith("#")]
    path = tmp_path / "unsorted.vcf"
    path.write_text("".join(header + records[::-1]))
    out = tmp_path / "o.vcf.gz"
    (tmp_path / "o.vcf.gz.tbi").write_text("stale")
    with caplog.at_level(logging.WARNING):
        summary = score_variants(model1, path, chr20, out, window=WINDOW, overwrite=True,
                                 progress=False)
    assert summary.index is None and not (tmp_path / "o.vcf.gz.tbi").exists()
    assert "not indexed" in caplog.text
    assert strip_hnet(gzip.open(out, "rt", newline="").read()) == path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.parquet", "o.vcf.gz",
                                                          "unsorted.vcf"]


def test_a_scored_vcf_is_not_scored_again(scored_texts, chr20, model1, tmp_path):
    from hnet_dna.errors import InputError

    _, out, _ = scored_texts["plain"]
    with pytest.raises(InputError, match=r"INFO \['HNET_COS'.*already in the header"):
        score_variants(model1, out, chr20, tmp_path / "again.vcf", window=WINDOW,
                       progress=False)
    assert list(tmp_path.iterdir()) == []


def test_long_contigs_get_a_csi_index(tmp_path):
    from hnet_dna.evaluation.vcf_io import write_vcf

    text = ("##fileformat=VCFv4.2\n##contig=<ID=big,length=700000000>\n"
            "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
            "big\t100\t.\tA\tC\t.\t.\t.\nbig\t600000000\t.\tG\tT\t.\t.\t.\n")
    out = tmp_path / "big.vcf.gz"
    writer = write_vcf(out, text.splitlines(keepends=True), max_contig_length=700_000_000)
    assert writer.indexed and writer.index == tmp_path / "big.vcf.gz.csi"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.vcf.gz", "big.vcf.gz.csi"]
    with pysam.TabixFile(str(out), index=str(writer.index)) as tbx:
        (line,) = list(tbx.fetch("big", 599_999_990, 600_000_010))
    assert line.split("\t")[1] == "600000000"
    assert gzip.open(out, "rt").read() == text
