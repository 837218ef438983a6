"""The one scorer of exact held-out bits per unit over tiled windows (every unit scored once),
for the base-level models and, through ``tokenize``, any tokenizer."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sized

import torch
from torch import nn

from hnet_dna.genomics.alphabet import Vocabulary
from hnet_dna.genomics.framing import shift_right
from hnet_dna.training.distributed import DistEnv, all_reduce_sum
from hnet_dna.training.losses import LN2, routing_counts, token_nll

log = logging.getLogger(__name__)

# an exact evaluation over more positions than this is announced (size, then the time it will
# take at the rate measured on its first batches, and how to bound it): on a CPU a 309 Mb
# held-out split takes hours
ANNOUNCE_MIN_BASES = 4_000_000
# the rate is measured over at least this many batches and seconds (the first batch is slow)
_RATE_BATCHES, _RATE_SECONDS = 3, 2.0
_SUGGEST_SECONDS = 600.0  # the suggested bound: about this much evaluation


class _Announcer:
    """Logs (main rank) the size of a large exact evaluation before it starts, and its
    estimated time once the rate is measured. ``bound`` names the setting that limits it."""

    def __init__(self, batches: Iterable, max_batches: int | None, env: DistEnv, bound: str,
                 min_bases: int) -> None:
        self.planned = len(batches) if isinstance(batches, Sized) else None
        if self.planned is not None and max_batches is not None:
            self.planned = min(self.planned, max_batches)
        self.active = env.rank == 0 and self.planned is not None
        self.world, self.bound, self.min_bases = env.world_size, bound, min_bases
        self.per_batch = 0
        self.t0 = 0.0

    def start(self, batch: dict) -> None:
        """Called with the first batch, before its forward."""
        if not self.active:
            return
        self.per_batch = batch["tokens"].numel()
        bases = self.planned * self.per_batch * self.world
        self.active = bases >= self.min_bases
        if self.active:
            shape = "x".join(map(str, batch["tokens"].shape))
            log.warning("exact held-out evaluation of %s bases (%d batch(es) of %s per rank, "
                        "%d rank(s)); bound it with %s=N", f"{bases:,}", self.planned, shape,
                        self.world, self.bound)
            self.t0 = time.perf_counter()

    def done(self, count: int) -> None:
        """Called after ``count`` forwards; logs the estimate once the rate is measured."""
        if not self.active:
            return
        elapsed = time.perf_counter() - self.t0
        if (count < _RATE_BATCHES or elapsed < _RATE_SECONDS) and count < self.planned:
            return
        self.active = False
        rate = count * self.per_batch / elapsed  # bases/s of one rank; ranks run side by side
        left = (self.planned - count) * self.per_batch / rate
        suggest = max(int(_SUGGEST_SECONDS * rate / self.per_batch), 1)
        log.warning("held-out evaluation: %d of %d batch(es) in %s, %.0f bases/s per rank: "
                    "about %s in all; %s=%d would take about %s", count, self.planned,
                    _duration(elapsed), rate, _duration(elapsed + left), self.bound, suggest,
                    _duration(suggest * self.per_batch / rate))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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
    vocab: Vocabulary,
    *,
    tokenize: Callable[[dict], dict] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    max_batches: int | None = None,
    lockstep: bool = False,
    bound: str = "max_batches",
    announce_min_bases: int = ANNOUNCE_MIN_BASES,
) -> dict[str, float]:
    """Exact bits per unit (base or byte) of tiled held-out windows, for any tokenizer.

    ``batches`` are unit windows (``tokens``, ``softmasked``). ``tokenize`` plugs a tokenizer in:
    it maps a unit batch to token windows (``tokens`` right-padded with ``vocab.pad_id``,
    ``units``: units each token covers, ``softmasked``); without it a token is a unit. A token is
    scored unless it is padding or in ``vocab.unscored_ids`` (N for DNA), and its bits count
    against the units it covers, so every tokenizer is scored on the same units.

    Returns ``bpb`` and ``bases`` (all scored units), ``bpb_upper`` and ``bases_upper`` (scored
    units not soft-masked), ``bases_per_token`` (non-padding units per token) and, for H-Nets,
    ``compression_s{s}`` (stage-s tokens per stage-(s+1) token). Sums are float64 and summed over
    ranks, so the result is exact for the union of the ranks' shards.

    An evaluation of at least ``announce_min_bases`` positions (over all ranks) is announced:
    its size and how to bound it (``bound``, the caller's name for ``max_batches``) before the
    first forward, then the time it will take at the rate of its first batches.
    """
    was_training = model.training
    model.eval()
    stages = model.config.num_stages
    # bits, units (all scored); bits, units (upper); units, tokens (non-padding); per stage:
    # valid tokens, chunks
    sums = torch.zeros(6 + 2 * stages, dtype=torch.float64, device=env.device)
    unscored = torch.tensor([vocab.pad_id, *vocab.unscored_ids], device=env.device)
    announce = _Announcer(batches, max_batches, env, bound, announce_min_bases)
    for index, (batch, real) in enumerate(_lockstep(batches, env, lockstep)):
        if max_batches is not None and index >= max_batches:
            break
        if index == 0:
            announce.start(batch)
        elif real:
            announce.done(index)
        if tokenize is not None:
            batch = tokenize(batch)
        tokens = batch["tokens"].to(env.device)
        inputs, mask = shift_right(tokens, vocab.bos_id, vocab.pad_id)
        with autocast():
            output = model(inputs, mask=mask)
        if not real:
            continue
        bits = token_nll(output.logits, tokens).double() / LN2
        units = torch.ones_like(bits)  # units each token covers: one without a tokenizer
        if "units" in batch:
            units = batch["units"].to(env.device).double()
        scored = ~torch.isin(tokens, unscored)
        upper = scored & ~batch["softmasked"].to(env.device)
        present = tokens != vocab.pad_id
        counts = [bits[scored].sum(), units[scored].sum(), bits[upper].sum(), units[upper].sum(),
                  units[present].sum(), present.sum()]
        if len(output.routing) != stages:
            raise ValueError(f"model.config has {stages} stage(s), its output "
                             f"{len(output.routing)}")
        for routing in output.routing:
            counts += routing_counts(routing)
        sums += torch.stack([c.double() for c in counts])
    all_reduce_sum(sums, env)
    model.train(was_training)
    values = sums.tolist()
    bits_all, count_all, bits_upper, count_upper, units_present, tokens_present = values[:6]
    result = {
        "bpb": _ratio(bits_all, count_all),
        "bpb_upper": _ratio(bits_upper, count_upper),
        "bases": count_all,
        "bases_upper": count_upper,
        "bases_per_token": _ratio(units_present, tokens_present),
    }
    for s in range(stages):
        result[f"compression_s{s}"] = _ratio(values[6 + 2 * s], values[7 + 2 * s])
    return result


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
