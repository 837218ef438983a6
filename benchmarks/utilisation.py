"""Hardware utilisation: achieved model FLOP/s over the FLOP/s of a plain fp32 matmul.

Model FLOP/s = counted training FLOPs per base (at the realised compression) x bases/s of a
full optimizer step at 4 kb; the matmul (1024^3) is timed in the same process before every
timed step, with the same thread count (median): the practical peak of that process on this
machine. Both clocks are reported; on a shared machine the CPU-time ratio is the meaningful
one.
"""

from __future__ import annotations

from typing import Any

from benchmarks import models
from benchmarks.cases import Options, measure_case
from benchmarks.timing import isolated

NAME = "utilisation"
LENGTH = 4096


def model_configs() -> dict[str, Any]:
    """The zoo H-Nets, plus isotropic Transformer / Mamba-2 matched to the 1-stage H-Net."""
    out = {name: models.hnet_config(name)
           for name in ("hnet_1stage", "hnet_1stage_mamba", "hnet_2stage")}
    target = models.train_flops_per_base(out["hnet_1stage"], LENGTH)
    for kind in ("transformer", "mamba2"):
        m = models.match_isotropic(kind, target, LENGTH, out["hnet_1stage"].d_model)
        out[kind] = models.isotropic_config(kind, m["d_model"], m["layers"], m["d_intermediate"])
    return out


def run(opts: Options) -> dict[str, Any]:
    batch = 1 if opts.quick else 2
    rows = {}
    for name, config in model_configs().items():
        r = isolated(measure_case, opts.spec(config, batch, LENGTH, matmul=True))
        r["layout"] = config.arch_layout
        rows[name] = r
    return {"length": LENGTH, "batch": batch, "models": rows}


def summarize(result: dict[str, Any]) -> list[str]:
    lines = ["| model | layout | train GFLOP/base | model GFLOP/s (CPU) | matmul GFLOP/s (CPU)"
             " | utilisation (CPU) | utilisation (wall) |", "|---|---|---|---|---|---|---|"]
    for name, r in result["models"].items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} ||||||")
            continue
        lines.append(
            f"| {name} | `{r['layout']}` | {r['train_flops_per_base'] / 1e9:.4f}"
            f" | {r['cpu_achieved_flops'] / 1e9:.1f} | {r['matmul']['cpu_flops'] / 1e9:.1f}"
            f" | {100 * r['cpu_utilisation']:.0f}% | {100 * r['utilisation']:.0f}% |")
    return lines
