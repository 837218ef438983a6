"""Who produces which item: distributed ranks, then DataLoader workers, then a resume offset.

A window dataset defines, per epoch, one ordered stream of items per rank (rank ``r`` of ``R``
owns every ``R``-th item of the global order). Within a rank, DataLoader workers take whole
*chunks* of ``chunk`` consecutive stream positions in turn (worker ``w`` of ``W`` the chunks
``w, w + W, ...``), counted from the resume offset. A DataLoader with ``batch_size == chunk``
requests batches from its workers in that same round-robin order, so it returns the rank's
stream in order, batched, whatever ``num_workers`` is, and "items consumed so far" is a prefix of
the stream that the main process can count and save.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import get_worker_info


def shard_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int, int, int]:
    """``(rank, world_size, worker_id, num_workers)`` of the calling process."""
    if rank is None or world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = 0, 1
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank, world_size, worker, workers


def split_count(total: int, index: int, parts: int) -> int:
    """Size of part ``index`` when ``total`` items are dealt round-robin into ``parts``."""
    return total // parts + (index < total % parts)


def worker_ranges(start: int, stop: int, worker: int, workers: int, chunk: int
                  ) -> Iterator[tuple[int, int]]:
    """Half-open ranges of the stream positions in ``[start, stop)`` that ``worker`` of
    ``workers`` produces, in order (one range when there is a single worker)."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if workers == 1:
        if start < stop:
            yield start, stop
        return
    for a in range(start + worker * chunk, stop, chunk * workers):
        yield a, min(a + chunk, stop)


__all__ = ["shard_info", "split_count", "worker_ranges"]
