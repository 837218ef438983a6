"""Sharding over ranks x DataLoader workers, and mid-epoch resumption (state_dict)."""

import re
from collections import Counter

import pytest
import torch
from gtestdata import FLY
from torch.utils.data import DataLoader

from hnet_dna.genomics.fasta import Genome
from hnet_dna.genomics.intervals import whole_contigs
from hnet_dna.genomics.loader import WindowLoader
from hnet_dna.genomics.windows import WindowDataset


@pytest.fixture(scope="module")
def regions():
    fly = Genome(FLY, name="fly")
    return [(fly, whole_contigs(fly.contigs))]


def key(item):
    return item["contig"], item["start"], item["strand"]


def rows(batches):
    """(contig, start, strand) of every row of collated batches, in order."""
    return [row for b in batches for row in zip(b["contig"], b["start"].tolist(),
                                                 b["strand"].tolist(), strict=True)]


def random_ds(regions, **kw):
    return WindowDataset(regions, 256, samples_per_epoch=203, rc_prob=0.5,
                         max_n_fraction=0.05, seed=11, **kw)


def tile_ds(regions, **kw):
    return WindowDataset(regions, 500, mode="tile", strands=(1, -1), max_n_fraction=0.15, **kw)


@pytest.mark.parametrize("make", [random_ds, tile_ds])
def test_two_ranks_by_two_workers_partition_the_single_process_stream(regions, make):
    single = [key(i) for i in make(regions)]
    if make is tile_ds:  # every tile exactly once per strand, nothing twice
        assert len(set(single)) == len(single) == 2 * (26 + 22 - 2)  # 2 gap tiles out
        units = [single[i:i + 2] for i in range(0, len(single), 2)]  # a tile, both strands
    else:
        units = [[x] for x in single]  # a sample
    shards = []
    for rank in range(2):
        ds = make(regions, rank=rank, world_size=2, batch_size=5)
        shards.append(rows(DataLoader(ds, batch_size=5, num_workers=2)))
        assert len(shards[-1]) == len(ds)
        # rank r owns units r, r + 2, ...: random samples are drawn from the sample index,
        # so a rank sees exactly those windows of the single-process run (N-filter
        # replacements included), in order
        assert shards[-1] == [x for unit in units[rank::2] for x in unit]
    assert Counter(shards[0]) + Counter(shards[1]) == Counter(single)
    # and each rank's stream is deterministic
    again = DataLoader(make(regions, rank=1, world_size=2, batch_size=5), batch_size=5,
                       num_workers=2)
    assert rows(again) == shards[1]


def test_random_streams_of_ranks_are_disjoint_samples(regions):
    # same seed, different rank: different sample indices, hence different draws
    a = [key(i) for i in random_ds(regions, rank=0, world_size=2)]
    b = [key(i) for i in random_ds(regions, rank=1, world_size=2)]
    assert len(a) == 102 and len(b) == 101
    assert sum(x == y for x, y in zip(a, b, strict=False)) < 5  # not the same stream


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_order_does_not_depend_on_workers(regions, workers):
    ds = random_ds(regions)
    expected = [key(i) for i in ds]
    loader = WindowLoader(ds, batch_size=8, num_workers=workers)
    batches = list(loader)
    assert [len(b["tokens"]) for b in batches] == [8] * 25 + [3]
    assert rows(batches) == expected
    assert loader.state_dict()["consumed"] == 203
    dropping = WindowLoader(random_ds(regions), batch_size=8, num_workers=workers, drop_last=True)
    assert len(dropping) == 25 and rows(dropping) == expected[:200]
    # the whole-batch path gives what default_collate gives on the items
    ref = next(iter(DataLoader(random_ds(regions, batch_size=8), batch_size=8)))
    assert set(ref) == set(batches[0])
    for name, value in ref.items():
        got = batches[0][name]
        assert got == value if isinstance(value, list) else torch.equal(got, value)


@pytest.mark.parametrize(("make", "before", "after"),
                         [(random_ds, 0, 2), (random_ds, 2, 0), (tile_ds, 2, 2)])
