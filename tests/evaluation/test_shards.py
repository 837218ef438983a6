"""Inference in regions and shards (issue 21, section 2): region parsing, block plans, sharded
== unsharded, kill -9 + rerun == uninterrupted, flat memory on a million-record VCF."""

from __future__ import annotations

import gzip
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pysam
import pytest
from eval_data import CHR20_FASTA, CHR20_VCF

from hnet_dna.errors import InputError
from hnet_dna.evaluation.cli import main_score_variants
from hnet_dna.evaluation.merge import main_merge
from hnet_dna.evaluation.regions import (
    Shard,
    genome_blocks,
    parse_region,
    parse_shard,
    resolve_shard,
    select_regions,
    shard_blocks,
)
from hnet_dna.genomics.intervals import Interval

ROOT = Path(__file__).resolve().parents[2]
CONTIGS = {"z": 30_000, "y": 20_000}


# ---------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Two contigs from the real excerpt (``y``: the first 20 kb of ``z``) and a VCF of the
    real records on both, ``y`` first (file order differs from FASTA order), plus a record
    on a contig the FASTA lacks (declared in the header)."""
    d = tmp_path_factory.mktemp("shards")
    seq = "".join(CHR20_FASTA.read_text().split("\n")[1:])
    (d / "ref.fa").write_text(f">z\n{seq}\n>y\n{seq[:20_000]}\n")
    head, body = [], []
    for line in CHR20_VCF.read_text().splitlines(keepends=True):
        (head if line.startswith("#") else body).append(line)
    y = ["y" + line[1:] for line in body if int(line.split("\t")[1]) <= 19_000]
    head.insert(-1, "##contig=<ID=chrUn_x,length=1000>\n##contig=<ID=y,length=20000>\n")
    text = "".join(head + y + body + ["chrUn_x\t5\t.\tA\tG\t.\t.\t.\n"])
    (d / "calls.vcf").write_text(text)
    pysam.tabix_compress(str(d / "calls.vcf"), str(d / "calls.vcf.gz"))
    pysam.tabix_index(str(d / "calls.vcf.gz"), preset="vcf")
    return {"dir": d, "fasta": d / "ref.fa", "vcf": d / "calls.vcf", "vcf_gz": d / "calls.vcf.gz"}


def _score(model, data, vcf, out, *extra) -> int:
    return main_score_variants(["--model", str(model), "--fasta", str(data["fasta"]), "--vcf",
                                str(vcf), "--out", str(out), "--window", "32", "--no-progress",
                                "--block-size", "4000", "--info", "AF,AA", *extra])


def _vcf_text(path: Path) -> str:
    with gzip.open(path, "rt") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def unsharded(saved_model, data, tmp_path_factory) -> Path:
    """The plain run over the whole file (no region, no shard): the reference output."""
    out = tmp_path_factory.mktemp("plain") / "plain.vcf.gz"
    assert _score(saved_model, data, data["vcf"], out) == 0
    return out


def _same_outputs(a: Path, b: Path) -> None:
    """Byte-identical VCF text (header included) and equal tables, and b is indexed."""
    assert _vcf_text(a) == _vcf_text(b)
    pa, pb = (pl.read_parquet(p.with_name(p.name.replace(".vcf.gz", ".parquet")))
              for p in (a, b))
    assert pa.schema == pb.schema and pa.equals(pb)
    assert Path(f"{b}.tbi").is_file()


# ---------------------------------------------------------------------------- regions, blocks
def test_regions_are_samtools_style_and_resolve_aliases():
    assert parse_region("z:1,001-2,000", CONTIGS) == Interval("z", 1000, 2000, "z:1,001-2,000")
    assert (parse_region("y", CONTIGS).start, parse_region("y", CONTIGS).end) == (0, 20_000)
    assert (parse_region("y:19001", CONTIGS).start, parse_region("y:19001", CONTIGS).end) == \
        (19_000, 20_000)
    assert parse_region("chry:1-10", CONTIGS).contig == "y"  # chr alias
    assert parse_region("y:5-99999", CONTIGS).end == 20_000  # clipped to the contig


@pytest.mark.parametrize("text, message", [
    ("q:1-5", "--region 'q:1-5': the FASTA: no record 'q'"),
    ("z:0-5", "need 1 <= START <= END"),
    ("z:9-5", "need 1 <= START <= END"),
    ("y:20001-20005", "START 20001 is past the end of y (20000 bases)"),
    ("z:1-5:7", "expected CONTIG, CONTIG:START or CONTIG:START-END"),
])
def test_bad_regions_are_refused_with_the_reason(text, message):
    with pytest.raises(InputError, match=None) as err:
        parse_region(text, CONTIGS)
    assert message in str(err.value)


def test_overlapping_regions_are_refused_naming_both(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("z\t100\t200\n")
    with pytest.raises(InputError) as err:
        select_regions(["z:150-300"], bed, CONTIGS)
    assert "'z:150-300' (z:150-300)" in str(err.value) and "z:101-200" in str(err.value)
    assert "overlap" in str(err.value)
    got = select_regions(["y:1-10", "z:300-400"], bed, CONTIGS)
    assert [(iv.contig, iv.start, iv.end) for iv in got] == \
        [("z", 100, 200), ("z", 299, 400), ("y", 0, 10)]  # FASTA order


def test_blocks_cover_each_base_once_and_shards_partition_them():
    sel = select_regions(["z:2500-9000", "y"], None, CONTIGS)
    blocks = genome_blocks(CONTIGS, sel, 4000)
    assert [(b.contig, b.start, b.end, b.region_start) for b in blocks] == [
        ("z", 2499, 4000, True), ("z", 4000, 8000, False), ("z", 8000, 9000, False),
        ("y", 0, 4000, True), ("y", 4000, 8000, False), ("y", 8000, 12000, False),
        ("y", 12000, 16000, False), ("y", 16000, 20000, False)]
    parts = [shard_blocks(blocks, Shard(i, 3)) for i in range(3)]
    assert sorted(b.index for p in parts for b in p) == list(range(len(blocks)))
    assert [b.index for b in parts[1]] == [1, 4, 7]  # round-robin


def test_bad_shard_and_block_size_options_exit_2(saved_model, data, capsys):
    for option in (["--shard", "3/3"], ["--block-size", "0"], ["--shard", "x"]):
        with pytest.raises(SystemExit) as exit_:
            _score(saved_model, data, data["vcf"], data["dir"] / "never.vcf.gz", *option)
        assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "need 0 <= I < N" in err and "must be a positive number of bases" in err
    assert "expected I/N" in err


def test_shard_option_and_torchrun_ranks():
    assert parse_shard("2/8") == Shard(2, 8)
    for bad in ("8/8", "1/0", "x", "-1/3"):
        with pytest.raises(Exception, match="I/N|0 <= I < N"):
            parse_shard(bad)
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}
    assert resolve_shard(None, env) == Shard(3, 4, 1)
    assert resolve_shard(Shard(0, 2), {}) == Shard(0, 2)
    with pytest.raises(InputError, match="drop --shard"):
        resolve_shard(Shard(0, 2), env)


# ---------------------------------------------------------------------------- score-variants
@pytest.mark.parametrize("source", ["vcf", "vcf_gz"])  # streamed text, tabix-indexed bgzip
def test_sharded_score_variants_equals_unsharded(saved_model, data, unsharded, source,
                                                 tmp_path, capsys):
    out = tmp_path / "sharded.vcf.gz"
    for i in (2, 0, 1):  # any order, as SLURM array tasks finish
        assert _score(saved_model, data, data[source], out, "--shard", f"{i}/3") == 0
        assert not out.exists()
    assert "hnet-dna merge" in capsys.readouterr().out
    assert main_merge([str(out)]) == 0
    assert not Path(f"{out}.parts").exists()
    table = pl.read_parquet(tmp_path / "sharded.parquet")
    assert table["contig"].unique(maintain_order=True).to_list() == ["y", "z", "chrUn_x"]
    assert table.filter(pl.col("contig") == "chrUn_x")["status"].to_list() == ["missing_contig"]
    if source == "vcf":
        _same_outputs(unsharded, out)
    else:  # the bgzip input's header has the same lines; compare everything after it
        assert _vcf_text(out).split("#CHROM")[1] == _vcf_text(unsharded).split("#CHROM")[1]
        ref = pl.read_parquet(unsharded.with_name("plain.parquet"))
        assert table.equals(ref)


def test_another_shard_count_reuses_the_finished_blocks(saved_model, data, unsharded,
                                                        tmp_path, caplog):
    out = tmp_path / "mixed.vcf.gz"
    assert _score(saved_model, data, data["vcf"], out, "--shard", "1/3") == 0
    done = len(list(Path(f"{out}.parts").glob("block*.parquet")))
    assert _score(saved_model, data, data["vcf"], out, "--shard", "0/1") == 0  # and merges
    assert f"resuming: {done} of {done + 9} blocks of shard 0/1 were done" in caplog.text
    _same_outputs(unsharded, out)


def test_torchrun_ranks_shard_and_rank_0_merges(saved_model, data, unsharded, tmp_path,
                                                monkeypatch, capsys):
    out = tmp_path / "ranks.vcf.gz"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("RANK", "1")
    assert _score(saved_model, data, data["vcf"], out) == 0
    assert "rank 1/2: done; rank 0 merges" in capsys.readouterr().out and not out.exists()
    monkeypatch.setenv("RANK", "0")
    assert _score(saved_model, data, data["vcf"], out) == 0
    _same_outputs(unsharded, out)


_HNET_NUMBER = re.compile(r"(HNET_(?:LLR|LLR_MEAN|COS|L2)=)([^;\t]+)")


def test_region_run_scores_the_records_in_the_regions(saved_model, data, unsharded, tmp_path):
    out = tmp_path / "region.vcf.gz"
    bed = tmp_path / "r.bed"
    bed.write_text("z\t20000\t30000\n")
    assert _score(saved_model, data, data["vcf_gz"], out, "--region", "y:1001-6,500",
                  "--regions-bed", str(bed)) == 0
    ref = pl.read_parquet(unsharded.with_name("plain.parquet"))
    want = ref.filter(((pl.col("contig") == "y") & pl.col("pos").is_between(1001, 6500)) |
                      ((pl.col("contig") == "z") & (pl.col("pos") > 20000)))
    got = pl.read_parquet(tmp_path / "region.parquet")
    assert got.height == want.height > 100
    # same rows, numbered over the selected records; the region y:1001- cuts a grid cell, so
    # its first batch holds other variants than the whole-file run's: scores agree to float32
    # rounding (shards of one selection batch alike and agree to the bit, tests above)
    scores = ["llr", "llr_fwd", "llr_rev", "llr_mean", "cos_dist", "l2_dist"]
    assert got.drop("record", *scores).equals(want.drop("record", *scores))
    for col in scores:
        assert (got[col] - want[col]).abs().max() < 1e-5
    assert got["record"].unique().sort().to_list() == list(range(got["record"].n_unique()))
    lines = [x for x in _vcf_text(unsharded).splitlines() if not x.startswith("#")]
    kept = [x for x in lines if (x.startswith("y\t") and 1001 <= int(x.split("\t")[1]) <= 6500)
            or (x.startswith("z\t") and int(x.split("\t")[1]) > 20000)]
    got_lines = [x for x in _vcf_text(out).splitlines() if not x.startswith("#")]
    assert [_HNET_NUMBER.sub(r"\1#", x) for x in got_lines] == [
        _HNET_NUMBER.sub(r"\1#", x) for x in kept]  # the same text, numbers aside
    for a, b in zip(got_lines, kept, strict=True):  # and the numbers to float32 rounding
        for x, y in zip(_HNET_NUMBER.findall(a), _HNET_NUMBER.findall(b), strict=True):
            assert all(u == v or abs(float(u) - float(v)) < 1e-5
                       for u, v in zip(x[1].split(","), y[1].split(","), strict=True))


def test_merge_names_the_unfinished_shards(saved_model, data, tmp_path, capsys):
    out = tmp_path / "part.vcf.gz"
    assert _score(saved_model, data, data["vcf"], out, "--shard", "1/3") == 0
    capsys.readouterr()
    assert main_merge([str(out)]) == 2
    err = capsys.readouterr().err
    assert "blocks are not done yet" in err and "shard(s) 0/3, 2/3 have not finished" in err
    assert main_merge([str(tmp_path / "nothing.vcf.gz")]) == 2
    assert "no parts of a sharded run here" in capsys.readouterr().err
    # a rerun with other options must not mix its parts with these
    assert _score(saved_model, data, data["vcf"], out, "--shard", "0/3", "--window", "40") == 2
    err = capsys.readouterr().err
    assert "holds the parts of another run" in err and "window: 32 -> 40" in err


def test_a_changed_input_or_model_is_a_new_run(saved_model, data, tmp_path, capsys):
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(data["vcf"].read_text())
    out = tmp_path / "o.vcf.gz"
    assert _score(saved_model, data, vcf, out, "--shard", "1/3") == 0
    os.utime(vcf, ns=(1, 1))  # the same name, another file
    assert _score(saved_model, data, vcf, out, "--shard", "0/3") == 2
    assert "(differs in inputs)" in capsys.readouterr().err


def test_unsorted_vcf_is_refused_in_blocks(saved_model, data, tmp_path, capsys):
    lines = data["vcf"].read_text().splitlines(keepends=True)
    body = [x for x in lines if not x.startswith("#")]
    vcf = tmp_path / "unsorted.vcf"
    vcf.write_text("".join([x for x in lines if x.startswith("#")] + body[5:] + body[:5]))
    assert _score(saved_model, data, vcf, tmp_path / "u.vcf.gz", "--shard", "0/1") == 2
    assert "the VCF is not sorted" in capsys.readouterr().err


def test_two_vcf_contigs_naming_one_fasta_record_are_refused(saved_model, data, tmp_path,
                                                             capsys):
    body = [x for x in data["vcf"].read_text().splitlines(keepends=True) if x.startswith("z\t")]
    head = [x for x in data["vcf"].read_text().splitlines(keepends=True) if x.startswith("#")]
    vcf = tmp_path / "alias.vcf"
    vcf.write_text("".join(head + body + ["chr" + x for x in body[:50]]))
    assert _score(saved_model, data, vcf, tmp_path / "a.vcf.gz", "--region", "z") == 2
    assert "two VCF contigs name FASTA record z" in capsys.readouterr().err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hnet_dna.cli", *args]


def _env() -> dict[str, str]:
    # The same thread count as this process's in-process runs (the reference outputs): float32
    # reductions may round differently with another count.
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_kill_9_then_rerun_equals_an_uninterrupted_run(saved_model, data, unsharded, tmp_path):
    out = tmp_path / "killed.vcf.gz"
    cmd = _cli("score-variants", "--model", str(saved_model), "--fasta", str(data["fasta"]),
               "--vcf", str(data["vcf"]), "--out", str(out), "--window", "32", "--no-progress",
               "--block-size", "4000", "--info", "AF,AA", "--shard", "0/1")
    parts = Path(f"{out}.parts")
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("block*.parquet"))) < 3:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in parts.glob("block*.parquet")}
    assert 3 <= len(done) < 14 and not out.exists()  # killed mid-run (14 blocks in all)
    rerun = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} of 14 blocks of shard 0/1 were done" in rerun.stderr
    _same_outputs(unsharded, out)
    assert not parts.exists()


def test_million_record_vcf_streams_in_flat_memory(saved_model, data, tmp_path):
    """1.07 M records (the excerpt's 769 records on 1,400 contigs) are read and dispatched
    record by record while only one region is scored; peak RSS stays that of a 769-record
    run (the file itself is 100 MB of text)."""
    body = [x for x in CHR20_VCF.read_text().splitlines(keepends=True) if not x.startswith("#")]
    head = [x for x in CHR20_VCF.read_text().splitlines(keepends=True) if x.startswith("#")]
    big = tmp_path / "big.vcf"
    with open(big, "w") as fh:
        fh.writelines(head)
        fh.writelines(body)
        for k in range(1400):
            fh.write("".join(f"c{k:04d}" + x[1:] for x in body))
    n = len(body) * 1401
    assert n >= 1_000_000

    def run(vcf: Path, out: str) -> tuple[float, str]:
        code = ("import resource, sys; from hnet_dna.cli import main; rc = main(sys.argv[1:]); "
                "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); "
                "sys.exit(rc)")
        res = subprocess.run([sys.executable, "-c", code, "score-variants", "--model",
                              str(saved_model), "--fasta", str(data["fasta"]), "--vcf",
                              str(vcf), "--out", str(tmp_path / out), "--window", "32",
                              "--no-progress", "--region", "z:1-3000"],
                             env=_env(), capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        rss = int(res.stdout.split("maxrss ")[1].split()[0]) / 1024  # MiB
        return rss, res.stdout

    small_rss, small = run(CHR20_VCF, "small")
    t0 = time.perf_counter()
    big_rss, out = run(big, "big")
    seconds = time.perf_counter() - t0
    assert "scored: " in out and pl.read_parquet(tmp_path / "big.parquet").equals(
        pl.read_parquet(tmp_path / "small.parquet"))
    print(f"peak RSS {small_rss:.0f} MiB (769 records) vs {big_rss:.0f} MiB ({n} records, "
          f"{seconds:.1f} s)")
    assert big_rss - small_rss < 60, (small_rss, big_rss, seconds)


# ---------------------------------------------------------------------------- track, embed
def test_a_slice_equals_the_whole_sequence_run(model2_f64):
    """A block computed alone (both strands, two stages) equals the same bases of the whole
    sequence's run: the basis of tracks in blocks."""
    import numpy as np
    from eval_data import random_ids

    from hnet_dna.evaluation.embeddings import Embedder
    from hnet_dna.evaluation.runner import PerBaseForward

    ids = random_ids(3000, 1)
    embedder = Embedder(PerBaseForward(model2_f64, 4), [], "mean", True, 256, 64,
                        progress=False, logp=True)
    whole = next(embedder.embed([("x", ids)]))
    for a, b in [(0, 3000), (1000, 2500), (2999, 3000), (700, 701), (0, 192), (2808, 3000)]:
        part = embedder.embed_slice("x", lambda i, j: ids[i:j], 3000, a, b)
        assert part.length == b - a
        for s in range(2):
            np.testing.assert_allclose(part.strands[s].logp, whole.strands[s].logp[a:b],
                                       rtol=1e-9, atol=1e-12)
            for k in range(2):
                assert (part.strands[s].chunk_start[k] ==
                        whole.strands[s].chunk_start[k][a:b]).all()
                np.testing.assert_allclose(part.strands[s].boundary_prob[k],
                                           whole.strands[s].boundary_prob[k][a:b], rtol=1e-9)


def _track(model, data, out, *extra) -> int:
    from hnet_dna.evaluation.cli import main_track

    return main_track(["--model", str(model), "--fasta", str(data["fasta"]), "--out", str(out),
                       "--window", "256", "--overlap", "64", "--block-size", "3000",
                       "--no-progress", *extra])


def _track_files(prefix: Path) -> dict[str, object]:
    """Every track output by name: bedGraph lines (without the named track line), bigWig
    intervals, boundary BED lines."""
    import pyBigWig

    got: dict[str, object] = {}
    for path in sorted(prefix.parent.glob(prefix.name + ".*")):
        name = path.name[len(prefix.name):]
        if name.endswith(".bedGraph"):
            got[name] = path.read_text().splitlines()[1:]
        elif name.endswith(".bw"):
            bw = pyBigWig.open(str(path))
            got[name] = {c: bw.intervals(c) for c in bw.chroms()}
            bw.close()
        elif name.endswith(".bed.gz"):
            got[name] = _vcf_text(path)
        elif name.endswith(".tbi"):
            got[name] = True
    return got


def test_sharded_track_equals_unsharded(saved_model, data, tmp_path):
    bed = tmp_path / "t.bed"
    bed.write_text("y\t0\t7000\ny\t7000\t10000\nz\t2000\t11000\n")  # abutting regions on y
    assert _track(saved_model, data, tmp_path / "plain", "--bed", str(bed)) == 0
    for i in (1, 0):
        assert _track(saved_model, data, tmp_path / "sh", "--bed", str(bed),
                      "--shard", f"{i}/2") == 0
    assert main_merge([str(tmp_path / "sh")]) == 0
    plain, sharded = _track_files(tmp_path / "plain"), _track_files(tmp_path / "sh")
    assert len(plain) == 12 and plain == sharded


def test_track_writer_joins_runs_across_block_seams_only(tmp_path):
    from contextlib import ExitStack

    import numpy as np

    from hnet_dna.evaluation.tracks import TrackWriter

    with ExitStack() as stack:
        w = TrackWriter(stack, str(tmp_path / "w"), ["s"], {"y": 100}, bigwig=True)
        w.add("y", 0, {"s": np.array([1.0, 2.0, 2.0])})
        w.add("y", 3, {"s": np.array([2.0, 3.0])}, join=True)  # a block seam: 2.0 continues
        w.add("y", 5, {"s": np.array([3.0, np.nan])}, join=False)  # a new region: no join
        w.add("y", 7, {"s": np.array([np.nan, 3.0])}, join=True)  # not adjacent: no join
        w.finish()
    assert (tmp_path / "w.s.bedGraph").read_text().splitlines()[1:] == [
        "y\t0\t1\t1", "y\t1\t4\t2", "y\t4\t5\t3", "y\t5\t6\t3", "y\t8\t9\t3"]


def test_track_region_gives_the_whole_runs_values_there(saved_model, data, tmp_path):
    assert _track(saved_model, data, tmp_path / "whole", "--forward-only", "--no-bigwig") == 0
    assert _track(saved_model, data, tmp_path / "part", "--forward-only", "--no-bigwig",
                  "--region", "z:4001-9000") == 0
    whole = (tmp_path / "whole.logp.fwd.bedGraph").read_text().splitlines()[1:]
    part = (tmp_path / "part.logp.fwd.bedGraph").read_text().splitlines()[1:]
    values: dict[int, str] = {}
    for line in whole:
        c, s, e, v = line.split("\t")
        if c == "z":
            values.update(dict.fromkeys(range(int(s), int(e)), v))
    covered = 0
    for line in part:
        c, s, e, v = line.split("\t")
        assert c == "z" and 4000 <= int(s) < int(e) <= 9000
        assert all(values[i] == v for i in range(int(s), int(e)))
        covered += int(e) - int(s)
    assert covered == 5000


def test_sharded_embed_equals_unsharded_in_bed_order(saved_model, data, tmp_path):
    import numpy as np

    from hnet_dna.evaluation.cli import main_embed

    bed = tmp_path / "e.bed"  # unsorted, both strands, both contigs
    bed.write_text("z\t9000\t9800\tb\t0\t-\ny\t100\t1500\ta\t0\t+\nz\t200\t900\tc\t0\t+\n"
                   "y\t15000\t16000\td\n")

    def embed(out: Path, *extra: str) -> int:
        return main_embed(["--model", str(saved_model), "--fasta", str(data["fasta"]),
                           "--bed", str(bed), "--out", str(out), "--window", "256",
                           "--overlap", "64", "--block-size", "4000", "--no-progress",
                           "--boundaries-bed", str(out.with_suffix(".bed")), *extra])

    assert embed(tmp_path / "plain.parquet") == 0
    assert embed(tmp_path / "one.parquet", "--shard", "0/1") == 0
    for i in (2, 0, 1):
        assert embed(tmp_path / "sh.parquet", "--shard", f"{i}/3") == 0
    assert main_merge([str(tmp_path / "sh.parquet")]) == 0
    plain, one, sharded = (pl.read_parquet(tmp_path / f"{n}.parquet")
                           for n in ("plain", "one", "sh"))
    assert sharded["name"].to_list() == ["b", "a", "c", "d"]  # the BED's order
    assert sharded.equals(one)  # shards == the same blocks in one process, to the bit
    assert sharded.drop("emb_final").equals(plain.drop("emb_final"))
    # the plain run batches windows of several blocks together: float32 rounding apart
    np.testing.assert_allclose(np.stack(sharded["emb_final"].to_numpy()),
                               np.stack(plain["emb_final"].to_numpy()), rtol=0, atol=1e-5)
    assert (tmp_path / "sh.bed").read_text().count("\n") > 100
    # a sorted BED: the plain run batches by the same blocks, and equals the shards to the bit
    bed.write_text("y\t100\t1500\ta\ny\t1600\t1900\te\ny\t15000\t16000\td\n"
                   "z\t200\t900\tc\nz\t9000\t9800\tb\t0\t-\n")
    assert embed(tmp_path / "plain2.parquet") == 0
    for i in (0, 1):
        assert embed(tmp_path / "sh2.parquet", "--shard", f"{i}/2") == 0
    assert main_merge([str(tmp_path / "sh2.parquet")]) == 0
    assert pl.read_parquet(tmp_path / "sh2.parquet").equals(
        pl.read_parquet(tmp_path / "plain2.parquet"))
    assert (tmp_path / "sh2.bed").read_text() == (tmp_path / "plain2.bed").read_text()
    assert embed(tmp_path / "x.parquet", "--region", "z") == 0
    assert pl.read_parquet(tmp_path / "x.parquet")["name"].to_list() == ["c", "b"]  # z only



def test_records_read_through_tabix_are_named_by_chrom_pos(saved_model, data, tmp_path,
                                                           caplog):
    """A tabix fetch knows no line numbers: messages name the record (CHROM:POS), never
    'line 0'."""
    lines = data["vcf"].read_text().splitlines(keepends=True)
    head = [x for x in lines if x.startswith("#")]
    body = [x for x in lines if x.startswith("z\t")][:20]
    cols = body[3].split("\t")
    bad_ref = "C" if cols[3][0] != "C" else "G"
    body[3] = "\t".join(cols[:3] + [bad_ref + cols[3][1:]] + cols[4:])
    (tmp_path / "bad.vcf").write_text("".join(head + body))
    pysam.tabix_compress(str(tmp_path / "bad.vcf"), str(tmp_path / "bad.vcf.gz"))
    pysam.tabix_index(str(tmp_path / "bad.vcf.gz"), preset="vcf")
    with caplog.at_level(logging.WARNING, logger="hnet_dna"):
        assert _score(saved_model, data, tmp_path / "bad.vcf.gz", tmp_path / "b.vcf.gz",
                      "--region", "z") == 0
    assert f"bad.vcf.gz: record z:{cols[1]}: z:{cols[1]} REF" in caplog.text
    assert ":0:" not in caplog.text
