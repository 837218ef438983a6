"""score-variants failure behaviour (issue 13): refused overwrites, counted non-finite scores,
contig aliases, outputs checked first and written whole, one-line errors for bad input."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import polars as pl
import pysam
import pytest
import torch
from eval_data import CHR20_VCF, YEAST_FASTA, YEAST_GFF, tiny_model

from hnet_dna.evaluation import vcf_scoring
from hnet_dna.evaluation.cli import main_score_variants
from hnet_dna.evaluation.runner import PerBaseForward
from hnet_dna.evaluation.scoring import VariantScorer
from hnet_dna.evaluation.variants import read_variants, variant_windows
from hnet_dna.evaluation.vcf_scoring import score_vcf, write_scored_vcf

HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"


@pytest.fixture
def fasta(fasta_copy):
    return fasta_copy


def _records(chr20, contig: str = "z", n: int = 4) -> str:
    lines = []
    for p in range(1000, 1000 + 50 * n, 50):
        ref = chr20.fetch("z", p - 1, p).upper()
        lines.append(f"{contig}\t{p}\t.\t{ref}\t{'ACGT'[('ACGT'.index(ref) + 1) % 4]}\t.\t.\t.\n")
    return "".join(lines)


def _run(model, fasta, vcf, out, *extra) -> int:
    return main_score_variants(["--model", str(model), "--fasta", str(fasta), "--vcf", str(vcf),
                                "--out", str(out), "--window", "32", "--no-progress", *extra])


def _bgzip(text: str, path) -> None:
    with pysam.BGZFile(str(path), "wb") as fh:
        fh.write(text.encode())


# ------------------------------------------------------------------ 1. refused overwrites
def test_prefix_or_path_resolving_to_the_input_is_refused(saved_model, fasta, chr20, tmp_path,
                                                          capsys):
    calls = tmp_path / "calls.vcf.gz"
    _bgzip(HEADER + _records(chr20), calls)
    before = calls.read_bytes()
    assert _run(saved_model, fasta, calls, tmp_path / "calls") == 2  # README prefix form
    assert "is the input file" in capsys.readouterr().err
    assert _run(saved_model, fasta, calls, calls, "--overwrite") == 2
    link = tmp_path / "link.vcf.gz"
    link.symlink_to(calls)
    assert _run(saved_model, fasta, calls, link, "--overwrite") == 2
    assert calls.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == \
        ["calls.vcf.gz", "link.vcf.gz"]


def test_existing_outputs_need_overwrite(saved_model, fasta, chr20, tmp_path, capsys):
    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER + _records(chr20))
    (tmp_path / "o.parquet").write_text("keep me")
    assert _run(saved_model, fasta, vcf, tmp_path / "o.vcf") == 2
    assert "o.parquet already exists" in capsys.readouterr().err
    assert (tmp_path / "o.parquet").read_text() == "keep me"
    assert not (tmp_path / "o.vcf").exists()  # checked before anything was written
    assert _run(saved_model, fasta, vcf, tmp_path / "o.vcf", "--overwrite") == 0
    assert pl.read_parquet(tmp_path / "o.parquet").height == 4


def test_output_problems_are_found_before_any_work(fasta, chr20, tmp_path, capsys):
    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER + _records(chr20))
    (tmp_path / "adir.vcf").mkdir()
    # the model does not exist: the output error must come first (no compute, no loading)
    assert _run(tmp_path / "no_model", fasta, vcf, tmp_path / "adir.vcf") == 2
    assert "is a directory" in capsys.readouterr().err
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert _run(tmp_path / "no_model", fasta, vcf, ro / "o.vcf") == 2
        assert "not writable" in capsys.readouterr().err


def test_a_failed_write_leaves_nothing(saved_model, fasta, chr20, tmp_path, monkeypatch, capsys):
    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER + _records(chr20))
    out = tmp_path / "out"
    out.mkdir()

    def fail(*args, **kw):
        raise OSError(28, "disk full while writing")

    monkeypatch.setattr(vcf_scoring, "write_scored_vcf", fail)
    assert _run(saved_model, fasta, vcf, out / "o.vcf.gz") == 2  # a full disk: one line, exit 2
    assert "disk full while writing" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # no parquet, no VCF, no temporaries


# ------------------------------------------------------------------ 2. NaN is not "unscored"
class _PoisonedRunner:
    """A real runner whose outputs are NaN for the windows of chosen variants."""

    def __init__(self, runner: PerBaseForward, poisoned: set[bytes]) -> None:
        self.runner, self.poisoned = runner, poisoned

    def run_shared(self, windows, shared, depths=()):
        outs = self.runner.run_shared(windows, shared, depths)
        for w, o in zip(windows, outs, strict=True):
            if np.asarray(w).tobytes() in self.poisoned:
                o.logp = np.full_like(o.logp, np.nan)
        return outs


def test_nonfinite_scores_are_a_status_not_a_number(chr20, model1, tmp_path):
    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER + _records(chr20))
    variants = list(read_variants(vcf, chr20, 32))
    poisoned = {variant_windows(chr20, variants[1], 32)[1].tobytes()}  # second ALT window
    scorer = VariantScorer(_PoisonedRunner(PerBaseForward(model1), poisoned),  # type: ignore
                           strand_average=False)
    table, counter = score_vcf(vcf, chr20, scorer, 32, progress=False)
    assert table["status"].to_list() == ["ok", "nonfinite", "ok", "ok"]
    assert counter["nonfinite"] == 1 and table["llr"].is_null().to_list() == [
        False, True, False, False]
    out = tmp_path / "o.vcf"
    write_scored_vcf(vcf, out, table, chr20)
    second = out.read_text().splitlines()[-3]
    assert "HNET_LLR=.;" in second and "HNET_STATUS=nonfinite" in second
    records = [r for r in out.read_text().splitlines() if not r.startswith("#")]
    assert not any("nan" in r.lower().replace("nonfinite", "") for r in records)


def test_nan_weights_fail_with_the_reason(chr20, fasta, tmp_path, capsys):
    model = tiny_model(1)
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = tmp_path / "nan_model"
    model.save_pretrained(path)
    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER + _records(chr20))
    try:
        rc = _run(path, fasta, vcf, tmp_path / "o.vcf")
    except Exception as err:  # weights checked at load time (another change): also fine
        assert "nan" in str(err).lower() or "finite" in str(err).lower()
        rc = 2
    assert rc == 2
    err = capsys.readouterr().err
    assert "finite" in err.lower() or "nan" in err.lower()
    assert not (tmp_path / "o.vcf").exists() and not (tmp_path / "o.parquet").exists()


# ------------------------------------------------------------------ 3. contig aliases
def test_chr_prefixed_vcf_against_unprefixed_fasta(saved_model, fasta, chr20, tmp_path,
                                                   capsys):
    vcf = tmp_path / "in.vcf"
    text = HEADER + _records(chr20, contig="chrz")
    vcf.write_text(text)
    assert _run(saved_model, fasta, vcf, tmp_path / "o.vcf") == 0
    assert "scored: 4" in capsys.readouterr().out
    table = pl.read_parquet(tmp_path / "o.parquet")
    assert table["contig"].unique().to_list() == ["chrz"]  # the VCF's own name is kept
    assert (tmp_path / "o.vcf").read_text().count("HNET_STATUS=ok") == 4


def test_nothing_scorable_exits_non_zero_with_the_reason(saved_model, fasta, chr20, tmp_path,
                                                         capsys):
    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER + _records(chr20, contig="chr7"))
    assert _run(saved_model, fasta, vcf, tmp_path / "o.vcf") == 2
    err = capsys.readouterr().err
    assert "none of 4 ALTs could be scored (4 missing_contig)" in err and "'chr7'" in err
    assert not (tmp_path / "o.vcf").exists()


# ------------------------------------------------------------------ clear errors
def test_plain_gzip_and_unindexed_bgzip_inputs_are_read(saved_model, fasta, chr20, tmp_path,
                                                        capfd):
    text = HEADER + _records(chr20)
    gz = tmp_path / "plain.vcf.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(text)
    bgz = tmp_path / "b.vcf.gz"
    _bgzip(text, bgz)
    assert _run(saved_model, fasta, gz, tmp_path / "o1") == 0
    assert _run(saved_model, fasta, bgz, tmp_path / "o2.vcf.gz") == 0
    captured = capfd.readouterr()
    assert "Could not retrieve index" not in captured.err
    assert (tmp_path / "o1.vcf.gz.tbi").exists() and (tmp_path / "o2.vcf.gz.tbi").exists()


@pytest.mark.parametrize("body, message", [
    ("z\t1000\t.\tA\n", r"in.vcf:3: expected at least 8 tab-separated columns"),
    ("z\t0\t.\tA\tC\t.\t.\t.\n", r"in.vcf:3: POS 0 is not a 1-based position \(the VCF"),
    ("z\tabc\t.\tA\tC\t.\t.\t.\n", r"in.vcf:3: POS 'abc' is not an integer"),
    ("z\t10\t.\t\tC\t.\t.\t.\n", r"in.vcf:3: malformed CHROM/REF/ALT"),
])
def test_malformed_records_name_file_and_line(saved_model, fasta, tmp_path, capsys, body,
                                              message):
    import re

    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER + body)
    assert _run(saved_model, fasta, vcf, tmp_path / "o.vcf") == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1, err
    assert not (tmp_path / "o.vcf").exists()


def test_header_only_vcf_succeeds_with_nothing_scored(saved_model, fasta, tmp_path, capsys):
    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER)
    assert _run(saved_model, fasta, vcf, tmp_path / "o.vcf") == 0
    assert "scored: 0" in capsys.readouterr().out
    assert pl.read_parquet(tmp_path / "o.parquet").height == 0
    lines = (tmp_path / "o.vcf").read_text().splitlines()
    assert lines[0] == "##fileformat=VCFv4.2" and lines[-1].startswith("#CHROM")


@pytest.mark.parametrize("option, message", [
    (["--max-variants", "0"], "--max-variants must be at least 1"),
    (["--max-variants", "-1"], "--max-variants must be at least 1"),
    (["--window", "2"], "--window 2 is too small to score anything"),
    (["--genetic-code", "99"], "--genetic-code 99 is not an NCBI translation table; known: [1, "),
    (["--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),  # argparse
])
def test_bad_options_are_refused_first(fasta, tmp_path, capsys, option, message):
    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER)
    try:
        code = _run(tmp_path / "no_model", fasta, vcf, tmp_path / "o.vcf", *option)
    except SystemExit as exit_:  # options checked by the parser itself exit through argparse
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.vcf").exists()


def test_not_a_vcf(saved_model, fasta, tmp_path, capsys):
    vcf = tmp_path / "in.vcf"
    vcf.write_text(CHR20_VCF.read_text().split("#CHROM")[0].replace("##fileformat=VCFv4.2\n",
                                                                    ""))
    assert _run(saved_model, fasta, vcf, tmp_path / "o.vcf") == 2
    assert "in.vcf" in capsys.readouterr().err


def test_saturation_checks_all_three_outputs(saved_model, tmp_path, capsys):
    args = ["--model", str(saved_model), "--fasta", str(YEAST_FASTA), "--gff", str(YEAST_GFF),
            "--saturate-cds", "--max-sites", "6", "--out", str(tmp_path / "sat"),
            "--window", "32", "--no-progress"]
    assert main_score_variants(args) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["sat.parquet", "sat.sites.vcf", "sat.vcf.gz", "sat.vcf.gz.tbi"]
    table = pl.read_parquet(tmp_path / "sat.parquet")
    assert table.height == 6 and table["consequence"].is_not_null().all()
    (tmp_path / "sat.parquet").unlink()
    assert main_score_variants(args) == 2  # the sites VCF exists: refused before any work
    assert "sat.sites.vcf already exists" in capsys.readouterr().err
    assert not (tmp_path / "sat.parquet").exists()


# ------------------------------------------------------------------ full disk, parquet writer
def test_parquet_writer_on_a_full_disk_is_one_line_exit_2(saved_model, fasta, chr20, tmp_path,
                                                          monkeypatch, capsys):
    """polars reports ENOSPC as ComputeError("parquet: File out of specification: ... (os
    error 28)") (seen on a full tmpfs): one line naming the table, exit 2, nothing left."""
    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER + _records(chr20))
    out = tmp_path / "out"
    out.mkdir()

    def full(self, file, *args, **kwargs):
        Path(file).write_bytes(b"PAR1")  # the writer got partway
        raise pl.exceptions.ComputeError(
            "parquet: File out of specification: underlying IO error: No space left on device "
            "(os error 28)")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    assert _run(saved_model, fasta, vcf, out / "o.vcf.gz") == 2
    assert capsys.readouterr().err == f"error: disk full while writing {out / 'o.parquet'}\n"
    assert list(out.iterdir()) == []


def test_free_space_estimate_covers_the_table(saved_model, fasta, chr20, tmp_path, monkeypatch,
                                              capsys):
    from hnet_dna import outputs

    vcf = tmp_path / "in.vcf"
    vcf.write_text(HEADER + _records(chr20))
    out = tmp_path / "out"
    out.mkdir()
    real = outputs.shutil.disk_usage
    monkeypatch.setattr(outputs.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=len(HEADER) + 100))
    assert _run(saved_model, fasta, vcf, out / "o.vcf.gz") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: not enough free space for outputs starting with ")
    assert "o.parquet" in err and err.count("\n") == 1
    assert list(out.iterdir()) == []
