"""Training/evaluation batches from a named corpus (``hnet_dna.genomics``), resumable."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from hnet_dna.genomics.alphabet import DNA_VOCAB, Vocabulary
from hnet_dna.genomics.corpora import Corpus, load_corpus
from hnet_dna.genomics.intervals import Interval
from hnet_dna.genomics.loader import WindowLoader
from hnet_dna.genomics.windows import WindowDataset
from hnet_dna.training.config import DataConfig


def open_corpus(cfg: DataConfig) -> Corpus:
    """The named corpus, or a FASTA path with positional or BED splits."""
    return load_corpus(cfg.corpus, bed=cfg.bed)


def vocabulary_for(cfg: DataConfig) -> Vocabulary:
    """Token ids of the corpus alphabet (nucleotides; text corpora add theirs here)."""
    return DNA_VOCAB


def train_stream(corpus: Corpus, cfg: DataConfig, seed: int,
                 num_workers: int | None = None) -> WindowLoader:
    """Endless random windows of the training split, sharded by the process group's rank;
    ``next()`` gives a batch, and a restored position is where the next batch starts.

    ``num_workers``: DataLoader workers (default ``cfg.num_workers``, where None means 0; the
    pretraining run passes the number :mod:`hnet_dna.training.resources` chose)."""
    dataset = corpus.windows(
        cfg.train_split,
        cfg.context_length,
        mode="random",
        samples_per_epoch=cfg.samples_per_epoch,
        rc_prob=cfg.rc_prob,
        softmask_weight=cfg.softmask_weight,
        max_n_fraction=cfg.max_n_fraction,
        seed=seed,
    )
    if num_workers is None:
        num_workers = cfg.num_workers or 0
    return WindowLoader(dataset, cfg.batch_size, num_workers)


def eval_batches(
    corpus: Corpus, cfg: DataConfig, sharded: bool = True
) -> Callable[[], Iterable[dict[str, torch.Tensor]]]:
    """Factory of one pass over the tiled held-out split (rank's shard, or all when not sharded)."""
    shard = {} if sharded else {"rank": 0, "world_size": 1}
    dataset = corpus.windows(
        cfg.eval_split, cfg.context_length, mode="tile", softmask_weight=1.0, **shard
    )
    return lambda: WindowLoader(dataset, cfg.eval_batch_size)


def split_windows(corpus: Corpus, split: str, window: int, max_bases: int | None = None
                  ) -> tuple[Iterator[torch.Tensor], int, int]:
    """Token rows of a split tiled into windows, unsharded (for the Markov baselines), with the
    bases they cover and the bases of the split.

    With ``max_bases`` below the split's size, ``max_bases // window`` tiles spread evenly over
    the whole split (every genome and contig in proportion to its length) instead of all.
    """
    regions = corpus.regions(split)
    tiles = [(g, iv, -(-len(iv) // window)) for g, ivs in regions for iv in ivs]
    split_bases = sum(len(iv) for _, iv, _ in tiles)
    if max_bases is not None and split_bases > max_bases:
        regions = _even_tiles(tiles, window, max(max_bases // window, 1))
    dataset = WindowDataset(regions, window, mode="tile", rank=0, world_size=1,
                            vocab=corpus.vocab)
    bases = sum(len(iv) for _, ivs in regions for iv in ivs)
    return (item["tokens"] for item in dataset), bases, split_bases


def _even_tiles(tiles: list, window: int, count: int) -> list[tuple[Any, list[Interval]]]:
    """``count`` of the tiles (``(genome, interval, tiles in it)``), evenly spaced, as regions."""
    ends = np.cumsum([n for _, _, n in tiles])
    picks = np.arange(count, dtype=np.int64) * int(ends[-1]) // count
    which = np.searchsorted(ends, picks, side="right")
    chosen: dict[str, tuple[Any, list[Interval]]] = {}
    for k, j in zip(picks.tolist(), which.tolist(), strict=True):
        genome, iv, n = tiles[j]
        start = iv.start + (k - int(ends[j]) + n) * window
        chosen.setdefault(genome.name, (genome, []))[1].append(
            Interval(iv.contig, start, min(start + window, iv.end)))
    return list(chosen.values())
