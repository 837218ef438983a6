"""One measured case: a model, a batch shape, a training step (or forward), timed in isolation.

Runs inside a fresh process (``timing.isolated``): build the model, calibrate its routing to the
target compression, count FLOPs at the realised compression, record the peak memory of the
first (warm-up) step, then time the remaining repeats.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks import models
from benchmarks.timing import matmul_flops, peak_memory_of, set_threads, time_repeats
from hnet_dna.genomics.alphabet import DNA_VOCAB
from hnet_dna.model.build import build_model
from hnet_dna.model.compile import compile_enabled, set_compile
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.training.config import TrainerConfig
from hnet_dna.training.distributed import DistEnv
from hnet_dna.training.trainer import Trainer


@dataclass
class Options:
    """Suite-wide settings (``python -m benchmarks.run --help``)."""

    quick: bool = False
    threads: int = 1
    repeats: int = 3  # timed repeats after one warm-up

    def spec(self, config: Any, batch: int, length: int, **extra: Any) -> dict[str, Any]:
        """A ``measure_case`` spec for ``config`` (an ``HNetConfig``)."""
        return {"config": config.to_dict(), "batch": batch, "length": length,
                "threads": self.threads, "repeats": self.repeats, **extra}


def training_step(model: HNetForCausalLM, tokens: torch.Tensor,
                  amp: torch.dtype | None = None) -> Any:
    """A closure doing one optimizer step with the pretraining ``Trainer.train_step`` itself:
    forward, weighted CE + ratio loss, backward, clipping, NaN guard, AdamW with per-stage
    groups and eq. 11 multipliers. ``amp=torch.bfloat16`` is the trainer's bf16 precision.

    The learning rate is 0 so the weights (and the calibrated routing) stay put across repeats;
    AdamW still does all of its arithmetic.
    """
    if amp not in (None, torch.bfloat16):
        raise ValueError(f"the trainer runs fp32 or bf16 autocast, not {amp}")
    cfg = TrainerConfig(max_steps=2**31 - 1, precision="fp32" if amp is None else "bf16",
                        progress_bar=False)
    cfg.optim.lr = 0.0
    cfg.loss.target_ratio = [models.TARGET_RATIO]
    run_dir = tempfile.TemporaryDirectory(prefix="bench-trainer-")  # metrics.jsonl only
    no_stream: Any = iter(())  # the batch is given to each step
    trainer = Trainer(cfg, model, no_stream, DNA_VOCAB, run_dir.name,
                      DistEnv(device=tokens.device))
    batch = {"tokens": tokens,
             "loss_weight": torch.ones(tokens.shape, dtype=torch.float32, device=tokens.device)}

    def step(run_dir: Any = run_dir) -> None:  # keeps the folder alive with the closure
        trainer.train_step([batch])

    return step


def forward_step(model: HNetForCausalLM, tokens: torch.Tensor) -> Any:
    """No-grad forward returning the backbone output (embedding extraction)."""
    model.eval()

    @torch.no_grad()
    def step() -> None:
        model(tokens, output_hidden_states=True)

    return step


def measure_case(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec``: config (dict), batch, length, threads, repeats, mode ('train' | 'forward'),
    optional seed, calibrate (default True), matmul (also measure matmul FLOP/s here)."""
    set_threads(spec["threads"])
    config = HNetConfig.from_dict(spec["config"])
    batch, length = spec["batch"], spec["length"]
    model = build_model(config, seed=spec.get("seed", 0))
    tokens = models.dna_batch(batch, length, seed=spec.get("seed", 0))
    compression: list[float] = []
    if config.num_stages and spec.get("calibrate", True):
        compression = models.calibrate_routing(model, tokens[:1])
    if config.num_stages:
        compression = models.realised_compression(model, tokens)
    flops = models.flops_report(model, length, compression)
    step = (training_step if spec.get("mode", "train") == "train" else forward_step)(model,
                                                                                     tokens)
    if compile_enabled():
        # ru_maxrss is a high-water mark, so the peak is taken on an eager step first; the next
        # (untimed) step compiles the fused chains.
        set_compile(False)
        peak = peak_memory_of(step)
        set_compile(None)
        step()
    else:
        peak = peak_memory_of(step)  # the warm-up step
    matmuls: list[dict[str, float]] = []

    def matmul_peak() -> None:
        # Timed before every repeat: the speed of a shared machine drifts, and utilisation should
        # compare the model with the matmul under the same conditions.
        matmuls.append(matmul_flops(spec["threads"], repeats=3))

    timing = time_repeats(step, warmup=0, repeats=spec["repeats"],
                          before_each=matmul_peak if spec.get("matmul") else None)
    bases = batch * length
    out: dict[str, Any] = {
        "batch": batch, "length": length, "compression": compression, **flops,
        "timing": timing.to_dict(),
        "bases_per_s": bases / timing.wall.median,
        "cpu_bases_per_s": bases / timing.cpu.median,
        "seconds_per_base": timing.wall.median / bases,
        "cpu_seconds_per_base": timing.cpu.median / bases,
        "peak_bytes": peak, "peak_bytes_per_base": peak / bases,
    }
    flops_per_step = (flops["train_flops_per_base"] if spec.get("mode", "train") == "train"
                      else flops["forward_flops_per_base"]) * bases
    out["achieved_flops"] = flops_per_step / timing.wall.median
    out["cpu_achieved_flops"] = flops_per_step / timing.cpu.median
    if matmuls:
        mm = {k: statistics.median(m[k] for m in matmuls) for k in ("wall_flops", "cpu_flops")}
        out["matmul"] = {**mm, "runs": matmuls}
        out["utilisation"] = out["achieved_flops"] / mm["wall_flops"]
        out["cpu_utilisation"] = out["cpu_achieved_flops"] / mm["cpu_flops"]
    return out
