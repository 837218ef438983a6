"""Training throughput and peak memory: H-Nets vs FLOP-matched isotropic Transformer / Mamba-2.

For each context length and each H-Net (1-stage, 2-stage), the isotropic Transformer (global
attention) and Mamba-2 whose counted training FLOPs per base are closest to the H-Net's at that
length are built and measured the same way: one optimizer step on ``tokens_per_step`` bases
(batch = tokens / length), in a fresh process per case.

``ratio`` is H-Net bases/s over the baseline's; ``flop_ratio`` corrects for the remaining FLOP
gap of the match (H-Net FLOP/s over the baseline's), i.e. the ratio at exactly equal FLOPs.
"""

from __future__ import annotations

from typing import Any

from benchmarks import models
from benchmarks.cases import Options, measure_case
from benchmarks.timing import isolated

NAME = "throughput"
HNETS = ("hnet_1stage", "hnet_2stage")
BASELINES = ("transformer", "mamba2")


def plan(opts: Options) -> tuple[list[int], int]:
    """(context lengths, bases per optimizer step)."""
    return ([1024, 4096], 4096) if opts.quick else ([1024, 4096, 16384], 16384)


def run(opts: Options) -> dict[str, Any]:
    lengths, tokens = plan(opts)
    rows = []
    for length in lengths:
        batch = max(1, tokens // length)
        for name in HNETS:
            config = models.hnet_config(name)
            hnet = isolated(measure_case, opts.spec(config, batch, length))
            row: dict[str, Any] = {"length": length, "batch": batch, "hnet": name,
                                   "hnet_result": hnet}
            if "error" in hnet:
                rows.append(row)
                continue
            for kind in BASELINES:
                match = models.match_isotropic(kind, hnet["train_flops_per_base"], length,
                                               config.d_model)
                iso_cfg = models.isotropic_config(kind, match["d_model"], match["layers"],
                                                  match["d_intermediate"])
                base = isolated(measure_case, opts.spec(iso_cfg, batch, length))
                row[kind] = {"match": match, "result": base}
                if "error" not in base:
                    row[kind]["ratio"] = hnet["bases_per_s"] / base["bases_per_s"]
                    row[kind]["cpu_ratio"] = hnet["cpu_bases_per_s"] / base["cpu_bases_per_s"]
                    row[kind]["flop_ratio"] = hnet["achieved_flops"] / base["achieved_flops"]
                    row[kind]["cpu_flop_ratio"] = (hnet["cpu_achieved_flops"]
                                                   / base["cpu_achieved_flops"])
            rows.append(row)
    return {"tokens_per_step": tokens, "rows": rows}


def _mb(x: float) -> str:
    return f"{x / 2**20:.0f}"


def summarize(result: dict[str, Any]) -> list[str]:
    """Markdown table rows."""
    lines = ["| L | model | layout | train GFLOP/base | bases/s (wall) | bases/s (CPU) | peak MiB"
             " | H-Net / model (wall, CPU, equal-FLOP CPU) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        h = row["hnet_result"]
        if "error" in h:
            lines.append(f"| {row['length']} | {row['hnet']} | error: {h['error']} |||||")
            continue
        entries = [(row["hnet"], models.hnet_config(row["hnet"]).arch_layout, h, None)]
        for kind in BASELINES:
            if kind in row:
                m = row[kind]["match"]
                layout = models.isotropic_config(kind, m["d_model"], m["layers"],
                                                 m["d_intermediate"]).arch_layout
                label = f"{kind} d={m['d_model']} (FLOP gap {100 * m['gap']:.0f}%)"
                entries.append((label, layout, row[kind]["result"], row[kind]))
        for label, layout, r, cmp in entries:
            if "error" in r:
                lines.append(f"| {row['length']} | {label} | error: {r['error']} |||||")
                continue
            ratio = ("" if cmp is None else
                     f"{cmp['ratio']:.2f}, {cmp['cpu_ratio']:.2f}, {cmp['cpu_flop_ratio']:.2f}")
            lines.append(
                f"| {row['length']} | {label} | `{layout}` | {r['train_flops_per_base'] / 1e9:.4f}"
                f" | {r['bases_per_s']:.0f} | {r['cpu_bases_per_s']:.0f} | {_mb(r['peak_bytes'])}"
                f" | {ratio} |")
    return lines
