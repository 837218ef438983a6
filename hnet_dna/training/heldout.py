"""Exact held-out bits per base over tiled windows (every held-out base scored once)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from hnet_dna.genomics.framing import shift_right
from hnet_dna.training.distributed import DistEnv, all_reduce_sum
from hnet_dna.training.losses import LN2, token_nll


def _lockstep(batches: Iterable[dict], env: DistEnv, lockstep: bool) -> Iterable[tuple[dict, bool]]:
    """Yield (batch, is_real). With ``lockstep`` every rank runs the same number of forwards
    (FSDP all-gathers inside forward): a rank whose shard is exhausted repeats its last batch
    as an unscored dummy until all ranks are done."""
    iterator = iter(batches)
    last = None
    while True:
        batch = next(iterator, None)
        if lockstep and env.enabled:
            flag = torch.tensor([0.0 if batch is None else 1.0], device=env.device)
            all_reduce_sum(flag, env)
            if flag.item() == 0:
                return
            if batch is None:
                if last is None:
                    raise RuntimeError(f"rank {env.rank} has no held-out windows to run FSDP with")
                yield last, False
                continue
        elif batch is None:
            return
        last = batch
        yield batch, True


@torch.no_grad()
def heldout_bits(
    model: nn.Module,
    batches: Iterable[dict],
    env: DistEnv,
    *,
    bos_id: int,
    pad_id: int,
    unscored_ids: Sequence[int],
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    max_batches: int | None = None,
    lockstep: bool = False,
) -> dict[str, float]:
    """Bits per base over all scored targets (``bpb``) and over uppercase ones (``bpb_upper``).

    A target is scored unless its id is padding or in ``unscored_ids`` (N for DNA); soft-masked
    (lowercase) bases count in ``bpb`` whatever their training weight. Sums are float64 and summed
    over ranks, so the result is exact for the union of the ranks' shards.
    """
    was_training = model.training
    model.eval()
    # bits (all), count (all), bits (upper), count (upper)
    sums = torch.zeros(4, dtype=torch.float64, device=env.device)
    unscored = torch.tensor([pad_id, *unscored_ids], device=env.device)
    for index, (batch, real) in enumerate(_lockstep(batches, env, lockstep)):
        if max_batches is not None and index >= max_batches:
            break
        tokens = batch["tokens"].to(env.device)
        inputs, mask = shift_right(tokens, bos_id, pad_id)
        with autocast():
            logits = model(inputs, mask=mask).logits
        if not real:
            continue
        bits = token_nll(logits, tokens).double() / LN2
        scored = ~torch.isin(tokens, unscored)
        upper = scored & ~batch["softmasked"].to(env.device)
        sums += torch.stack(
            [bits[scored].sum(), scored.sum(), bits[upper].sum(), upper.sum()]
        ).double()
    all_reduce_sum(sums, env)
    model.train(was_training)
    bits_all, count_all, bits_upper, count_upper = sums.tolist()
    return {
        "bpb": bits_all / count_all if count_all else float("nan"),
        "bpb_upper": bits_upper / count_upper if count_upper else float("nan"),
        "bases": count_all,
        "bases_upper": count_upper,
    }
