"""Learning-rate schedules as step -> factor functions, driven by ``torch``'s ``LambdaLR``.

Each optimizer group starts at ``base_lr * lr_multiplier``; LambdaLR multiplies that by the
factor, so the per-stage multipliers are preserved at every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR

from hnet_dna.training.config import ScheduleConfig

DECAY_SHAPES = ("1-sqrt", "linear", "cosine")


def _warmup(step: int, warmup_steps: int) -> float:
    # Step 0 trains at 1/warmup of the peak rather than 0 so no optimizer step is wasted.
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def _decay_curve(progress: float, shape: str) -> float:
    """1 -> 0 as ``progress`` goes 0 -> 1."""
    progress = min(max(progress, 0.0), 1.0)
    if shape == "1-sqrt":  # the inverse-sqrt cooldown of the WSD recipe
        return 1.0 - math.sqrt(progress)
    if shape == "linear":
        return 1.0 - progress
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown decay shape {shape!r}; expected one of {DECAY_SHAPES}")


@dataclass
class WarmupStableDecay:
    """Linear warmup, constant plateau, then the last ``decay_steps`` fall towards ``min_ratio``."""

    total_steps: int
    warmup_steps: int
    decay_steps: int
    shape: str = "1-sqrt"
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        decay_start = self.total_steps - self.decay_steps
        if step < decay_start or self.decay_steps <= 0:
            return 1.0
        # progress is 0 at the first decay step and (decay - 1) / decay at the last: the rate
        # would reach min_ratio at step total_steps, so no step is spent at the floor.
        progress = (step - decay_start) / self.decay_steps
        return self.min_ratio + (1.0 - self.min_ratio) * _decay_curve(progress, self.shape)


@dataclass
class WarmupCosine:
    """Linear warmup, then cosine decay towards ``min_ratio`` (reached at ``total_steps``)."""

    total_steps: int
    warmup_steps: int
    min_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return _warmup(step, self.warmup_steps)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = (step - self.warmup_steps) / span  # min_ratio would be reached at total_steps
        return self.min_ratio + (1.0 - self.min_ratio) * _decay_curve(progress, "cosine")


@dataclass
class Constant:
    warmup_steps: int = 0

    def __call__(self, step: int) -> float:
        return _warmup(step, self.warmup_steps)


LrFactor = WarmupStableDecay | WarmupCosine | Constant


def lr_factor_fn(cfg: ScheduleConfig, total_steps: int) -> LrFactor:
    """The schedule named by ``cfg.name`` over ``total_steps`` optimizer steps."""
    for name in ("warmup_fraction", "decay_fraction", "min_lr_ratio"):
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"schedule.{name} must be in [0, 1], got {value}")
    warmup = round(cfg.warmup_fraction * total_steps)
    if cfg.name == "wsd":
        if cfg.decay_shape not in DECAY_SHAPES:
            raise ValueError(f"unknown decay_shape {cfg.decay_shape!r}; use one of {DECAY_SHAPES}")
        decay = round(cfg.decay_fraction * total_steps)
        if warmup + decay > total_steps:
            raise ValueError(
                f"warmup ({cfg.warmup_fraction}) + decay ({cfg.decay_fraction}) exceed the run"
            )
        return WarmupStableDecay(total_steps, warmup, decay, cfg.decay_shape, cfg.min_lr_ratio)
    if cfg.name == "cosine":
        return WarmupCosine(total_steps, warmup, cfg.min_lr_ratio)
    if cfg.name == "constant":
        return Constant(warmup)
    raise ValueError(f"unknown schedule.name {cfg.name!r}; expected wsd, cosine or constant")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int
) -> LambdaLR:
    """LambdaLR over all groups with the configured factor function."""
    return LambdaLR(optimizer, lr_factor_fn(cfg, total_steps))
