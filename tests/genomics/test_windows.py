import logging
import re

import numpy as np
import pytest
import torch
from Bio.Seq import Seq
from gtestdata import FLY, SCER, SCER_CONTIG
from torch.utils.data import DataLoader

from hnet_dna.genomics import alphabet as ab
from hnet_dna.genomics.fasta import Genome
from hnet_dna.genomics.intervals import Interval, whole_contigs
from hnet_dna.genomics.windows import WindowDataset

DSEC, DTEI = "dsec4_1215000_1228000", "dtei4_95000_106000"
KEYS = {"tokens", "loss_weight", "softmasked", "source", "contig", "start", "strand"}


@pytest.fixture(scope="module")
def fly():
    return Genome(FLY, name="fly")


def expected(seq: str, strand: int, window: int, softmask_weight: float):
    """Oracle from the raw string: Biopython reverse complement (case kept), then per base."""
    if strand == -1:
        seq = str(Seq(seq).reverse_complement())
    n = len(seq)
    tokens = [ab.BASES.index(c.upper()) for c in seq] + [ab.PAD] * (window - n)
    weight = [0.0 if c in "Nn" else softmask_weight if c.islower() else 1.0 for c in seq]
    soft = [c.islower() for c in seq] + [False] * (window - n)
    return tokens, weight + [0.0] * (window - n), soft


def check_item(item, seqs, window, softmask_weight):
    assert set(item) == KEYS
    assert item["tokens"].dtype == torch.int64 and item["tokens"].shape == (window,)
    assert item["loss_weight"].dtype == torch.float32
    assert item["softmasked"].dtype == torch.bool
    n = int((item["tokens"] != ab.PAD).sum())
    raw = seqs[item["contig"]][item["start"]:item["start"] + n]
    tokens, weight, soft = expected(raw, item["strand"], window, softmask_weight)
    assert item["tokens"].tolist() == tokens
    np.testing.assert_allclose(item["loss_weight"].numpy(), weight)
    assert item["softmasked"].tolist() == soft
    return n


