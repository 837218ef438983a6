"""The embed / score-variants / probe entry points: outputs, exit codes, error messages."""

from __future__ import annotations

import numpy as np
import polars as pl
import pysam
import pytest
from conftest import CHR20_FASTA, CHR20_VCF, tiny_model

from hnet_dna.evaluation.cli import main_embed, main_probe, main_score_variants
from hnet_dna.evaluation.embeddings import read_boundaries_bed


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m"
    tiny_model(1).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def fasta_copy(tmp_path_factory):
    # the FASTA gets a .fai next to it: keep tests/data clean
    path = tmp_path_factory.mktemp("ref") / "chr20.fa"
    path.write_text(CHR20_FASTA.read_text())
    return path


def test_embed_fasta_bed(saved_model, fasta_copy, tmp_path, capsys):
    bed = tmp_path / "r.bed"
    bed.write_text("z\t100\t180\tfirst\nz\t5000\t5300\tsecond\n")
    out = tmp_path / "emb.parquet"
    rc = main_embed(["--model", str(saved_model), "--fasta", str(fasta_copy), "--bed", str(bed),
                     "--out", str(out), "--depth", "final", "--depth", "main",
                     "--strand-average", "--window", "128", "--overlap", "32",
                     "--boundaries-bed", str(tmp_path / "b.bed"), "--no-progress"])
    assert rc == 0
    df = pl.read_parquet(out)
    assert df["name"].to_list() == ["first", "second"] and df["length"].to_list() == [80, 300]
    assert np.stack(df["emb_main"].to_numpy()).shape == (2, 64)
    bounds = read_boundaries_bed(tmp_path / "b.bed")
    assert bounds and all(100 <= b.position < 180 or 5000 <= b.position < 5300 for b in bounds)
    assert "bases/s" in capsys.readouterr().out


def test_embed_sequence_table_npy(saved_model, tmp_path):
    table = tmp_path / "s.tsv"
    table.write_text("name\tsequence\na\tACGTACGTAA\nb\tGGGCCCAANT\n")
    out = tmp_path / "emb.npy"
    assert main_embed(["--model", str(saved_model), "--sequences", str(table), "--out", str(out),
                       "--per-base", "--no-progress"]) == 0
    assert np.load(out).shape == (2, 32)
    assert np.load(tmp_path / "emb.final.per_base.npy").shape == (20, 32)


def test_embed_bad_input_exit_code(saved_model, fasta_copy, tmp_path, capsys):
    bed = tmp_path / "bad.bed"
    bed.write_text("z\t100\t50\n")
    rc = main_embed(["--model", str(saved_model), "--fasta", str(fasta_copy), "--bed", str(bed),
                     "--out", str(tmp_path / "x.parquet")])
    assert rc == 2 and "bad.bed:1" in capsys.readouterr().err


def test_score_variants_end_to_end(saved_model, fasta_copy, tmp_path, capsys):
    out = tmp_path / "scored.vcf.gz"
    rc = main_score_variants(["--model", str(saved_model), "--vcf", str(CHR20_VCF), "--fasta",
                              str(fasta_copy), "--out", str(out), "--window", "32",
                              "--max-variants", "40", "--info", "AF",
                              "--label-positive", "AF<0.001", "--label-negative", "AF>=0.05",
                              "--no-progress"])
    assert rc == 0
    table = pl.read_parquet(tmp_path / "scored.parquet")
    assert table.height == 40 and table["AF"].is_not_null().all()
    with pysam.VariantFile(str(out)) as vf:
        assert sum(1 for _ in vf) == 40
    text = capsys.readouterr().out
    assert "scored: 40" in text and "auroc" in text
    rc = main_score_variants(["--model", str(saved_model), "--vcf", str(CHR20_VCF), "--fasta",
                              str(fasta_copy), "--out", str(tmp_path / "b"), "--window", "32",
                              "--max-variants", "3", "--label-column", "AF", "--no-progress"])
    assert rc == 2 and "--label-column 'AF' is not in the table" in capsys.readouterr().err


def test_score_variants_usage_errors(saved_model, fasta_copy, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main_score_variants(["--model", str(saved_model), "--fasta", str(fasta_copy),
                             "--out", str(tmp_path / "o")])  # neither --vcf nor --saturate-cds
    rc = main_score_variants(["--model", str(saved_model), "--fasta", str(tmp_path / "no.fa"),
                              "--vcf", str(CHR20_VCF), "--out", str(tmp_path / "o")])
    assert rc == 2 and "no.fa" in capsys.readouterr().err


def test_probe_csv_task_kmer_only(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "task"
    folder.mkdir()
    for split, n in (("train", 40), ("test", 20)):
        rows = ["sequence,label"]
        for i in range(n):
            alphabet = "AT" if i % 2 else "GC"
            rows.append("".join(rng.choice(list(alphabet), 30)) + f",{i % 2}")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "res.parquet"
    rc = main_probe(["--task", f"csv:{folder}", "--kmer-k", "2", "--heads", "logreg",
                     "--seeds", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    res = pl.read_parquet(out)
    assert res.height == 2 and (res["accuracy"] == 1.0).all()
    assert "mcc_mean" in capsys.readouterr().out


def test_probe_bad_task_exit_code(tmp_path, capsys):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "train.csv").write_text("sequence,label\nACGT,0\nAZGT,1\n")
    (tmp_path / "t" / "test.csv").write_text("sequence,label\nACGT,0\n")
    assert main_probe(["--task", f"csv:{tmp_path / 't'}"]) == 2
    assert "train.csv:3: invalid base 'Z'" in capsys.readouterr().err
