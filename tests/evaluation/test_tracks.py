"""``hnet-dna track``: browser-valid bedGraph / bigWig / indexed BED, equal to the model's."""

from __future__ import annotations

import numpy as np
import pyBigWig
import pysam
import pytest
from eval_data import CHR20_FASTA, tiny_model

from hnet_dna.errors import InputError
from hnet_dna.evaluation.cli import main_track
from hnet_dna.evaluation.runner import PerBaseForward
from hnet_dna.evaluation.tracks import runs, track_outputs, track_regions
from hnet_dna.genomics.alphabet import reverse_complement
from hnet_dna.genomics.fasta import Genome

REGIONS = [("z", 5000, 5300), ("z", 100, 400)]  # deliberately unsorted in the BED


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """One track run over two regions (each fits one window, so values can be recomputed)."""
    tmp = tmp_path_factory.mktemp("track")
    model = tiny_model(1)
    model.save_pretrained(tmp / "m")
    fasta = tmp / "ref.fa"
    fasta.write_text(CHR20_FASTA.read_text())
    bed = tmp / "r.bed"
    bed.write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in REGIONS))
    rc = main_track(["--model", str(tmp / "m"), "--fasta", str(fasta), "--bed", str(bed),
                     "--out", str(tmp / "t"), "--window", "512", "--no-progress"])
    assert rc == 0
    return tmp, model, Genome(fasta)


