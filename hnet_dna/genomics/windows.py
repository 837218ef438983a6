"""Fixed-length window datasets over genome intervals (torch ``IterableDataset``).

Each item is the batch format of docs/architecture.md: ``tokens`` int64 ``(L,)``,
``loss_weight`` float32 ``(L,)``, ``softmasked`` bool ``(L,)``, and metadata ``source``,
``contig``, ``start`` (0-based leftmost genomic coordinate of the window) and ``strand``
(+1, or -1 when ``tokens`` is the reverse complement of ``[start, start + n)``).

Two modes:

* ``"random"``: ``samples_per_epoch`` windows, each drawn uniformly over every valid window start
  (HyenaDNA-style random crops), or from a weighted mixture of the sources
  (``source_weights``), and reverse-complemented with probability ``rc_prob``. Sample ``g`` of
  an epoch is a pure function of ``(seed, epoch, g)`` (see :mod:`.sampling`).
* ``"tile"``: non-overlapping windows covering every interval exactly once, in order (the last
  window of an interval is right-padded with PAD, weight 0), for evaluation: with the causal
  convention of the architecture doc every base is scored exactly once.

Sharding and resumption (see :mod:`.sharding`): each rank owns a fixed stream of items per
epoch; DataLoader workers take whole chunks of ``batch_size`` items of it in turn, so a
DataLoader with that batch size yields the rank's stream in order for any ``num_workers``.
``state_dict(consumed)`` records how many items of the stream the main process has taken;
after ``load_state_dict`` the next pass starts exactly there. :class:`~.loader.WindowLoader`,
built on this module (never the reverse), does the counting (and is what a trainer should use)::

    loader = WindowLoader(dataset, batch_size=8, num_workers=2)
    loader.set_epoch(epoch)
    for batch in loader: ...
    state = loader.state_dict()          # save with the checkpoint (per rank)
    loader.load_state_dict(state)        # on resume: the same remaining batches follow

Without the loader: build the dataset with ``batch_size`` equal to the DataLoader's (else
workers interleave single items and the order depends on ``num_workers``), save
``dataset.state_dict(consumed=batches_taken * batch_size)`` (counted from the start of the
epoch; the dataset object in the main process cannot see what workers produced), and call
``load_state_dict`` before creating the DataLoader of the resumed run. Persistent workers would
keep a stale epoch and position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch.utils.data import IterableDataset

from .alphabet import DNA_VOCAB, Vocabulary
from .index import MAX_RETRIES, WindowGroup, WindowIndex
from .intervals import Interval, resolve_intervals
from .items import CodeTables, batch_from_codes
from .sampling import RandomDraws, mixture_probs
from .sharding import shard_info, split_count, worker_ranges
from .store import PreloadedCodes, default_preload

log = logging.getLogger(__name__)

Mode = Literal["random", "tile"]

__all__ = ["MAX_RETRIES", "Mode", "SequenceSource", "WindowDataset", "shard_info"]


class SequenceSource(Protocol):
    """What a window dataset reads from (``fasta.Genome``, ``text.TextSource``)."""

    name: str
    contigs: Mapping[str, int]

    def fetch_encoded(self, contig: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        ...


def _check_disjoint(intervals: Sequence[Interval], where: str) -> None:
    ordered = sorted(intervals)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.contig == b.contig and b.start < a.end:
            raise ValueError(f"{where}: tile mode needs disjoint intervals, {a} overlaps {b}")


class WindowDataset(IterableDataset):
    """Windows of ``window`` tokens over ``regions`` (sources with their intervals).

    ``softmask_weight`` is the loss weight of lowercase (soft-masked repeat) bases; GPN uses 0.1
    for training and 0 for evaluation. Ids in ``vocab.unscored_ids`` (N for DNA) and padding
    get weight 0. Windows whose fraction of zero-weight ids exceeds ``max_n_fraction`` are
    skipped: random mode replaces the draw (counted in ``self.skipped``, logged after each pass);
    tile mode leaves those tiles out of its stream (counted and logged at construction). In
    random mode intervals shorter than ``window`` cannot hold a window: they are left out, and
    their count and bases are logged (tile mode covers them). ``samples_per_epoch`` counts
    windows over all ranks. Tile mode requires non-overlapping intervals, so that each base is
    scored once. Interval contigs may use aliases of the source's names (``chr1`` for ``1``).

    ``source_weights`` (random mode; by source name or in ``regions`` order): sampling weight of
    each source, default proportional to its number of window starts (its length).
    ``preload``: read all intervals into memory once (1 byte per base) instead of per window;
    default when they total at most ``store.PRELOAD_MAX_BASES`` and are not read from the page
    cache (``store.default_preload``). ``batch_size``: the DataLoader batch size, the unit in
    which workers share the stream (see the module doc).
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
        vocab: Vocabulary = DNA_VOCAB,
        rank: int | None = None,
        world_size: int | None = None,
        source_weights: Mapping[str, float] | Sequence[float] | None = None,
        preload: bool | None = None,
        batch_size: int = 1,
    ) -> None:
        super().__init__()
        self._check_args(regions, window, mode, samples_per_epoch, rc_prob, strands, seed, vocab,
                         source_weights, batch_size)
        self.sources = [src for src, _ in regions]
        self.window, self.mode, self.seed, self.vocab = window, mode, seed, vocab
        self.samples_per_epoch = samples_per_epoch
        self.rc_prob, self.strands = rc_prob, tuple(strands)
        self.softmask_weight, self.max_n_fraction = softmask_weight, max_n_fraction
        self.batch_size = batch_size
        self._rank, self._world_size = rank, world_size
        self.epoch = 0
        self.skipped = 0
        self._start = self._position = 0  # resume offset / next position in the rank stream

        # Flat (source index, interval) table + cumulative window counts: window k is found by
        # binary search instead of materialising millions of window tuples.
        flat: list[tuple[int, Interval]] = []
        for i, (src, ivs) in enumerate(regions):
            ivs = resolve_intervals(ivs, src.contigs, repr(src))
            if mode == "tile":
                _check_disjoint(ivs, repr(src))
            flat += [(i, iv) for iv in ivs]
        if mode == "random":
            flat = self._drop_short(flat)
            counts = [len(iv) - window + 1 for _, iv in flat]  # valid window starts
        elif not flat:
            raise ValueError("no interval to tile (tile mode)")
        else:
            counts = [-(-len(iv) // window) for _, iv in flat]  # ceil: tiles per interval
        self._intervals = flat
        self._contigs = [iv.contig for _, iv in flat]
        self._tables = CodeTables(vocab, softmask_weight)
        if preload is None:
            preload = default_preload(self.sources, flat)
        store = PreloadedCodes(self.sources, flat, self._tables) if preload else None
        self._index = WindowIndex(self.sources, flat, counts, window, self._tables, store,
                                  max_n_fraction)
        if mode == "random":
            self._setup_mixture(flat, counts, source_weights)
        else:
            self._tiles = self._kept_tiles()

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _check_args(regions, window, mode, samples_per_epoch, rc_prob, strands, seed, vocab,
                    source_weights, batch_size) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if mode not in ("random", "tile"):
            raise ValueError(f"mode must be 'random' or 'tile', got {mode!r}")
        if mode == "random" and (samples_per_epoch is None or samples_per_epoch < 1):
            raise ValueError("random mode needs samples_per_epoch >= 1")
        if mode == "tile" and source_weights is not None:
            raise ValueError("source_weights apply to random mode (tile mode covers every base)")
        if not 0.0 <= rc_prob <= 1.0:
            raise ValueError(f"rc_prob must be in [0, 1], got {rc_prob}")
        if not set(strands) <= {1, -1} or not strands:
            raise ValueError(f"strands must be a non-empty subset of (1, -1), got {strands}")
        if vocab.complement is None and (rc_prob > 0 or -1 in strands):
            raise ValueError("this vocabulary has no complement: rc_prob/strand -1 unavailable")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        names = [src.name for src, _ in regions]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate source names {names}")

    def _drop_short(self, flat: list[tuple[int, Interval]]) -> list[tuple[int, Interval]]:
        short = [iv for _, iv in flat if len(iv) < self.window]
        kept = [(i, iv) for i, iv in flat if len(iv) >= self.window]
        if not kept:
            longest = max((len(iv) for _, iv in flat), default=0)
            raise ValueError(f"no interval can hold a window of {self.window} (random mode); "
                             f"the longest of {len(flat)} interval(s) has {longest} bases")
        if short:
            log.warning("random windows of %d: left out %d interval(s) shorter than the "
                        "window (%d bases)", self.window, len(short), sum(map(len, short)))
        return kept

    def _setup_mixture(self, flat: list[tuple[int, Interval]], counts: list[int],
                       weights: Mapping[str, float] | Sequence[float] | None) -> None:
        # flat is in source order, so each source owns one contiguous range of positions
        n = len(self.sources)
        per_source = np.zeros(n, dtype=np.int64)
        np.add.at(per_source, [i for i, _ in flat], counts)
        self._src_counts = per_source
        self._src_lo = np.concatenate(([0], np.cumsum(per_source)))[:-1]
        self._probs = None
        if weights is not None:
            names = [s.name for s in self.sources]
            if isinstance(weights, Mapping):
                unknown = sorted(set(weights) - set(names))
                if unknown:
                    raise ValueError(f"source_weights name unknown sources {unknown}; "
                                     f"sources: {names}")
                weights = [weights.get(name, 0.0) for name in names]
            self._probs = mixture_probs(np.asarray(weights, dtype=np.float64), per_source, names)

    def _kept_tiles(self) -> np.ndarray | None:
        """Tiles that pass ``max_n_fraction`` (None = all): decided up front so that the item
        stream, and hence a saved position in it, does not depend on what was read."""
        kept = self._index.kept_tiles()
        if kept is not None:
            self.skipped = (self.num_positions - len(kept)) * len(self.strands)
            if self.skipped:
                log.info("tile windows of %d: skipped %d window(s) with N fraction > %g",
                         self.window, self.skipped, self.max_n_fraction)
        return kept

    # ------------------------------------------------------------------ sizes
    @property
    def num_positions(self) -> int:
        """Valid window starts (random) or tiles (tile), over all ranks, one strand."""
        return self._index.num_positions

    def _rank_count(self, rank: int, world: int) -> int:
        """Items in the stream of ``rank`` for one full pass."""
        if self.mode == "random":
            return split_count(self.samples_per_epoch, rank, world)
        tiles = self.num_positions if self._tiles is None else len(self._tiles)
        return split_count(tiles, rank, world) * len(self.strands)

    @property
    def start_position(self) -> int:
        """Where the next pass starts in this rank's stream: 0, or a restored position."""
        return self._start

    def __len__(self) -> int:
        """Windows this rank yields in the next pass (all, or what is left after a resume)."""
        rank, world, _, _ = shard_info(self._rank, self._world_size)
        return max(self._rank_count(rank, world) - self._start, 0)

    # ------------------------------------------------------------------ epochs and resumption
    def set_epoch(self, epoch: int) -> None:
        """Select the stream of this epoch; a new epoch starts at its beginning. Reaches
        DataLoader workers created afterwards (not persistent ones)."""
        if epoch != self.epoch:
            self._start = self._position = 0
        self.epoch = epoch

    def _fingerprint(self) -> dict[str, Any]:
        """What must match for a saved position to mean the same windows."""
        probs = None if self.mode == "tile" or self._probs is None else self._probs.tolist()
        return {"mode": self.mode, "window": self.window, "seed": self.seed,
                "samples_per_epoch": self.samples_per_epoch, "num_positions": self.num_positions,
                "strands": list(self.strands), "rc_prob": self.rc_prob,
                "max_n_fraction": self.max_n_fraction, "source_weights": probs,
                "sources": [s.name for s in self.sources]}

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Position in this rank's stream: ``{"epoch", "consumed", "world_size", "config"}``.

        ``consumed``: items of the current epoch the caller has taken, counted from the start
        of the epoch (``batches * batch_size`` with a DataLoader). Default: what this process
        iterated itself, which is only right with ``num_workers=0``.
        """
        rank, world, _, _ = shard_info(self._rank, self._world_size)
        position = self._position if consumed is None else int(consumed)
        if not 0 <= position <= self._rank_count(rank, world):
            raise ValueError(f"consumed={position} outside this rank's stream of "
                             f"{self._rank_count(rank, world)} item(s)")
        return {"epoch": self.epoch, "consumed": position, "world_size": world,
                "config": self._fingerprint()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue at a saved position: the next pass yields the rest of that epoch."""
        _, world, _, _ = shard_info(self._rank, self._world_size)
        if state["world_size"] != world:
            raise ValueError(f"state saved with world_size={state['world_size']}, this run has "
                             f"{world}: rank streams would differ")
        mine = self._fingerprint()
        diff = {k: (v, mine.get(k)) for k, v in state["config"].items() if mine.get(k) != v}
        if diff:
            raise ValueError(f"state saved for a different dataset (saved, now): {diff}")
        self.epoch = int(state["epoch"])
        self._start = self._position = int(state["consumed"])

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[dict]:
        # windows are materialised a group at a time (items.batch_from_codes), ~1 MB of tokens
        group = max(1, min(64, (1 << 17) // self.window))
        for positions, sources, contigs, fields in self._groups(group):
            tokens, weights, soft = (fields[k].unbind(0)
                                     for k in ("tokens", "loss_weight", "softmasked"))
            starts, strands = fields["start"].tolist(), fields["strand"].tolist()
            for i, p in enumerate(positions.tolist()):
                self._position = p + 1
                yield {"tokens": tokens[i], "loss_weight": weights[i], "softmasked": soft[i],
                       "source": sources[i], "contig": contigs[i], "start": starts[i],
                       "strand": strands[i]}

    def iter_batches(self) -> Iterator[dict]:
        """The stream as collated batches of ``batch_size`` (the format ``default_collate``
        gives), built whole instead of item by item; see :meth:`batches`."""
        for positions, sources, contigs, fields in self._groups(self.batch_size):
            self._position = int(positions[-1]) + 1
            yield {"tokens": fields["tokens"], "loss_weight": fields["loss_weight"],
                   "softmasked": fields["softmasked"], "source": sources, "contig": contigs,
                   "start": fields["start"], "strand": fields["strand"]}

    def batches(self) -> IterableDataset:
        """This dataset as an iterable of whole batches, for ``DataLoader(batch_size=None)``:
        the same batches as ``DataLoader(self, batch_size=self.batch_size)``, faster."""
        return _Batches(self)

    def _groups(self, size: int
                ) -> Iterator[tuple[np.ndarray, list[str], list[str], dict[str, torch.Tensor]]]:
        """This process's share of the rank stream, ``size`` windows at a time: positions,
        source names, contigs and the tensors of ``items.batch_from_codes``. Workers take chunks of
        ``batch_size`` consecutive positions, so with ``size == batch_size`` a group is a chunk."""
        rank, world, worker, workers = shard_info(self._rank, self._world_size)
        stop = self._rank_count(rank, world)
        if self.mode == "random":
            self.skipped = 0
            draws = RandomDraws(self.seed, self.epoch, self._src_lo, self._src_counts,
                                self._probs, self.rc_prob)
        else:
            # rank r owns tiles r, r + world, ... of the (N-filtered) tile list, both strands
            tiles = np.arange(self.num_positions) if self._tiles is None else self._tiles
            mine, ns = tiles[rank::world], len(self.strands)
            strand_minus = np.array([s == -1 for s in self.strands])
        for a, b in worker_ranges(self._start, stop, worker, workers, self.batch_size):
            for lo in range(a, b, size):
                positions = np.arange(lo, min(lo + size, b), dtype=np.int64)
                if self.mode == "random":
                    # global sample index: ranks interleave, so shards are disjoint samples
                    win, rejected = self._index.random(rank + positions * world, draws)
                    self.skipped += rejected
                else:
                    win = self._index.tiles(mine[positions // ns], strand_minus[positions % ns])
                starts = self._index.iv_start[win.j] + win.offset
                yield (positions, *self._names(win),
                       batch_from_codes(win.codes, win.minus, starts, self.window, self._tables))
        if self.mode == "random" and self.skipped:
            log.info("rank %d worker %d: skipped %d window(s) with N fraction > %g", rank,
                     worker, self.skipped, self.max_n_fraction)

    def _names(self, win: WindowGroup) -> tuple[list[str], list[str]]:
        """Source names and contigs of a group of windows."""
        names = [s.name for s in self.sources]
        sources = [names[i] for i in self._index.iv_source[win.j].tolist()]
        return sources, [self._contigs[j] for j in win.j.tolist()]


class _Batches(IterableDataset):
    """Whole batches of a :class:`WindowDataset` (see ``WindowDataset.batches``)."""

    def __init__(self, dataset: WindowDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.dataset.batch_size)

    def __iter__(self) -> Iterator[dict]:
        return self.dataset.iter_batches()