@pytest.mark.parametrize("window", [1000, 1024])
def test_tile_covers_every_base_once_on_both_strands(fly, fly_seqs, window):
    ds = WindowDataset([(fly, whole_contigs(fly.contigs))], window, mode="tile",
                       strands=(1, -1), softmask_weight=0.25)
    items = list(ds)
    assert len(items) == len(ds) == 2 * (-(-13000 // window) + -(-11000 // window))
    covered = {c: np.zeros(len(s), dtype=int) for c, s in fly_seqs.items()}
    for item in items:
        assert item["source"] == "fly"
        n = check_item(item, fly_seqs, window, 0.25)
        covered[item["contig"]][item["start"]:item["start"] + n] += 1
    assert all((c == 2).all() for c in covered.values())  # once per strand
    # tiles come in genome order, each followed by its reverse strand
    assert [(i["contig"], i["start"], i["strand"]) for i in items[:4]] == [
        (DSEC, 0, 1), (DSEC, 0, -1), (DSEC, window, 1), (DSEC, window, -1)]


def test_random_windows_are_real_uniform_and_reproducible(fly, fly_seqs):
    ivs = [Interval(DSEC, 0, 2000), Interval(DTEI, 0, 1100)]
    ds = WindowDataset([(fly, ivs)], 1000, samples_per_epoch=2000, rc_prob=0.5,
                       softmask_weight=0.1, seed=7)
    items = list(ds)
    assert len(items) == len(ds) == 2000
    for item in items[:50]:
        check_item(item, fly_seqs, 1000, 0.1)
    starts = [(i["contig"], i["start"]) for i in items]
    assert all(0 <= s <= 1000 if c == DSEC else 0 <= s <= 100 for c, s in starts)
    # uniform over the 1001 + 101 valid window starts, not over intervals (which would be 1/2)
    n_dtei = sum(c == DTEI for c, _ in starts)
    assert 120 < n_dtei < 250  # expectation 2000 * 101 / 1102 = 183
    n_minus = sum(i["strand"] == -1 for i in items)
    assert 900 < n_minus < 1100
    assert [(i["contig"], i["start"], i["strand"]) for i in ds] == [
        (i["contig"], i["start"], i["strand"]) for i in items]  # same seed, same epoch
    ds.set_epoch(1)
    assert [i["start"] for i in ds] != [i["start"] for i in items]


@pytest.mark.parametrize("preload", [True, False])
def test_tile_max_n_fraction_skips_are_counted_and_logged(fly, fly_seqs, caplog, preload):
    with caplog.at_level(logging.INFO, logger="hnet_dna.genomics.windows"):
        ds = WindowDataset([(fly, whole_contigs(fly.contigs))], 100, mode="tile",
                           max_n_fraction=0.5, preload=preload)
    # decided at construction, so len() is exact and a saved position means the same tiles
    assert ds.skipped == 2 and len(ds) == 240 - 2
    assert "skipped 2 window(s) with N fraction > 0.5" in caplog.text
    items = list(ds)
    too_many_n = {(c, a) for c, s in fly_seqs.items() for a in range(0, len(s), 100)
                  if s[a:a + 100].count("N") > 50}
    assert len(too_many_n) == 2  # one 100-N gap per record straddles two tiles unevenly
    assert len(items) == 238
    assert {(c, a) for c, s in fly_seqs.items() for a in range(0, len(s), 100)} - {
        (i["contig"], i["start"]) for i in items} == too_many_n
    assert all(item["tokens"].eq(ab.N).sum() <= 50 for item in items)


@pytest.mark.parametrize("preload", [True, False])
def test_random_max_n_fraction_redraws(fly, fly_seqs, preload):
    # 6300-6557 holds the 100-N gap 6357-6457: most 100-base windows there have > 20 % N
    ivs = [Interval(DSEC, 6300, 6557)]
    ds = WindowDataset([(fly, ivs)], 100, samples_per_epoch=300, max_n_fraction=0.2, seed=2,
                       preload=preload)
    items = list(ds)
    assert len(items) == 300 and ds.skipped > 300  # about 3/4 of the first draws fail
    for item in items:
        raw = fly_seqs[DSEC][item["start"]:item["start"] + 100]
        assert raw.count("N") <= 20
    plain = WindowDataset([(fly, ivs)], 100, samples_per_epoch=300, seed=2, preload=preload)
    kept = [a["start"] == b["start"] for a, b in zip(items, plain, strict=True)]
    assert 30 < sum(kept) < 150  # accepted first draws are the unfiltered stream's windows


def test_random_mode_gives_up_on_all_n_regions(fly):
    ds = WindowDataset([(fly, [Interval(DSEC, 6357, 6457)])], 50, samples_per_epoch=3,
                       max_n_fraction=0.1)
    with pytest.raises(RuntimeError, match=re.escape(
            "sample 0: no window with N fraction <= 0.1 in 1001 draws; restrict the intervals "
            "to N-free regions")):
        list(ds)


def test_short_intervals_are_logged_in_random_mode(fly, caplog):
    ivs = [Interval(DSEC, 0, 500), Interval(DSEC, 1000, 3000)]
    with caplog.at_level(logging.WARNING):
        ds = WindowDataset([(fly, ivs)], 1000, samples_per_epoch=10)
    assert "left out 1 interval(s) shorter than the window (500 bases)" in caplog.text
    assert all(1000 <= item["start"] <= 2000 for item in ds)
    with pytest.raises(ValueError, match=re.escape(
            "no interval can hold a window of 1000 (random mode)")):
        WindowDataset([(fly, ivs[:1])], 1000, samples_per_epoch=10)


def test_intervals_are_checked_against_the_genome(fly):
    with pytest.raises(IndexError, match=re.escape(
            f"{fly!r}: interval {Interval(DSEC, 0, 13001)} beyond record length 13000")):
        WindowDataset([(fly, [Interval(DSEC, 0, 13001)])], 10, mode="tile")
    with pytest.raises(KeyError, match="no record 'chr4'"):
        WindowDataset([(fly, [Interval("chr4", 0, 10)])], 10, mode="tile")


def test_ranks_partition_tiles(fly):
    regions = [(fly, whole_contigs(fly.contigs))]
    key = lambda it: (it["contig"], it["start"])  # noqa: E731
    full = [key(i) for i in WindowDataset(regions, 512, mode="tile")]
    parts = [[key(i) for i in WindowDataset(regions, 512, mode="tile", rank=r, world_size=3)]
             for r in range(3)]
    assert sorted(sum(parts, [])) == sorted(full) and len(set(full)) == len(full)
    assert [len(p) for p in parts] == [len(WindowDataset(regions, 512, mode="tile", rank=r,
                                                         world_size=3)) for r in range(3)]


def test_dataloader_workers_and_collate(fly, fly_seqs):
    regions = [(fly, whole_contigs(fly.contigs))]
    tile = WindowDataset(regions, 1000, mode="tile")
    seen = []
    for batch in DataLoader(tile, batch_size=5, num_workers=2):
        assert batch["tokens"].shape[1] == 1000 and batch["tokens"].dtype == torch.int64
        assert isinstance(batch["contig"], list) and batch["start"].dtype == torch.int64
        seen += list(zip(batch["contig"], batch["start"].tolist(), strict=True))
    assert sorted(seen) == sorted([(DSEC, a) for a in range(0, 13000, 1000)]
                                  + [(DTEI, a) for a in range(0, 11000, 1000)])
    rand = WindowDataset(regions, 1000, samples_per_epoch=21, seed=3, rc_prob=0.5)
    single = [(i["contig"], i["start"], i["strand"]) for i in rand]

    def through(loader):
        return [row for b in loader for row in zip(b["contig"], b["start"].tolist(),
                                                   b["strand"].tolist(), strict=True)]

    # workers share the stream by position: the same 21 windows, in another order unless the
    # dataset knows the batch size (then the DataLoader returns the stream in order)
    got = through(DataLoader(rand, batch_size=4, num_workers=2))
    assert sorted(got) == sorted(single) and got != single
    rand.batch_size = 4
    assert through(DataLoader(rand, batch_size=4, num_workers=2)) == single


def test_argument_errors(fly):
    regions = [(fly, whole_contigs(fly.contigs))]
    with pytest.raises(ValueError, match="random mode needs samples_per_epoch >= 1"):
        WindowDataset(regions, 10)
    with pytest.raises(ValueError, match=r"rc_prob must be in \[0, 1\], got 1.5"):
        WindowDataset(regions, 10, samples_per_epoch=1, rc_prob=1.5)
    with pytest.raises(ValueError, match=re.escape("no interval to tile (tile mode)")):
        WindowDataset([(fly, [])], 10, mode="tile")
    with pytest.raises(ValueError, match="duplicate source names"):
        WindowDataset(regions * 2, 10, mode="tile")
    overlapping = [Interval(DSEC, 0, 100), Interval(DTEI, 50, 60), Interval(DSEC, 99, 200)]
    with pytest.raises(ValueError, match=re.escape(
            f"{fly!r}: tile mode needs disjoint intervals, {overlapping[0]} overlaps "
            f"{overlapping[2]}")):
        WindowDataset([(fly, overlapping)], 10, mode="tile")
    assert WindowDataset([(fly, overlapping)], 10, samples_per_epoch=1).num_positions == 91 + 1 + 92


@pytest.mark.parametrize("backend", ["mmap", "pysam", "pyfaidx", "memory"])
def test_random_windows_on_bgzip_match_pysam(backend, scer_seq, tmp_path):
    g = Genome(SCER, backend=backend, index_dir=tmp_path)
    ivs = [Interval(SCER_CONTIG, 1000, 200_000)]
    kw = dict(samples_per_epoch=200, rc_prob=0.5, softmask_weight=0.1, seed=5)
    streamed = list(WindowDataset([(g, ivs)], 1024, preload=False, **kw))
    preloaded = list(WindowDataset([(g, ivs)], 1024, preload=True, **kw))
    for a, b in zip(streamed, preloaded, strict=True):  # same windows whichever way they are read
        assert (a["start"], a["strand"]) == (b["start"], b["strand"])
        for key in ("tokens", "loss_weight", "softmasked"):
            assert torch.equal(a[key], b[key])
    for item in streamed:
        assert 1000 <= item["start"] <= 200_000 - 1024
        check_item(item, {SCER_CONTIG: scer_seq}, 1024, 0.1)  # pysam read is the oracle


def test_minus_strand_is_reverse_complement_of_plus(fly):
    regions = [(fly, whole_contigs(fly.contigs))]
    items = list(WindowDataset(regions, 700, mode="tile", strands=(1, -1), softmask_weight=0.3))
    for plus, minus in zip(items[::2], items[1::2], strict=True):
        assert (plus["contig"], plus["start"]) == (minus["contig"], minus["start"])
        n = int(plus["tokens"].ne(ab.PAD).sum())
        # RC twice is the identity, with soft-mask flags and weights carried along
        assert torch.equal(ab.reverse_complement(minus["tokens"][:n]), plus["tokens"][:n])
        assert torch.equal(minus["softmasked"][:n].flip(0), plus["softmasked"][:n])
        assert torch.equal(minus["loss_weight"][:n].flip(0), plus["loss_weight"][:n])
        assert minus["tokens"][n:].eq(ab.PAD).all() and minus["loss_weight"][n:].eq(0).all()


@pytest.mark.parametrize("softmask_weight", [0.0, 0.1, 1.0])
def test_softmask_weights(fly, fly_seqs, softmask_weight):
    ds = WindowDataset([(fly, [Interval(DTEI, 5000, 7000)])], 1000, mode="tile",
                       softmask_weight=softmask_weight)
    seq = fly_seqs[DTEI][5000:7000]
    weights = torch.cat([item["loss_weight"] for item in ds]).tolist()
    expect = [0.0 if c == "N" else softmask_weight if c.islower() else 1.0 for c in seq]
    assert sum(c.islower() for c in seq) > 500 and seq.count("N") == 100
    np.testing.assert_allclose(weights, expect)
