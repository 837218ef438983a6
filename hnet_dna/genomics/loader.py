"""A resumable DataLoader over a :class:`~.windows.WindowDataset`.

The loader sets the dataset's ``batch_size`` to its own, so that workers share the rank's
stream in whole batches and the DataLoader returns it in order (see :mod:`.sharding`); the
dataset builds each batch whole (``WindowDataset.batches``), in the format ``default_collate``
would give. The loader counts the rows it hands out, which is the dataset position a
checkpoint needs. A fresh DataLoader (and fresh workers) is made for every pass, so
set_epoch/load_state_dict reach them.

Two ways to read it: ``for batch in loader`` is one pass (the rest of the current epoch);
``next(loader)`` is the endless training stream, which moves to the next epoch when a pass
ends. Either way a restored loader starts at the saved position: the windows before it are
never read again, so a preempted job resumes without replaying its epoch.

Under DDP the ranks' streams differ by at most one window; ``drop_last=True`` (or
``samples_per_epoch`` a multiple of ``world_size * batch_size``) gives every rank the same number
of batches, which collective ops need.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from torch.utils.data import DataLoader

if TYPE_CHECKING:
    from .windows import WindowDataset


class WindowLoader:
    """Batches of ``dataset`` with a saved/restored position (per rank, per epoch).

    ``kwargs`` go to ``torch.utils.data.DataLoader`` (``pin_memory``, ``prefetch_factor``, ...);
    ``persistent_workers`` is refused because kept workers would not see a new epoch or a
    restored position.
    """

    def __init__(self, dataset: WindowDataset, batch_size: int, num_workers: int = 0,
                 **kwargs: Any) -> None:
        if kwargs.get("persistent_workers"):
            raise ValueError("persistent_workers would keep the epoch and position of the first "
                             "pass; WindowLoader starts fresh workers per pass")
        if "batch_sampler" in kwargs or "sampler" in kwargs or kwargs.get("shuffle"):
            raise ValueError("the window dataset orders and shards itself: no sampler/shuffle")
        self.dataset = dataset
        # only the last batch of a pass can be short; batch_size=None below forbids DataLoader's
        # own drop_last, so the loader drops it
        self.drop_last = bool(kwargs.pop("drop_last", False))
        self.batch_size, self.num_workers, self.kwargs = batch_size, num_workers, kwargs
        dataset.batch_size = batch_size
        self.consumed = dataset.start_position
        self._pass: Iterator[dict] | None = None  # the running pass of next()

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
        self.consumed = self.dataset.start_position
        self._pass = None

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def __len__(self) -> int:
        """Batches left in this pass."""
        left = len(self.dataset)
        return left // self.batch_size if self.drop_last else -(-left // self.batch_size)

    def __iter__(self) -> Iterator[dict]:
        # the dataset builds whole batches (no per-item collation); batch_size=None passes
        # them through, and workers still take whole batches in turn
        kwargs = {"collate_fn": _as_is, **self.kwargs}
        loader = DataLoader(self.dataset.batches(), batch_size=None,
                            num_workers=self.num_workers, **kwargs)
        self.consumed = self.dataset.start_position  # every pass starts there
        for batch in loader:
            if self.drop_last and len(batch["tokens"]) < self.batch_size:
                return
            self.consumed += len(batch["tokens"])
            yield batch

    def __next__(self) -> dict:
        """The next batch of the endless stream: the rest of this pass, then the next epoch's."""
        for _ in range(2):  # a restored position may sit at the very end of its epoch
            if self._pass is None:
                self._pass = iter(self)
            batch = next(self._pass, None)
            if batch is not None:
                return batch
            self.set_epoch(self.epoch + 1)
        raise RuntimeError(f"the window dataset yields no batch of {self.batch_size} in epoch "
                           f"{self.epoch}")

    def state_dict(self) -> dict[str, Any]:
        """The dataset state at the last batch handed out (see ``WindowDataset.state_dict``)."""
        return self.dataset.state_dict(consumed=self.consumed)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "taken" in state:
            state = self._from_batch_count(state)
        self.dataset.load_state_dict(state)
        self.consumed = int(state["consumed"])
        self._pass = None

    def _from_batch_count(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """A position counted in batches, ``{"epoch", "taken", "num_workers"}`` (the format of
        older checkpoints). Read with ``num_workers=0`` its batches were whole batches of this
        stream, so it is ``taken * batch_size`` windows; with workers the order was another."""
        if state["num_workers"] != 0:
            raise ValueError(f"this data position was saved as {state['taken']} batch(es) read "
                             f"with num_workers={state['num_workers']}, whose order no longer "
                             "exists: resume with a checkpoint written since, or start again")
        mine = self.dataset.state_dict(consumed=self.dataset.start_position)
        return {**mine, "epoch": int(state["epoch"]),
                "consumed": int(state["taken"]) * self.batch_size}


def _as_is(batch: dict) -> dict:
    """Batches come built; DataLoader's default_convert would walk every string of them."""
    return batch


__all__ = ["WindowLoader"]
