"""AdamW parameter groups: per-stage learning-rate multipliers (paper eq. 11) and no-decay rules.

Groups carry ``lr_multiplier`` (and ``stage``, ``decay``, ``param_names`` for inspection); the
scheduler sets each group's ``lr`` to ``base_lr * schedule(step) * lr_multiplier``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hnet_dna.model.config import per_stage
from hnet_dna.training.config import OptimConfig

StageParameters = Sequence[Sequence[tuple[str, nn.Parameter]]]

# Mamba-2 parameters that parameterise dynamics rather than features: decaying them towards 0
# would change the SSM time scales, so they never decay (the official grouping misses them).
_NO_DECAY_LEAVES = {"bias", "A_log", "D", "dt_bias"}
# Learned lookup vectors: embeddings and the zero-initialised width padding of inner stages.
_EMBEDDING_MARKERS = ("embeddings", "embedding", "pad_dimension")


def eq11_lr_multipliers(
    target_ratios: Sequence[float], widths: Sequence[int], reference_ratio: float = 1.0
) -> list[float]:
    """Paper eq. (11): ``lambda_s = sqrt(N_ref * prod_{i<s} 1/N_i * D_S / D_s)``.

    ``target_ratios`` are the N of the chunking stages (len S), ``widths`` the d_model of every
    stage (len S + 1). LR scales with the square root of the batch in stage-s tokens (each stage
    sees prod_{i<s} N_i times fewer tokens) and inversely with the square root of its width.
    """
    if len(widths) != len(target_ratios) + 1:
        raise ValueError(
            f"need one width per stage ({len(target_ratios) + 1}), got {len(widths)}: {widths}"
        )
    multipliers = []
    tokens_shrink = 1.0
    for stage, width in enumerate(widths):
        multipliers.append(math.sqrt(reference_ratio / tokens_shrink * widths[-1] / width))
        if stage < len(target_ratios):
            tokens_shrink *= float(target_ratios[stage])
    return multipliers


def uses_weight_decay(name: str, param: nn.Parameter, decay_embeddings: bool = False) -> bool:
    """Whether AdamW decays ``param``: not norms, biases, A_log, D, dt_bias, (embeddings)."""
    parts = name.split(".")
    if parts[-1] in _NO_DECAY_LEAVES:
        return False
    # Any RMSNorm weight: block norm1/norm2, isotropic rmsnorm, Mamba-2 gated mixer.norm.
    if any("norm" in part for part in parts):
        return False
    if not decay_embeddings and any(m in part for part in parts for m in _EMBEDDING_MARKERS):
        return False
    return True


def build_param_groups(
    stage_parameters: StageParameters,
    lr_multipliers: Sequence[float],
    weight_decay: float,
    decay_embeddings: bool = False,
) -> list[dict[str, Any]]:
    """One AdamW group per (stage, decay / no-decay), each tagged with its ``lr_multiplier``."""
    if len(lr_multipliers) != len(stage_parameters):
        raise ValueError(
            f"{len(lr_multipliers)} LR multipliers for {len(stage_parameters)} stages"
        )
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for stage, (named, multiplier) in enumerate(zip(stage_parameters, lr_multipliers, strict=True)):
        # decay? -> (names, parameters)
        split: dict[bool, tuple[list[str], list[nn.Parameter]]] = {True: ([], []), False: ([], [])}
        for name, param in named:
            if id(param) in seen:
                raise ValueError(f"parameter {name} appears in more than one stage")
            seen.add(id(param))
            if not param.requires_grad:
                continue
            names, params = split[uses_weight_decay(name, param, decay_embeddings)]
            names.append(name)
            params.append(param)
        for decay in (True, False):
            names, params = split[decay]
            if params:
                groups.append(
                    {
                        "params": params,
                        "param_names": names,
                        "stage": stage,
                        "decay": decay,
                        "lr_multiplier": float(multiplier),
                        "weight_decay": weight_decay if decay else 0.0,
                    }
                )
    return groups


def resolve_lr_multipliers(
    cfg: OptimConfig, target_ratios: Sequence[float], widths: Sequence[int]
) -> list[float]:
    """The configured override list, or eq. (11) from the target ratios and stage widths."""
    num_stages = len(widths)
    if cfg.lr_multipliers is not None:
        return per_stage(cfg.lr_multipliers, num_stages, "optim.lr_multipliers")
    return eq11_lr_multipliers(target_ratios, widths, cfg.lr_reference_ratio)


def build_optimizer(
    stage_parameters: StageParameters, cfg: OptimConfig, lr_multipliers: Sequence[float]
) -> torch.optim.AdamW:
    """AdamW over the per-stage groups; each group's initial lr = ``cfg.lr * multiplier``."""
    groups = build_param_groups(
        stage_parameters, lr_multipliers, cfg.weight_decay, cfg.weight_decay_embeddings
    )
    for group in groups:
        group["lr"] = cfg.lr * group["lr_multiplier"]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