def _bedgraph(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph")
    return [(c, int(s), int(e), float(v)) for c, s, e, v in (x.split("\t") for x in lines[1:])]


def test_every_output_exists(tracked):
    tmp, _, _ = tracked
    for path in track_outputs(tmp / "t", stages=1):
        assert path.is_file() and path.stat().st_size > 0, path
    assert not list(tmp.glob(".*tmp*"))  # no temporaries left


def test_bedgraph_and_bigwig_are_valid_and_agree(tracked):
    """bedGraphToBigWig's rules: sorted by contig then start, non-overlapping, inside the
    contig; and the bigWig read back holds the bedGraph's values."""
    tmp, _, genome = tracked
    for graph in sorted(tmp.glob("t.*.bedGraph")):
        rows = _bedgraph(graph)
        assert rows, graph
        assert rows == sorted(rows, key=lambda r: (r[0], r[1])), graph
        for (c0, _, e0, _), (c1, s1, _, _) in zip(rows, rows[1:], strict=False):
            assert c0 != c1 or s1 >= e0, f"{graph}: overlap at {c1}:{s1}"
        for c, s, e, v in rows:
            assert 0 <= s < e <= genome.contigs[c] and np.isfinite(v)
            assert any(rc == c and rs <= s and e <= re for rc, rs, re in REGIONS)
        bw = pyBigWig.open(str(graph.with_suffix(".bw")))
        assert bw.isBigWig() and bw.chroms() == genome.contigs
        got = [("z", s, e, v) for s, e, v in bw.intervals("z")]
        assert [r[:3] for r in got] == [r[:3] for r in rows]
        np.testing.assert_allclose([r[3] for r in got], [r[3] for r in rows], rtol=1e-6)
        bw.close()


def test_values_are_the_models_log_probabilities(tracked):
    """Each region fits one window: the track equals the runner's output on it (forward), and
    the mean track averages it with the reverse-complement pass read backwards."""
    tmp, model, genome = tracked
    runner = PerBaseForward(model)
    fwd, mean = _bedgraph(tmp / "t.logp.fwd.bedGraph"), _bedgraph(tmp / "t.logp.mean.bedGraph")

    def per_base(rows, start, end):
        out = np.full(end - start, np.nan)
        for _, s, e, v in rows:
            if start <= s < end:
                out[s - start:e - start] = v
        return out

    for c, s, e in REGIONS:
        ids = genome.fetch_encoded(c, s, e)[0]
        [f], [r] = runner.run([ids]), runner.run([reverse_complement(ids)])
        np.testing.assert_allclose(per_base(fwd, s, e), f.logp, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(per_base(mean, s, e), (f.logp + r.logp[::-1]) / 2,
                                   rtol=2e-5, atol=1e-6)
        probs = per_base(_bedgraph(tmp / "t.boundary_prob.s0.fwd.bedGraph"), s, e)
        np.testing.assert_allclose(probs, f.boundary_prob[0], rtol=2e-5, atol=1e-6)


def test_boundary_beds_split_by_stage_and_strand_sorted_and_indexed(tracked):
    tmp, model, genome = tracked
    runner = PerBaseForward(model)
    for strand, name in (("+", "plus"), ("-", "minus")):
        path = tmp / f"t.boundaries.s0.{name}.bed.gz"
        with pysam.TabixFile(str(path)) as tbx:
            assert tbx.contigs == ["z"]
            rows = [line.split("\t") for line in tbx.fetch("z")]
            starts = [int(r[1]) for r in rows]
            assert starts == sorted(starts) and {r[5] for r in rows} == {strand}
            assert all(r[3].startswith("s0:") for r in rows)
            # the index answers a region query with exactly the boundaries inside it
            inside = [int(x.split("\t")[1]) for x in tbx.fetch("z", 5000, 5300)]
        ids = genome.fetch_encoded("z", 5000, 5300)[0]
        if strand == "+":
            [o] = runner.run([ids])
            expected = 5000 + np.flatnonzero(o.chunk_start[0])
        else:  # reverse pass: base t of the reverse complement is forward base L-1-t
            [o] = runner.run([reverse_complement(ids)])
            expected = 5000 + np.sort(len(ids) - 1 - np.flatnonzero(o.chunk_start[0]))
        assert inside == expected.tolist()


def test_runs_merge_equal_values_and_skip_missing():
    values = np.array([1.0, 1.0, np.nan, 2.0, 2.0000001, 3.0, np.nan])
    starts, ends, nums, printed = runs(values)
    assert starts.tolist() == [0, 3, 5] and ends.tolist() == [2, 5, 6]
    assert printed == ["1", "2", "3"] and nums.tolist() == [1.0, 2.0, 3.0]


def test_overlapping_regions_are_refused(tmp_path):
    fasta = tmp_path / "ref.fa"
    fasta.write_text(CHR20_FASTA.read_text())
    bed = tmp_path / "r.bed"
    bed.write_text("z\t100\t400\nz\t300\t500\n")
    with pytest.raises(InputError, match=r"z:100-400 and z:300-500 overlap"):
        track_regions(Genome(fasta), bed)


def test_track_refuses_outputs_before_running(tracked, capsys):
    tmp, _, _ = tracked
    args = ["--model", str(tmp / "m"), "--fasta", str(tmp / "ref.fa"), "--bed",
            str(tmp / "r.bed"), "--out", str(tmp / "t"), "--no-progress"]
    assert main_track(args) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    # an output that is one of the inputs is refused even with --overwrite
    bed_named_like_output = tmp / "u.logp.fwd.bedGraph"
    bed_named_like_output.write_text("z\t100\t200\n")
    assert main_track(["--model", str(tmp / "m"), "--fasta", str(tmp / "ref.fa"), "--bed",
                       str(bed_named_like_output), "--out", str(tmp / "u"), "--overwrite"]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert bed_named_like_output.read_text() == "z\t100\t200\n"


def test_track_out_that_is_a_folder_is_refused(tracked, capsys, tmp_path):
    tmp, _, _ = tracked
    common = ["--model", str(tmp / "m"), "--fasta", str(tmp / "ref.fa"), "--bed",
              str(tmp / "r.bed"), "--no-progress"]
    folder = tmp_path / "d"
    folder.mkdir()
    for out in (f"{folder}/", str(folder), f"{tmp_path / 'new'}/"):
        assert main_track([*common, "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is a folder; give an output prefix" in err, err
    assert list(folder.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_track_name_with_a_space_is_quoted(tracked, tmp_path):
    tmp, _, _ = tracked
    out = tmp_path / "my run" / "chr z"
    assert main_track(["--model", str(tmp / "m"), "--fasta", str(tmp / "ref.fa"), "--bed",
                       str(tmp / "r.bed"), "--out", str(out), "--forward-only", "--no-bigwig",
                       "--no-progress"]) == 0
    first = (tmp_path / "my run" / "chr z.logp.fwd.bedGraph").read_text().splitlines()[0]
    assert first == 'track type=bedGraph name="chr z.logp.fwd"'


def test_sigterm_during_track_leaves_no_temporaries(tracked, tmp_path):
    """What a batch scheduler sends: the hidden temporaries (bedGraphs, bigWig stubs) are
    removed as on Ctrl-C, and the exit status is 128 + SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import time

    tmp, _, _ = tracked
    ready = tmp_path / "ready"
    out = tmp_path / "out"
    out.mkdir()
    code = f"""
import pathlib, sys, time
from hnet_dna.evaluation import tracks
from hnet_dna.evaluation.cli import main_track

def add(self, *args, **kwargs):  # every output is open: wait to be terminated
    pathlib.Path({str(ready)!r}).write_text("open")
    time.sleep(120)

tracks.TrackWriter.add = add
sys.exit(main_track(["--model", {str(tmp / "m")!r}, "--fasta", {str(tmp / "ref.fa")!r},
                     "--bed", {str(tmp / "r.bed")!r}, "--out", {str(out / "t")!r},
                     "--no-progress"]))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read() if proc.poll() is not None else "timeout"
        assert any(p.name.startswith(".t.") for p in out.iterdir())  # temporaries exist
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(out.iterdir()) == []
