"""Embeddings: sliding-window stitching, strand averaging alignment, pooling, boundaries BED."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from eval_data import random_ids

from hnet_dna.evaluation.embed_io import EmbeddingWriter, InputRecord
from hnet_dna.evaluation.embeddings import (
    Embedder,
    boundaries,
    plan_windows,
    read_boundaries_bed,
    write_boundaries_bed,
)
from hnet_dna.evaluation.runner import PerBaseForward
from hnet_dna.genomics.alphabet import reverse_complement
from hnet_dna.genomics.intervals import read_bed


@pytest.mark.parametrize("length,window,overlap", [(300, 100, 30), (101, 100, 99), (1000, 64, 0),
                                                   (50, 100, 10)])
def test_plan_windows_owns_every_base_once_with_left_context(length, window, overlap):
    plans = plan_windows(length, window, overlap)
    owned = np.concatenate([np.arange(p.own_start, p.end) for p in plans])
    np.testing.assert_array_equal(owned, np.arange(length))
    for i, p in enumerate(plans):
        assert p.end - p.start <= min(window, length)
        assert p.start <= p.own_start < p.end
        if i:  # exactly the context it needs: no base computed more often than that
            assert p.own_start - p.start == overlap
    assert sum(p.end - p.start for p in plans) == length + (len(plans) - 1) * overlap


def test_plan_windows_rejects_bad_overlap():
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(100, 10, 10)


def test_stitched_bases_come_from_their_owning_window(model2_f64):
    ids = random_ids(250, seed=11)
    runner = PerBaseForward(model2_f64)
    emb = next(Embedder(runner, ["final", "main"], window=100, overlap=30, per_base=True,
                        progress=False).embed([("s", ids)]))
    for p in plan_windows(250, 100, 30):
        alone = runner.run([ids[p.start:p.end]], ["final", "main"])[0]
        for d in ("final", "main"):
            np.testing.assert_allclose(emb.per_base[d][p.own_start:p.end],
                                       alone.features[d][p.own_start - p.start:], atol=1e-10)


def test_strand_average_is_aligned_per_base(model2_f64):
    """Averaging f(s) with flip(f(rc s)) per base makes s and rc(s) mirror images."""
    ids = random_ids(120, seed=12)
    emb = Embedder(PerBaseForward(model2_f64), ["final", "encoder.1", "main"], strand_average=True,
                   window=64, overlap=16, per_base=True, progress=False)
    fwd, rev = emb.embed([("f", ids), ("r", reverse_complement(ids))])
    for d in ("final", "encoder.1", "main"):
        np.testing.assert_allclose(fwd.per_base[d], rev.per_base[d][::-1], atol=1e-10)
        np.testing.assert_allclose(fwd.pooled[d], rev.pooled[d], atol=1e-10)
    # and it is not trivially symmetric without averaging
    single = Embedder(PerBaseForward(model2_f64), ["final"], per_base=True, progress=False)
    a, b = single.embed([("f", ids), ("r", reverse_complement(ids))])
    assert not np.allclose(a.per_base["final"], b.per_base["final"][::-1], atol=1e-3)


def test_shapes_and_pools(model2_f64):
    ids = random_ids(80, seed=13)
    out = {}
    for pool in ("mean", "chunk_mean", "last"):
        e = Embedder(PerBaseForward(model2_f64), ["final", "main"], pool=pool, per_base=True,
                     progress=False)
        out[pool] = next(e.embed([("s", ids)]))
        assert out[pool].pooled["final"].shape == (32,)
        assert out[pool].pooled["main"].shape == (64,)
        assert out[pool].per_base["main"].shape == (80, 64)
    pb = out["mean"].per_base
    np.testing.assert_allclose(out["mean"].pooled["main"], pb["main"].mean(0), rtol=1e-5)
    np.testing.assert_allclose(out["last"].pooled["final"], pb["final"][-1], rtol=1e-5)
    # at base resolution a chunk is a base; at 'main' each chunk counts once
    np.testing.assert_allclose(out["chunk_mean"].pooled["final"], out["mean"].pooled["final"])
    chunk_vectors = np.unique(pb["main"], axis=0)  # one vector per stage-2 chunk
    np.testing.assert_allclose(out["chunk_mean"].pooled["main"], chunk_vectors.mean(0),
                               rtol=1e-5)
    assert not np.allclose(out["chunk_mean"].pooled["main"], out["mean"].pooled["main"])


def test_embedder_validates_depth(model1):
    with pytest.raises(ValueError, match="unknown depth"):
        Embedder(PerBaseForward(model1), ["decoder.3"])


def test_boundaries_bed_round_trip(model2_f64, tmp_path):
    ids = random_ids(150, seed=14)
    e = Embedder(PerBaseForward(model2_f64), ["final"], strand_average=True, window=64,
                 overlap=16, progress=False)
    emb = next(e.embed([("s", ids)]))
    recs = boundaries(emb, "chrZ", offset=1000)
    fwd0 = [b for b in recs if b.stage == 0 and b.strand == "+"]
    np.testing.assert_array_equal([b.position - 1000 for b in fwd0],
                                  np.flatnonzero(emb.strands[0].chunk_start[0]))
    assert {b.stage for b in recs} == {0, 1} and {b.strand for b in recs} == {"+", "-"}
    assert all(b.prob > 0.5 for b in recs)  # a boundary is p > 0.5
    path = tmp_path / "b.bed"
    assert write_boundaries_bed(path, recs) == len(recs)
    back = read_boundaries_bed(path)
    key = lambda b: (b.position, b.stage, b.strand)  # noqa: E731
    assert sorted(map(key, back)) == sorted(map(key, recs))
    probs = {key(b): b.prob for b in recs}
    assert all(abs(b.prob - probs[key(b)]) <= 5e-5 for b in back)
    # a plain BED reader accepts the track: 1-base intervals on chrZ
    ivs = read_bed(path)
    assert len(ivs) == len(recs) and all(len(iv) == 1 and iv.contig == "chrZ" for iv in ivs)


def test_read_boundaries_bed_names_bad_line(tmp_path):
    path = tmp_path / "bad.bed"
    path.write_text("track name=x\nchr1\t5\t6\tnot-a-stage\t500\t+\n")
    with pytest.raises(ValueError, match=r"bad.bed:2"):
        read_boundaries_bed(path)


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_embedding_writer_round_trip(model1, tmp_path, suffix):
    seqs = [random_ids(n, seed=n) for n in (30, 45)]
    e = Embedder(PerBaseForward(model1), ["final", "main"], per_base=True, progress=False)
    embs = list(e.embed([(f"s{i}", s) for i, s in enumerate(seqs)]))
    out = tmp_path / f"emb{suffix}"
    w = EmbeddingWriter(out, {d: e.dim(d) for d in e.depths}, per_base_total=75)
    for i, emb in enumerate(embs):
        w.add(InputRecord(f"s{i}", "c", 10 * i, 10 * i + emb.length), emb)
    w.close()
    if suffix == ".parquet":
        df = pl.read_parquet(out)
        assert df["name"].to_list() == ["s0", "s1"] and df["offset"].to_list() == [0, 30]
        np.testing.assert_allclose(np.stack(df["emb_main"].to_numpy()),
                                   np.stack([x.pooled["main"] for x in embs]))
    else:
        np.testing.assert_allclose(np.load(tmp_path / "emb.final.npy"),
                                   np.stack([x.pooled["final"] for x in embs]))
        index = pl.read_csv(tmp_path / "emb.index.tsv", separator="\t")
        assert index["length"].to_list() == [30, 45]
    per_base = np.load(tmp_path / "emb.main.per_base.npy")
    assert per_base.shape == (75, 64)
    np.testing.assert_allclose(per_base[30:], embs[1].per_base["main"])
