"""Training/evaluation batches from a named corpus (``hnet_dna.genomics``), resumable."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from hnet_dna.genomics import alphabet
from hnet_dna.genomics.alphabet import DNA_VOCAB
from hnet_dna.genomics.corpora import Corpus, load_corpus
from hnet_dna.training.config import DataConfig
from hnet_dna.training.trainer import Vocabulary

DNA_VOCABULARY = Vocabulary(
    bos_id=DNA_VOCAB.bos_id,
    pad_id=DNA_VOCAB.pad_id,
    unscored_ids=tuple(DNA_VOCAB.zero_weight_ids),
    name="dna",
    tokens={t: getattr(alphabet, t) for t in "A C G T N PAD BOS EOS MASK".split()},
)


class EpochBatchStream:
    """Endless batches from an epoch-seeded window dataset; position = (epoch, batches taken).

    Window datasets are deterministic given (seed, epoch, rank, worker), so a restored stream
    replays the interrupted epoch up to the saved batch and continues with exactly the batches the
    interrupted run would have seen next (same ``num_workers`` required: it fixes the order).
    """

    def __init__(self, dataset: IterableDataset, batch_size: int, num_workers: int = 0) -> None:
        if not hasattr(dataset, "set_epoch"):
            raise TypeError(f"{type(dataset).__name__} has no set_epoch(); cannot resume it")
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.epoch = 0
        self.taken = 0  # batches consumed in the current epoch
        self._iterator: Iterator[dict] | None = None

    def _start_epoch(self) -> None:
        self.dataset.set_epoch(self.epoch)
        loader = DataLoader(self.dataset, batch_size=self.batch_size, num_workers=self.num_workers)
        self._iterator = iter(loader)

    def __iter__(self) -> EpochBatchStream:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._iterator is None:
            self._start_epoch()
        batch = next(self._iterator, None)
        if batch is None:  # epoch exhausted: the next epoch draws fresh windows
            self.epoch, self.taken = self.epoch + 1, 0
            self._start_epoch()
            batch = next(self._iterator, None)
            if batch is None:
                raise RuntimeError("the training dataset yields no windows")
        self.taken += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "taken": self.taken, "num_workers": self.num_workers}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["num_workers"] != self.num_workers:
            raise ValueError(
                f"checkpoint read data with num_workers={state['num_workers']}, this run uses "
                f"{self.num_workers}: the batch order would differ"
            )
        self.epoch = state["epoch"]
        self._start_epoch()
        for _ in range(state["taken"]):  # replay to the saved position (cheap next to training)
            next(self._iterator)
        self.taken = state["taken"]


def open_corpus(cfg: DataConfig) -> Corpus:
    """The named corpus, or a FASTA path with positional or BED splits."""
    return load_corpus(cfg.corpus, bed=cfg.bed)


def vocabulary_for(cfg: DataConfig) -> Vocabulary:
    """Token ids of the corpus alphabet (nucleotides; text corpora add theirs here)."""
    return DNA_VOCABULARY


def train_stream(corpus: Corpus, cfg: DataConfig, seed: int) -> EpochBatchStream:
    """Random windows of the training split, sharded by the process group's rank."""
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
    return EpochBatchStream(dataset, cfg.batch_size, cfg.num_workers)


def eval_batches(
    corpus: Corpus, cfg: DataConfig, sharded: bool = True
) -> Callable[[], Iterable[dict[str, torch.Tensor]]]:
    """Factory of one pass over the tiled held-out split (rank's shard, or all when not sharded)."""
    shard = {} if sharded else {"rank": 0, "world_size": 1}
    dataset = corpus.windows(
        cfg.eval_split, cfg.context_length, mode="tile", softmask_weight=1.0, **shard
    )
    return lambda: DataLoader(dataset, batch_size=cfg.eval_batch_size)


def split_windows(corpus: Corpus, split: str, window: int) -> Iterator[torch.Tensor]:
    """Token rows of a split tiled into windows, unsharded (for the Markov baselines)."""
    dataset = corpus.windows(split, window, mode="tile", rank=0, world_size=1)
    for item in dataset:
        yield item["tokens"]
