"""Order-k Markov reference models for bits-per-base numbers that mean something.

A base is predicted from the k bases before it *within the same window*, exactly the context a
causal LM fed ``[BOS, b0 ..]`` has; where fewer than k ACGT bases precede it (window start, after
an N) the model backs off to the longest available order. Probabilities use the
Krichevsky-Trofimov estimator (add 1/2), so unseen contexts cost 2 bits, not infinity.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

NUM_BASES = 4  # ids 0..3 are A, C, G, T; anything else (N, padding) is not a base
_SEPARATOR = np.array([NUM_BASES], dtype=np.int64)


def _contexts(window: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Per position: order used (``min(order, ACGT run before it)``) and the context code.

    The code packs the preceding ``order`` bases with the most recent one least significant, so
    the code of any lower order o is ``code % 4**o``.
    """
    window = np.asarray(window, dtype=np.int64)
    is_base = window < NUM_BASES
    n = len(window)
    # ACGT bases immediately before each position: distance back to the last non-base.
    idx = np.arange(n)
    last_break = np.maximum.accumulate(np.where(~is_base, idx, -1))
    run_before = idx - np.concatenate([[-1], last_break[:-1]]) - 1
    run_before[0] = 0
    used = np.minimum(run_before, order)
    digits = np.where(is_base, window, 0)
    code = np.zeros(n, dtype=np.int64)
    for lag in range(1, order + 1):
        code[lag:] += digits[:-lag] * NUM_BASES ** (lag - 1)
    return used, code % NUM_BASES**used


class MarkovModel:
    """Counts of next base given the previous ``o`` bases, for every order o <= ``order``."""

    def __init__(self, order: int) -> None:
        if order < 0:
            raise ValueError(f"Markov order must be >= 0, got {order}")
        self.order = order
        # counts[o][context code, next base], for every order o <= order
        self.counts = [np.zeros((NUM_BASES**o, NUM_BASES)) for o in range(order + 1)]

    def fit(self, windows: Iterable[np.ndarray]) -> MarkovModel:
        """Add the counts of every window (contexts never reach across windows)."""
        for window in joined(windows):
            used, code = _contexts(window, self.order)
            is_base = window < NUM_BASES
            for o in range(self.order + 1):
                # Every order o up to the available context learns from this position.
                sel = is_base & (used >= o)
                flat = (code[sel] % NUM_BASES**o) * NUM_BASES + window[sel]
                size = self.counts[o].size
                self.counts[o] += np.bincount(flat, minlength=size).reshape(self.counts[o].shape)
        return self

    def truncated(self, order: int) -> MarkovModel:
        """The order-``order`` model: lower-order counts do not depend on the fitted maximum."""
        if not 0 <= order <= self.order:
            raise ValueError(f"order {order} outside 0..{self.order}")
        model = MarkovModel.__new__(MarkovModel)
        model.order = order
        model.counts = self.counts[: order + 1]
        return model

    def bits(self, window: np.ndarray) -> np.ndarray:
        """-log2 p(base) at every position (NaN where the target is not ACGT)."""
        window = np.asarray(window, dtype=np.int64)
        used, code = _contexts(window, self.order)
        out = np.full(len(window), np.nan)
        is_base = window < NUM_BASES
        for o in range(self.order + 1):
            sel = is_base & (used == o)
            rows = self.counts[o][code[sel]]
            prob = (rows[np.arange(len(rows)), window[sel]] + 0.5) / (rows.sum(1) + 0.5 * NUM_BASES)
            out[sel] = -np.log2(prob)
        return out


def joined(windows: Iterable[np.ndarray], max_tokens: int = 1 << 22) -> Iterator[np.ndarray]:
    """Windows concatenated into blocks of about ``max_tokens``, each followed by a separator.

    The separator is not a base, so no context crosses it: one vectorised pass over a block
    equals a pass per window, without the per-window overhead (streams any corpus size).
    """
    block: list[np.ndarray] = []
    size = 0
    for window in windows:
        block += [np.asarray(window, dtype=np.int64), _SEPARATOR]
        size += len(window) + 1
        if size >= max_tokens:
            yield np.concatenate(block)
            block, size = [], 0
    if block:
        yield np.concatenate(block)


def markov_bits_per_base(
    train_windows: Iterable[np.ndarray], eval_windows: Iterable[np.ndarray], orders: Iterable[int]
) -> dict[int, float]:
    """Held-out bits per base of Markov models of each order (fit once at the largest order)."""
    orders = sorted(set(orders))
    if not orders:
        raise ValueError("no Markov orders given")
    full = MarkovModel(orders[-1]).fit(train_windows)
    models = {order: full.truncated(order) for order in orders}
    total_bits = dict.fromkeys(orders, 0.0)
    count = 0
    for block in joined(eval_windows):
        count += int((block < NUM_BASES).sum())
        for order, model in models.items():
            total_bits[order] += float(np.nansum(model.bits(block)))
    return {order: total_bits[order] / count if count else float("nan") for order in orders}
