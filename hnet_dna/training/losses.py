"""Pretraining loss: weighted next-base cross-entropy + alpha * sum of per-stage ratio losses.

A window of L tokens ``b0 .. b_{L-1}`` is fed as ``[BOS, b0 .. b_{L-2}]`` (see
``hnet_dna.genomics.framing.shift_right``) and scored on ``b0 .. b_{L-1}``, so tiling a sequence
with windows scores every token once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hnet_dna.model.chunking import RoutingOutput, ratio_loss

LN2 = math.log(2.0)


def token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-token negative log-likelihood in nats, ``(B, L)`` float32."""
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return nll.view_as(targets)


@dataclass
class LossParts:
    loss: Tensor  # what to backpropagate (normalised as documented in ``pretraining_loss``)
    nll_sum: Tensor  # detached sum of weight * nll (nats)
    weight_sum: Tensor  # detached sum of weights of this micro-batch
    ratio_losses: list[Tensor]  # detached, one per stage
    routing_counts: list[tuple[Tensor, Tensor]]  # (valid tokens, boundaries) per stage, detached


def routing_counts(routing: RoutingOutput) -> tuple[Tensor, Tensor]:
    """Valid tokens and selected boundaries at one stage (for the realised compression)."""
    selected = routing.boundary_mask
    if routing.mask is None:
        return selected.new_tensor(selected.numel(), dtype=torch.float32), selected.sum().float()
    return routing.mask.sum().float(), (selected & routing.mask).sum().float()


def pretraining_loss(
    logits: Tensor,  # (B, L, V)
    routing: Sequence[RoutingOutput],
    targets: Tensor,  # (B, L) int64
    weight: Tensor,  # (B, L) float32 loss weights (0 = unscored)
    *,
    weight_norm: Tensor | float,
    ratio_alpha: float,
    target_ratios: Sequence[float],
    ratio_scale: float = 1.0,
) -> LossParts:
    """``sum(w * nll) / weight_norm + ratio_scale * alpha * sum_s ratio_loss_s``.

    ``weight_norm`` is the total weight of the whole optimizer step (all micro-batches, all ranks
    divided by the world size when gradients are averaged), so the cross-entropy term is the exact
    weighted mean over the global batch however it is split. The ratio loss is a per-micro-batch
    statistic (as in the official code); ``ratio_scale`` = 1 / micro-batches averages it.
    """
    if len(target_ratios) != len(routing):
        raise ValueError(f"{len(target_ratios)} target ratios for {len(routing)} routing stages")
    nll = token_nll(logits, targets)
    # where() rather than a product: a weight-0 padding position must not turn NaN into the sum.
    weighted = torch.where(weight > 0, nll * weight, torch.zeros_like(nll))
    nll_sum = weighted.sum()
    ratios = [ratio_loss(r, n) for r, n in zip(routing, target_ratios, strict=True)]
    loss = nll_sum / weight_norm
    if ratios and ratio_alpha:
        loss = loss + ratio_scale * ratio_alpha * torch.stack(ratios).sum()
    return LossParts(
        loss=loss,
        nll_sum=nll_sum.detach(),
        weight_sum=weight.sum().detach(),
        ratio_losses=[r.detach() for r in ratios],
        routing_counts=[tuple(c.detach() for c in routing_counts(r)) for r in routing],
    )


def bits_per_token(nll_sum_nats: float, count: float) -> float:
    """Mean bits per scored token from a sum of natural-log losses."""
    return nll_sum_nats / count / LN2 if count > 0 else float("nan")
