"""Order-k Markov baselines against a direct per-position count."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from hnet_dna.training.markov import MarkovModel, markov_bits_per_base


def reference_bits(train: list[np.ndarray], window: np.ndarray, order: int) -> list[float]:
    """Dictionary counts with the same in-window back-off, one position at a time."""
    counts: Counter = Counter()

    def context(seq: np.ndarray, t: int) -> tuple[int, ...]:
        ctx: list[int] = []
        for j in range(t - 1, -1, -1):
            if len(ctx) == order or seq[j] >= 4:
                break
            ctx.append(int(seq[j]))
        return tuple(ctx)  # most recent first

    for seq in train:
        for t in range(len(seq)):
            if seq[t] < 4:
                full = context(seq, t)
                for o in range(len(full) + 1):
                    counts[(full[:o], int(seq[t]))] += 1
    out = []
    for t in range(len(window)):
        if window[t] >= 4:
            continue
        ctx = context(window, t)
        total = sum(counts[(ctx, b)] for b in range(4))
        out.append(-math.log2((counts[(ctx, int(window[t]))] + 0.5) / (total + 2.0)))
    return out


def test_matches_reference_with_n_and_padding():
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 4, 200) for _ in range(3)]
    train[0][50] = 4  # an N breaks the context
    window = rng.integers(0, 4, 60)
    window[[10, 11]] = 4
    window[-5:] = 5  # right padding
    for order in (0, 1, 3):
        model = MarkovModel(order).fit(train)
        bits = model.bits(window)
        scored = window < 4
        assert np.isnan(bits[~scored]).all()
        assert bits[scored] == pytest.approx(reference_bits(train, window, order))


def test_truncated_equals_fitting_the_lower_order():
    rng = np.random.default_rng(1)
    train = [rng.integers(0, 4, 300)]
    window = rng.integers(0, 4, 80)
    assert MarkovModel(4).fit(train).truncated(2).bits(window) == pytest.approx(
        MarkovModel(2).fit(train).bits(window)
    )


def test_learns_a_deterministic_sequence():
    repeat = np.tile(np.array([0, 1, 2, 3]), 500)
    result = markov_bits_per_base([repeat], [repeat[:400]], [0, 1])
    assert result[0] == pytest.approx(2.0, abs=1e-3)  # uniform composition
    assert result[1] < 0.05  # the previous base determines the next


def test_order_must_be_non_negative():
    with pytest.raises(ValueError, match="Markov order must be >= 0"):
        MarkovModel(-1)


def test_blocks_of_windows_equal_window_by_window():
    rng = np.random.default_rng(2)
    train = [rng.integers(0, 5, 100) for _ in range(20)]  # with some N (id 4)
    evals = [rng.integers(0, 4, 50) for _ in range(7)]
    model = MarkovModel(3).fit(train[:1])
    for window in train[1:]:
        model.fit([window])
    one_by_one = np.concatenate([model.bits(w) for w in evals])
    expected = float(np.nanmean(one_by_one))
    assert markov_bits_per_base(train, evals, [3])[3] == pytest.approx(expected, rel=1e-12)


def test_fit_windows_are_bounded_and_spread_evenly(tmp_path):
    from hnet_dna.genomics.corpora import corpus_from_regions
    from hnet_dna.genomics.fasta import Genome
    from hnet_dna.genomics.intervals import Interval
    from hnet_dna.training.data import split_windows

    rng = np.random.default_rng(0)
    lengths = {"a": 40_000, "b": 10_000, "c": 30_007}
    fa = tmp_path / "g.fa"
    fa.write_text("".join(f">{k}\n" + "".join(rng.choice(list("ACGT"), n)) + "\n"
                          for k, n in lengths.items()))
    g = Genome(fa)
    corpus = corpus_from_regions("g", {"train": [(g, [Interval(k, 0, n) for k, n in
                                                      lengths.items()])]})
    window = 100
    rows, bases, split = split_windows(corpus, "train", window)
    full = [r.numpy() for r in rows]
    assert bases == split == 80_007 and len(full) == 400 + 100 + 301
    rows, bases, split = split_windows(corpus, "train", window, max_bases=80_007)
    assert bases == split and len(list(rows)) == len(full)  # within the bound: all of it
    rows, bases, split = split_windows(corpus, "train", window, max_bases=8_000)
    sample = [r.numpy() for r in rows]
    assert (bases, split, len(sample)) == (8_000, 80_007, 80)
    # every 10th tile of the split, in order: each contig in proportion to its length
    for k, row in enumerate(sample):
        np.testing.assert_array_equal(row, full[k * len(full) // 80])
