"""Packed window codes: every base as one small integer, read once, sliced per window.

Bases are packed as in :mod:`.items` (one byte per DNA base), so a window is a slice of one
array, turned into its item by three table gathers, with no re-encoding.

:class:`PreloadedCodes` holds the codes of a list of intervals in one array, read from their
sources once, together with the runs of zero-weight codes (N) so that the number of N in any
window is two binary searches (vectorised over a block of candidate windows) instead of a scan.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from .intervals import Interval
from .items import CodeTables

log = logging.getLogger(__name__)

# intervals totalling up to this many bases are read into memory by default (1 byte per base,
# shared by forked DataLoader workers); larger sets (hg38 is 3.1 Gb) are read per window unless
# ``preload=True``. Sources that read from the page cache (``Genome`` backend "mmap") are never
# preloaded by default: a window costs them one ``pread``, and a copy per rank would only
# duplicate what every process already shares.
PRELOAD_MAX_BASES = 1 << 30
_CHUNK = 1 << 22  # bases read per fetch while preloading


class Source(Protocol):
    name: str

    def fetch_encoded(self, contig: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        ...


def default_preload(sources: Sequence[Source], intervals: Sequence[tuple[int, Interval]]) -> bool:
    """Whether a dataset reads its intervals into memory when not told (see above)."""
    if all(getattr(src, "backend", None) == "mmap" for src in sources):
        return False
    return sum(len(iv) for _, iv in intervals) <= PRELOAD_MAX_BASES


class PreloadedCodes:
    """Codes of ``intervals`` (``(source index, interval)``) concatenated into one array.

    Interval ``j`` occupies ``codes[starts[j]:starts[j] + len]``. ``run_starts``/``run_ends``
    are the maximal half-open runs of zero-weight codes (N) in that array, ``run_cum`` their
    cumulative lengths.
    """

    def __init__(self, sources: Sequence[Source], intervals: Sequence[tuple[int, Interval]],
                 tables: CodeTables) -> None:
        t0 = time.perf_counter()
        lengths = np.array([len(iv) for _, iv in intervals], dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(lengths)))[:-1]
        self.codes = np.empty(int(lengths.sum()), dtype=tables.dtype)
        run_s: list[np.ndarray] = []
        run_e: list[np.ndarray] = []
        for (i, iv), at in zip(intervals, self.starts.tolist(), strict=True):
            for a in range(iv.start, iv.end, _CHUNK):
                b = min(a + _CHUNK, iv.end)
                code = tables.read(sources[i], iv.contig, a, b)
                self.codes[at + a - iv.start:at + b - iv.start] = code
                s, e = _runs(tables.zero[code])
                run_s.append(s + at + a - iv.start)
                run_e.append(e + at + a - iv.start)
        none = np.empty(0, dtype=np.int64)
        starts, ends = _merge(np.concatenate([none, *run_s]), np.concatenate([none, *run_e]))
        self.run_starts, self.run_ends = starts, ends
        self.run_cum = np.concatenate(([0], np.cumsum(ends - starts)))
        self.codes.flags.writeable = False  # windows are views: nothing may write through them
        log.info("preloaded %d interval(s), %.1f Mb, in %.1f s", len(intervals),
                 self.codes.size / 1e6, time.perf_counter() - t0)

    def zeros_before(self, x: np.ndarray) -> np.ndarray:
        """Number of zero-weight positions ``< x`` (elementwise, ``x`` global positions)."""
        x = np.asarray(x, dtype=np.int64)
        if not self.run_starts.size:
            return np.zeros_like(x)
        k = np.searchsorted(self.run_starts, x, side="left")  # runs starting before x
        last = np.maximum(k - 1, 0)
        partial = np.minimum(self.run_ends[last], x) - self.run_starts[last]
        return np.where(k > 0, self.run_cum[last] + partial, 0)

    def zero_count(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Zero-weight positions in ``[a, b)`` (elementwise)."""
        return self.zeros_before(b) - self.zeros_before(a)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-open ``(starts, ends)`` of the True runs of ``mask``."""
    edges = np.diff(mask.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    return np.flatnonzero(edges == 1).astype(np.int64), np.flatnonzero(edges == -1).astype(
        np.int64)


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Join runs that touch (a run cut by a chunk border); input sorted and disjoint."""
    if starts.size < 2:
        return starts, ends
    joined = starts[1:] == ends[:-1]
    keep_start = np.concatenate(([True], ~joined))
    keep_end = np.concatenate((~joined, [True]))
    return starts[keep_start], ends[keep_end]


__all__ = ["PRELOAD_MAX_BASES", "PreloadedCodes", "default_preload"]
