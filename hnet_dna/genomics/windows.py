"""Fixed-length window datasets over genome intervals (torch ``IterableDataset``).

Each item is the batch format of docs/architecture.md: ``tokens`` int64 ``(L,)``,
``loss_weight`` float32 ``(L,)``, ``softmasked`` bool ``(L,)``, and metadata ``source``,
``contig``, ``start`` (0-based leftmost genomic coordinate of the window) and ``strand``
(+1, or -1 when ``tokens`` is the reverse complement of ``[start, start + n)``).

Two modes:

* ``"random"``: ``samples_per_epoch`` windows drawn uniformly over every valid window position
  (HyenaDNA-style random crops), each reverse-complemented with probability ``rc_prob``.
  Reproducible from ``(seed, epoch, rank, worker)``; call :meth:`WindowDataset.set_epoch`.
* ``"tile"``: non-overlapping windows covering every interval exactly once, in order (the last
  window of an interval is right-padded with PAD, weight 0), for evaluation: with the causal
  convention of the architecture doc every base is scored exactly once.

Work is split across distributed ranks first, then DataLoader workers, so no window is produced
twice and the per-rank count does not depend on the number of workers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal, Protocol

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .alphabet import DNA_VOCAB, Vocab
from .intervals import Interval, check_within

log = logging.getLogger(__name__)

Mode = Literal["random", "tile"]


class SequenceSource(Protocol):
    """What a window dataset reads from (``fasta.Genome``, ``text.TextSource``)."""

    name: str
    contigs: Mapping[str, int]

    def fetch_encoded(self, contig: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        ...


def shard_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int, int, int]:
    """``(rank, world_size, worker_id, num_workers)`` of the calling process."""
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = 0, 1
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank, world_size, worker, workers


def _split_count(total: int, index: int, parts: int) -> int:
    """Size of part ``index`` when ``total`` items are dealt round-robin into ``parts``."""
    return total // parts + (index < total % parts)


def _check_disjoint(intervals: Sequence[Interval], where: str) -> None:
    ordered = sorted(intervals)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.contig == b.contig and b.start < a.end:
            raise ValueError(f"{where}: tile mode needs disjoint intervals, {a} overlaps {b}")


class WindowDataset(IterableDataset):
    """Windows of ``window`` tokens over ``regions`` (sources with their intervals).

    ``softmask_weight`` is the loss weight of lowercase (soft-masked repeat) bases; GPN uses 0.1
    for training and 0 for evaluation. Ids in ``vocab.zero_weight_ids`` (N for DNA) and padding
    get weight 0. Windows whose fraction of zero-weight ids exceeds ``max_n_fraction`` are
    skipped (random mode draws another); skips are counted in ``self.skipped`` and logged at the
    end of each pass. In random mode intervals shorter than ``window`` cannot hold a window: they
    are left out, and their count and bases are logged at construction (tile mode covers them).
    ``samples_per_epoch`` counts windows over all ranks. Tile mode requires non-overlapping
    intervals, so that each base is scored once.
    """

    def __init__(
        self,
        regions: Sequence[tuple[SequenceSource, Sequence[Interval]]],
        window: int,
        *,
        mode: Mode = "random",
        samples_per_epoch: int | None = None,
        rc_prob: float = 0.0,
        strands: Sequence[int] = (1,),
        softmask_weight: float = 1.0,
        max_n_fraction: float = 1.0,
        seed: int = 0,
        vocab: Vocab = DNA_VOCAB,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if mode not in ("random", "tile"):
            raise ValueError(f"mode must be 'random' or 'tile', got {mode!r}")
        if mode == "random" and (samples_per_epoch is None or samples_per_epoch < 1):
            raise ValueError("random mode needs samples_per_epoch >= 1")
        if not 0.0 <= rc_prob <= 1.0:
            raise ValueError(f"rc_prob must be in [0, 1], got {rc_prob}")
        if not set(strands) <= {1, -1} or not strands:
            raise ValueError(f"strands must be a non-empty subset of (1, -1), got {strands}")
        if vocab.complement is None and (rc_prob > 0 or -1 in strands):
            raise ValueError("this vocabulary has no complement: rc_prob/strand -1 unavailable")
        names = [src.name for src, _ in regions]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate source names {names}")
        self.sources = [src for src, _ in regions]
        self.window, self.mode, self.seed, self.vocab = window, mode, seed, vocab
        self.samples_per_epoch = samples_per_epoch
        self.rc_prob, self.strands = rc_prob, tuple(strands)
        self.softmask_weight, self.max_n_fraction = softmask_weight, max_n_fraction
        self._rank, self._world_size = rank, world_size
        self.epoch = 0
        self.skipped = 0

        # Flat (source index, interval) table + cumulative window counts: window k is found by
        # binary search instead of materialising millions of window tuples.
        flat: list[tuple[int, Interval]] = []
        for i, (src, ivs) in enumerate(regions):
            check_within(ivs, src.contigs, repr(src))
            if mode == "tile":
                _check_disjoint(ivs, repr(src))
            flat += [(i, iv) for iv in ivs]
        if mode == "random":
            short = [iv for _, iv in flat if len(iv) < window]
            if short:
                log.warning("random windows of %d: left out %d interval(s) shorter than the "
                            "window (%d bases)", window, len(short), sum(map(len, short)))
            flat = [(i, iv) for i, iv in flat if len(iv) >= window]
            counts = [len(iv) - window + 1 for _, iv in flat]  # valid window starts
        else:
            counts = [-(-len(iv) // window) for _, iv in flat]  # ceil: tiles per interval
        if not flat:
            raise ValueError(f"no interval can hold a window of {window} ({mode} mode)")
        self._intervals = flat
        self._offsets = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
        w = np.ones(vocab.size, dtype=np.float32)
        w[list(vocab.zero_weight_ids) + [vocab.pad_id]] = 0.0
        self._weight_table = w

    # ------------------------------------------------------------------ sizes
    @property
    def num_positions(self) -> int:
        """Valid window starts (random) or tiles (tile), over all ranks, one strand."""
        return int(self._offsets[-1])

    def __len__(self) -> int:
        """Windows this rank yields per pass (before ``max_n_fraction`` skips)."""
        rank, world, _, _ = shard_info(self._rank, self._world_size)
        if self.mode == "random":
            return _split_count(self.samples_per_epoch, rank, world)
        return _split_count(self.num_positions, rank, world) * len(self.strands)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of this epoch (does not reach persistent workers)."""
        self.epoch = epoch

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[dict]:
        rank, world, worker, workers = shard_info(self._rank, self._world_size)
        self.skipped = 0
        if self.mode == "random":
            n = _split_count(_split_count(self.samples_per_epoch, rank, world), worker, workers)
            rng = np.random.default_rng([self.seed, self.epoch, rank, worker])
            yield from self._random(n, rng)
        else:
            # rank r owns tiles r, r + world, ...; its worker w takes every workers-th of those
            tiles = range(rank, self.num_positions, world)[worker::workers]
            for k in tiles:
                for strand in self.strands:
                    item = self._tile(int(k), strand)
                    if item is not None:
                        yield item
        if self.skipped:
            log.info("rank %d worker %d: skipped %d window(s) with N fraction > %g", rank,
                     worker, self.skipped, self.max_n_fraction)

    def _locate(self, k: int) -> tuple[int, Interval, int]:
        j = int(np.searchsorted(self._offsets, k, side="right")) - 1
        src, iv = self._intervals[j]
        return src, iv, k - int(self._offsets[j])

    def _random(self, n: int, rng: np.random.Generator) -> Iterator[dict]:
        # bound the redraws so a corpus that is almost all N fails loudly instead of hanging
        max_draws = 100 * n + 1000
        made = draws = 0
        while made < n:
            if draws >= max_draws:
                raise RuntimeError(
                    f"only {made}/{n} windows passed max_n_fraction={self.max_n_fraction} "
                    f"after {draws} draws; restrict the intervals to N-free regions"
                )
            draws += 1
            src, iv, offset = self._locate(int(rng.integers(self.num_positions)))
            strand = -1 if rng.random() < self.rc_prob else 1
            item = self._make(src, iv.contig, iv.start + offset, iv.start + offset + self.window,
                              strand)
            if item is not None:
                made += 1
                yield item

    def _tile(self, k: int, strand: int) -> dict | None:
        src, iv, i = self._locate(k)
        start = iv.start + i * self.window
        return self._make(src, iv.contig, start, min(start + self.window, iv.end), strand)

    def _make(self, src: int, contig: str, start: int, end: int, strand: int) -> dict | None:
        ids, soft = self.sources[src].fetch_encoded(contig, start, end)
        n = end - start
        weight = self._weight_table[ids]
        if self.max_n_fraction < 1.0 and np.count_nonzero(weight == 0) > self.max_n_fraction * n:
            self.skipped += 1
            return None
        weight = np.where(soft & (weight > 0), np.float32(self.softmask_weight), weight)
        if strand == -1:
            ids = self.vocab.complement[ids[::-1]]
            soft, weight = soft[::-1], weight[::-1]
        tokens = np.full(self.window, self.vocab.pad_id, dtype=np.int64)
        tokens[:n] = ids
        loss_weight = np.zeros(self.window, dtype=np.float32)
        loss_weight[:n] = weight
        softmasked = np.zeros(self.window, dtype=bool)
        softmasked[:n] = soft
        return {
            "tokens": torch.from_numpy(tokens),
            "loss_weight": torch.from_numpy(loss_weight),
            "softmasked": torch.from_numpy(softmasked),
            "source": self.sources[src].name,
            "contig": contig,
            "start": start,
            "strand": strand,
        }
