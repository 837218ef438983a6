"""Random window draws as a pure function of ``(seed, epoch, sample index)``.

Sample ``g`` of an epoch is drawn from block ``g // BLOCK``, whose generator is seeded with
``(seed, epoch, 0, block)``; a draw rejected by the N filter is replaced from a generator seeded
with ``(seed, epoch, 1, g)``. So any process can compute any sample without drawing the ones
before it: ranks and DataLoader workers take disjoint sample indices, a resumed run skips to
its position in O(1), and the union over all shards is exactly the single-process stream.

A draw picks a window start uniformly over all valid starts (proportional to sequence length),
or, with source weights, first a source with those probabilities and then a start uniformly
within it (a mixture of genomes, e.g. several species).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

BLOCK = 1024  # samples per generator: amortises generator set-up (~20 us) over many draws
_BLOCK_STREAM, _RETRY_STREAM = 0, 1


class RandomDraws:
    """Window starts (global position index) and strands for one epoch.

    ``lo[s]``, ``counts[s]``: the range of position indices of source ``s``. ``probs``: source
    probabilities, or ``None`` for uniform over all positions.
    """

    def __init__(self, seed: int, epoch: int, lo: np.ndarray, counts: np.ndarray,
                 probs: np.ndarray | None, rc_prob: float) -> None:
        self.key = (int(seed), int(epoch))
        self.lo, self.counts, self.probs = lo, counts, probs
        self.total = int(counts.sum())
        self.rc_prob = rc_prob

    def _draw(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self.probs is None:
            pos = rng.integers(0, self.total, size=size)
        else:
            src = rng.choice(len(self.probs), size=size, p=self.probs)
            pos = self.lo[src] + rng.integers(0, self.counts[src])
        # drawn even when rc_prob is 0 so the positions do not depend on rc_prob
        minus = rng.random(size) < self.rc_prob
        return pos.astype(np.int64), minus

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, minus-strand flags)`` of samples ``b * BLOCK .. (b + 1) * BLOCK - 1``."""
        return self._draw(np.random.default_rng([*self.key, _BLOCK_STREAM, b]), BLOCK)

    def retries(self, g: int) -> Iterator[tuple[int, bool]]:
        """Endless replacement draws for sample ``g`` (its block draw was rejected)."""
        rng = np.random.default_rng([*self.key, _RETRY_STREAM, g])
        while True:
            pos, minus = self._draw(rng, 1)
            yield int(pos[0]), bool(minus[0])


def mixture_probs(weights: np.ndarray, counts: np.ndarray, names: list[str]) -> np.ndarray:
    """Normalised source probabilities; a weighted source must be able to hold a window."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != counts.shape or not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"source weights must be {len(counts)} finite numbers >= 0, "
                         f"got {weights.tolist()}")
    if weights.sum() <= 0:
        raise ValueError("source weights sum to 0")
    empty = [n for n, w, c in zip(names, weights, counts, strict=True) if w > 0 and c == 0]
    if empty:
        raise ValueError(f"sources {empty} have weight > 0 but no interval that holds a window")
    return weights / weights.sum()


__all__ = ["BLOCK", "RandomDraws", "mixture_probs"]