def test_resume_mid_epoch_yields_the_identical_remaining_stream(regions, make, before, after):
    full = WindowLoader(make(regions), batch_size=7, num_workers=before)
    full.set_epoch(3)
    expected = rows(full)

    run = WindowLoader(make(regions), batch_size=7, num_workers=before)
    run.set_epoch(3)
    it = iter(run)
    taken = rows([next(it) for _ in range(5)])
    state = run.state_dict()
    del it  # the interrupted run stops here
    assert taken == expected[:35] and state["epoch"] == 3 and state["consumed"] == 35

    resumed = WindowLoader(make(regions), batch_size=7, num_workers=after)
    resumed.load_state_dict(state)
    assert len(resumed) == -(-(len(expected) - 35) // 7)
    assert rows(resumed) == expected[35:]  # exactly what the interrupted run would have seen
    resumed.set_epoch(4)  # the next epoch starts from its beginning
    assert resumed.dataset.start_position == 0 and len(rows(resumed)) == len(expected)


def test_in_process_state_dict_counts_taken_items(regions):
    ds = random_ds(regions)
    ds.set_epoch(1)
    expected = [key(i) for i in ds]
    assert ds.skipped > 0  # the stream includes N-filter replacements
    it = iter(ds)
    head = [key(next(it)) for _ in range(50)]
    state = ds.state_dict()
    assert state["consumed"] == 50 and head == expected[:50]
    other = random_ds(regions)
    other.load_state_dict(state)
    assert len(other) == 203 - 50
    assert [key(i) for i in other] == expected[50:]


def test_trainer_may_pass_its_own_count(regions):
    ds = random_ds(regions, batch_size=4)
    expected = rows(DataLoader(ds, batch_size=4, num_workers=2))
    state = ds.state_dict(consumed=3 * 4)  # 3 batches taken from a 2-worker DataLoader
    fresh = random_ds(regions, batch_size=4)
    fresh.load_state_dict(state)
    assert rows(DataLoader(fresh, batch_size=4, num_workers=2)) == expected[12:]


def test_state_mismatches_are_refused(regions):
    state = random_ds(regions).state_dict(consumed=10)
    with pytest.raises(ValueError, match=re.escape(
            "state saved for a different dataset (saved, now): {'seed': (11, 12)}")):
        WindowDataset(regions, 256, samples_per_epoch=203, rc_prob=0.5, max_n_fraction=0.05,
                      seed=12).load_state_dict(state)
    with pytest.raises(ValueError, match="state saved with world_size=1, this run has 2"):
        random_ds(regions, rank=0, world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match=re.escape(
            "consumed=204 outside this rank's stream of 203 item(s)")):
        random_ds(regions).state_dict(consumed=204)
    with pytest.raises(ValueError, match="persistent_workers"):
        WindowLoader(random_ds(regions), 4, num_workers=1, persistent_workers=True)


def test_epochs_draw_different_windows(regions):
    ds = random_ds(regions)
    first = [key(i) for i in ds]
    ds.set_epoch(1)
    second = [key(i) for i in ds]
    assert sum(a == b for a, b in zip(first, second, strict=True)) < 5
    ds.set_epoch(0)
    assert [key(i) for i in ds] == first


@pytest.mark.parametrize("stop", [10, 26, 30])  # mid-epoch, at its very end, in the next one
def test_endless_stream_resumes_across_epochs_without_rereading(regions, stop):
    """next(loader) runs on into the next epoch; a restored loader reads only what follows."""
    full = WindowLoader(random_ds(regions), batch_size=8)
    expected = [rows([next(full)]) for _ in range(40)]  # 26 batches per epoch (203 windows)
    assert full.epoch == 1 and sum(map(len, expected[:26])) == 203

    run = WindowLoader(random_ds(regions), batch_size=8)
    for _ in range(stop):
        next(run)
    state = run.state_dict()

    resumed = WindowLoader(random_ds(regions), batch_size=8)
    resumed.load_state_dict(state)
    index, reads = resumed.dataset._index, []
    draw = index.random  # windows of the given samples: count them
    index.random = lambda samples, draws: (reads.append(len(samples)), draw(samples, draws))[1]
    got = [rows([next(resumed)]) for _ in range(40 - stop)]
    assert got == expected[stop:]
    assert sum(reads) == sum(map(len, expected[stop:]))


def test_a_position_counted_in_batches_is_mapped_or_refused(regions):
    full = WindowLoader(random_ds(regions), batch_size=8)
    full.set_epoch(2)
    expected = rows(full)
    resumed = WindowLoader(random_ds(regions), batch_size=8)
    resumed.load_state_dict({"epoch": 2, "taken": 5, "num_workers": 0})
    assert resumed.epoch == 2 and rows(resumed) == expected[40:]
    with pytest.raises(ValueError, match=r"5 batch\(es\) read with num_workers=2, whose order"):
        resumed.load_state_dict({"epoch": 2, "taken": 5, "num_workers": 2})
