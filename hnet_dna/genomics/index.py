"""Where each window of a dataset lies, and its codes: the vectorised core of WindowDataset.

Window positions are numbered over a flat table of ``(source, interval)``: in random mode
position ``k`` is a valid window start, in tile mode a tile. Everything here works on arrays of
positions (a group of windows at a time), so per-window Python work stays at a slice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .intervals import Interval
from .items import CodeTables
from .sampling import BLOCK, RandomDraws
from .store import PreloadedCodes, Source

log = logging.getLogger(__name__)

MAX_RETRIES = 1000  # replacement draws for one sample before the N filter is declared hopeless


@dataclass
class WindowGroup:
    """A group of windows: interval index, offset in it, strand, codes (length <= window)."""

    j: np.ndarray
    offset: np.ndarray
    minus: np.ndarray
    codes: list[np.ndarray]


class WindowIndex:
    """Flat interval table with cumulative window counts (``counts[i]`` windows in interval
    ``i``), the packed codes when preloaded, and the N filter."""

    def __init__(self, sources: Sequence[Source], flat: list[tuple[int, Interval]],
                 counts: Sequence[int], window: int, tables: CodeTables,
                 store: PreloadedCodes | None, max_n_fraction: float) -> None:
        self.sources, self.flat, self.window = sources, flat, window
        self.tables, self.store, self.max_n_fraction = tables, store, max_n_fraction
        self.offsets = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
        self.lengths = np.array([len(iv) for _, iv in flat], dtype=np.int64)
        self.iv_start = np.array([iv.start for _, iv in flat], dtype=np.int64)
        self.iv_source = np.array([i for i, _ in flat], dtype=np.int64)
        self._blocks: dict[int, tuple[np.ndarray, ...]] = {}

    @property
    def num_positions(self) -> int:
        return int(self.offsets[-1])

    # ------------------------------------------------------------------ positions
    def locate(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Interval index and offset of window starts ``k`` (random mode)."""
        j = np.searchsorted(self.offsets, k, side="right") - 1
        return j, k - self.offsets[j]

    def tile_span(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(interval index, offset in interval, length)`` of tiles ``k``."""
        j = np.searchsorted(self.offsets, k, side="right") - 1
        offset = (k - self.offsets[j]) * self.window
        return j, offset, np.minimum(self.window, self.lengths[j] - offset)

    # ------------------------------------------------------------------ codes and N filter
    def codes(self, j: int, offset: int, n: int) -> np.ndarray:
        """Packed codes of ``n`` bases at ``offset`` in interval ``j`` (a view when preloaded)."""
        if self.store is not None:
            a = int(self.store.starts[j]) + offset
            return self.store.codes[a:a + n]
        src, iv = self.flat[j]
        start = iv.start + offset
        return self.tables.read(self.sources[src], iv.contig, start, start + n)

    def n_ok(self, j: np.ndarray, offset: np.ndarray, n: np.ndarray | int) -> np.ndarray:
        """Whether windows pass ``max_n_fraction``: from the N-run index when preloaded, else
        by reading them."""
        if self.store is not None:
            a = self.store.starts[j] + offset
            return self.store.zero_count(a, a + n) <= self.max_n_fraction * n
        n = np.broadcast_to(n, j.shape)
        return np.array([self.few_n(self.codes(a, b, c)) for a, b, c in
                         zip(j.tolist(), offset.tolist(), n.tolist(), strict=True)], dtype=bool)

    def few_n(self, code: np.ndarray) -> bool:
        return np.count_nonzero(self.tables.zero.take(code)) <= self.max_n_fraction * len(code)

    def kept_tiles(self) -> np.ndarray | None:
        """Tiles that pass ``max_n_fraction`` (None = all)."""
        if self.max_n_fraction >= 1.0:
            return None
        j, offset, n = self.tile_span(np.arange(self.num_positions, dtype=np.int64))
        return np.flatnonzero(self.n_ok(j, offset, n))

    # ------------------------------------------------------------------ groups of windows
    def tiles(self, tiles: np.ndarray, minus: np.ndarray) -> WindowGroup:
        j, offset, n = self.tile_span(tiles)
        codes = [self.codes(a, b, c) for a, b, c in zip(j.tolist(), offset.tolist(), n.tolist(),
                                                       strict=True)]
        return WindowGroup(j, offset, minus, codes)

    def random(self, g: np.ndarray, draws: RandomDraws) -> tuple[WindowGroup, int]:
        """Windows of global samples ``g`` and the number of draws the N filter rejected."""
        b, t = np.divmod(g, BLOCK)
        j = np.empty(len(g), dtype=np.int64)
        offset, minus = np.empty_like(j), np.empty(len(g), dtype=bool)
        for block in np.unique(b).tolist():
            sel = b == block
            bj, boff, bminus = self._block(draws, block)
            j[sel], offset[sel], minus[sel] = bj[t[sel]], boff[t[sel]], bminus[t[sel]]
        codes = None
        rejected = 0
        if self.max_n_fraction < 1.0:
            if self.store is None:  # read each window once: for the check and the item
                codes = self._read(j, offset)
                ok = np.array([self.few_n(code) for code in codes], dtype=bool)
            else:
                ok = self.n_ok(j, offset, self.window)
            for i in np.flatnonzero(~ok).tolist():
                j[i], offset[i], minus[i], tries = self._retry(draws, int(g[i]))
                rejected += tries
                if codes is not None:
                    codes[i] = self.codes(int(j[i]), int(offset[i]), self.window)
        if codes is None:
            codes = self._read(j, offset)
        return WindowGroup(j, offset, minus, codes), rejected

    def _read(self, j: np.ndarray, offset: np.ndarray) -> list[np.ndarray]:
        return [self.codes(a, b, self.window) for a, b in zip(j.tolist(), offset.tolist(),
                                                             strict=True)]

    def _block(self, draws: RandomDraws, block: int) -> tuple[np.ndarray, ...]:
        key = (draws.key, block)
        if key not in self._blocks:
            if len(self._blocks) > 4:  # groups walk through blocks in order: keep a few
                self._blocks.clear()
            pos, minus = draws.block(block)
            self._blocks[key] = (*self.locate(pos), minus)
        return self._blocks[key]

    def _retry(self, draws: RandomDraws, g: int) -> tuple[int, int, bool, int]:
        """Replacement for sample ``g`` from its own generator (independent of sharding):
        ``(j, offset, minus, draws rejected including the first)``."""
        for attempt, (pos, minus) in enumerate(draws.retries(g), start=1):
            if attempt > MAX_RETRIES:
                raise RuntimeError(
                    f"sample {g}: no window with N fraction <= {self.max_n_fraction} in "
                    f"{MAX_RETRIES + 1} draws; restrict the intervals to N-free regions "
                    "(intervals.defined_intervals)")
            j, offset = self.locate(np.array([pos]))
            if self.n_ok(j, offset, self.window)[0]:
                return int(j[0]), int(offset[0]), minus, attempt
        raise AssertionError("unreachable")  # retries() is endless


__all__ = ["MAX_RETRIES", "WindowGroup", "WindowIndex"]
