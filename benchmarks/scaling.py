"""Scaling with context length: training time and peak memory per base from 1 kb to 64 kb.

Every case processes the same number of bases per optimizer step (batch = tokens / length), so
tensor sizes, caches and per-step overheads are the same at every length and only the
length-dependent work changes. Mamba-2, H-Nets with a Mamba-2 main network and sliding-window
attention should stay flat; global attention (the Transformer, and the H-Net whose main network
is a global-attention Transformer on the chunks) grows with L.

The models are the zoo at half width (``WIDTHS``) so that the 64 kb steps fit a CPU budget.
"""

from __future__ import annotations

from typing import Any

from benchmarks import models
from benchmarks.cases import Options, measure_case
from benchmarks.timing import isolated

NAME = "scaling"
WIDTHS = models.Widths(outer=64, inner=96)
GLOBAL_MAX = 16384  # longest context for models with global attention at base resolution


def model_configs() -> dict[str, Any]:
    return {
        "mamba2": models.isotropic_config("mamba2", WIDTHS.inner, 6),
        "hnet_1stage_mamba": models.hnet_config("hnet_1stage_mamba", WIDTHS),
        "hnet_1stage": models.hnet_config("hnet_1stage", WIDTHS),
        "transformer_swa": models.isotropic_config("transformer_swa", WIDTHS.inner, 4,
                                                   WIDTHS.mlp),
        "transformer": models.isotropic_config("transformer", WIDTHS.inner, 4, WIDTHS.mlp),
    }


def plan(opts: Options) -> tuple[list[int], int]:
    """(context lengths, bases per step)."""
    if opts.quick:
        return [1024, 32768], 32768
    return [1024, 4096, 16384, 32768, 65536], 65536


def run(opts: Options) -> dict[str, Any]:
    lengths, tokens = plan(opts)
    repeats = min(opts.repeats, 2)  # 64k-base steps: the warm-up plus two repeats
    out: dict[str, Any] = {"tokens_per_step": tokens, "models": {}}
    for name, config in model_configs().items():
        per_length = {}
        for length in lengths:
            if name == "transformer" and length > GLOBAL_MAX:
                continue
            spec = opts.spec(config, tokens // length, length)
            spec["repeats"] = repeats
            per_length[str(length)] = isolated(measure_case, spec)
        out["models"][name] = {"layout": config.arch_layout, "lengths": per_length}
        base = per_length.get(str(lengths[0]), {})
        for r in per_length.values():
            if "error" not in r and "error" not in base:
                r["time_vs_first"] = r["seconds_per_base"] / base["seconds_per_base"]
                r["cpu_time_vs_first"] = r["cpu_seconds_per_base"] / base["cpu_seconds_per_base"]
                r["memory_vs_first"] = r["peak_bytes_per_base"] / max(base["peak_bytes_per_base"],
                                                                       1.0)
                # How much of the growth is the algorithm: counted FLOPs per base vs 1 kb.
                r["flops_vs_first"] = r["train_flops_per_base"] / base["train_flops_per_base"]
    return out


def summarize(result: dict[str, Any]) -> list[str]:
    lines = ["| model | L | batch | CPU us/base | wall us/base | vs 1 kb (CPU, wall) "
             "| FLOPs/base vs 1 kb | peak KiB/base | memory vs 1 kb |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in result["models"].items():
        for length, r in entry["lengths"].items():
            if "error" in r:
                lines.append(f"| {name} | {length} | error: {r['error']} |||||||")
                continue
            lines.append(
                f"| {name} | {length} | {r['batch']} | {1e6 * r['cpu_seconds_per_base']:.1f}"
                f" | {1e6 * r['seconds_per_base']:.1f}"
                f" | {r.get('cpu_time_vs_first', float('nan')):.2f},"
                f" {r.get('time_vs_first', float('nan')):.2f}"
                f" | {r.get('flops_vs_first', float('nan')):.2f}"
                f" | {r['peak_bytes_per_base'] / 1024:.1f}"
                f" | {r.get('memory_vs_first', float('nan')):.2f} |")
    return lines
