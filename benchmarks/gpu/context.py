"""What every section of ``gpu_check`` gets: the :class:`Plan` (sizes, the sections' time
shares, the whole run's budget), the :class:`Context` (device, deadline, kernel set-up), the
:class:`Skip` a section raises with its reason, and the device helpers the sections share."""

from __future__ import annotations

import gc
import math
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks import models
from benchmarks.gpu_kernels import finish_conv_build
from hnet_dna.model.build import build_model

NO_CUDA = "no CUDA device in this run (the GPU rows need one)"


class Skip(Exception):
    """A section or row that cannot run here; the message is the reason recorded."""


@dataclass
class Plan:
    """Sizes of every section: full (GPU) or smoke (tiny, seconds on a CPU)."""

    smoke: bool
    budget_s: float = 450.0  # whole run; sections that no longer fit are skipped
    widths: tuple[int, int] = (512, 768)  # throughput / generation zoo (outer, inner)
    lengths: tuple[int, ...] = (1024, 8192, 32768)
    tokens_per_step: int = 32768
    repeats: int = 3
    parity_length: int = 2048
    attention_length: int = 4096
    gen_contexts: tuple[int, ...] = (1024, 8192)
    gen_steps: int = 64
    de_width: int = 256
    de_length: int = 4096
    de_batch: int = 8
    de_seconds: float = 45.0  # per model; three models
    de_eval_bases: int = 262144
    de_evals: int = 4  # held-out evaluations along each run
    de_max_steps: int | None = None
    de_lr: float = 2e-3
    # Seconds each section may use (the rest of a section is skipped, row by row, when its
    # share or the whole budget runs out): 120 + 120 + 40 + 160 + start-up < 8 minutes.
    shares: dict[str, float] = field(default_factory=lambda: {
        "parity": 120.0, "throughput": 120.0, "generation": 40.0, "data_efficiency": 160.0})
    corpus: str = "yeast_chrI"
    calibrate_length: int = 4096  # routing calibration prefix

    @classmethod
    def make(cls, smoke: bool, **overrides: Any) -> Plan:
        plan = cls(smoke=smoke)
        if smoke:
            plan = cls(smoke=True, budget_s=240.0, widths=(32, 64), lengths=(128,),
                       tokens_per_step=256, repeats=1, parity_length=96, attention_length=160,
                       gen_contexts=(32, 64), gen_steps=3, de_width=32, de_length=128,
                       de_batch=2, de_seconds=1.0, de_eval_bases=512, de_evals=2,
                       de_max_steps=3, calibrate_length=256)
        for key, value in overrides.items():
            if value is not None:
                setattr(plan, key, value)
        return plan


@dataclass
class Context:
    plan: Plan
    device: torch.device
    deadline: float
    kernels: dict[str, Any] = field(default_factory=dict)
    build: subprocess.Popen | None = None
    build_started: float = 0.0
    section_end: float = math.inf

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def left(self) -> float:
        """Seconds left to the current section (its share, and the whole run's budget)."""
        return min(self.deadline, self.section_end) - time.perf_counter()

    def finish_build(self, wait_s: float) -> str:
        """Wait for (or stop) the background causal_conv1d build and import it."""
        build, self.build = self.build, None
        if build is None:
            return "no build started"
        return finish_conv_build(build, self.build_started, wait_s)

    def need_gpu_or_smoke(self) -> None:
        if not self.cuda and not self.plan.smoke:
            raise Skip(NO_CUDA + "; --smoke runs the CPU-capable parts at tiny shapes")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def prepare_model(config: Any, tokens: torch.Tensor, ctx: Context) -> tuple[Any, list[float]]:
    """Build, move to the device, calibrate routing to N = 3 on a prefix of the first row;
    returns the model and its realised compression on ``tokens``."""
    model = build_model(config, seed=0).to(ctx.device)
    tokens = tokens.to(ctx.device)
    if not config.num_stages:
        return model, []
    models.calibrate_routing(model, tokens[:1, : ctx.plan.calibrate_length])
    return model, models.realised_compression(model, tokens)
