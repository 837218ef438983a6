"""Section ``throughput``: training bases/s and peak memory of the 1- and 2-stage H-Nets and the
FLOP-matched Transformer and Mamba-2 (``benchmarks.models``) at each length, bf16 autocast."""

from __future__ import annotations

from typing import Any

import torch

from benchmarks import models
from benchmarks.gpu.context import Context, free, prepare_model, sync
from benchmarks.gpu.results import fmt
from benchmarks.gpu_kernels import fast_paths
from benchmarks.timing import peak_memory_of, time_repeats

NEEDS_S = 60.0  # seconds of the budget this section needs to start


def train_case(config: Any, batch: int, length: int, ctx: Context) -> dict[str, Any]:
    from benchmarks.cases import training_step

    tokens = models.dna_batch(batch, length)
    model, compression = prepare_model(config, tokens, ctx)
    amp = torch.bfloat16 if ctx.cuda else None
    step = training_step(model, tokens.to(ctx.device), amp=amp)

    def synced() -> None:
        step()
        sync(ctx.device)

    # Warm-up (kernels compile and autotune on the first step): its peak is the step's memory.
    peak = peak_memory_of(synced) if ctx.cuda else synced()
    timing = time_repeats(synced, warmup=1 if ctx.cuda else 0, repeats=ctx.plan.repeats)
    flops = models.flops_report(model, length, compression)
    bases = batch * length
    return {"batch": batch, "length": length, "compression": compression,
            "precision": "bf16 autocast" if amp else "fp32", **flops,
            "seconds": timing.wall.median, "seconds_all": timing.wall.values,
            "bases_per_s": bases / timing.wall.median,
            "tflops": flops["train_flops_per_base"] * bases / timing.wall.median / 1e12,
            "peak_mib": None if peak is None else peak / 2**20}


def run(ctx: Context) -> dict[str, Any]:
    ctx.need_gpu_or_smoke()
    if ctx.build is not None:  # parity was skipped or cut short: last chance, no waiting
        ctx.kernels["causal_conv1d_build"] = ctx.finish_build(0)
        fast_paths(refresh=True)
    plan = ctx.plan
    widths = models.Widths(*plan.widths)
    rows = []
    for length in plan.lengths:
        batch = max(1, plan.tokens_per_step // length)
        for name in ("hnet_1stage", "hnet_2stage"):
            if ctx.left() < 15:
                rows.append({"length": length, "model": name,
                             "skipped": "the throughput section's time share ran out"})
                continue
            config = models.hnet_config(name, widths)
            row: dict[str, Any] = {"length": length, "model": name,
                                   "layout": config.arch_layout}
            try:
                row.update(train_case(config, batch, length, ctx))
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
            free(ctx.device)  # the case's model and optimizer went out of scope
            rows.append(row)
            if "error" in row:
                continue
            for kind in ("transformer", "mamba2"):
                if ctx.left() < 5:
                    rows.append({"length": length, "model": kind, "matched_to": name,
                                 "skipped": "the throughput section's time share ran out"})
                    continue
                match = models.match_isotropic(kind, row["train_flops_per_base"], length,
                                               config.d_model)
                iso = models.isotropic_config(kind, match["d_model"], match["layers"],
                                              match["d_intermediate"])
                base: dict[str, Any] = {"length": length, "model": kind, "matched_to": name,
                                        "layout": iso.arch_layout, "d_model": match["d_model"],
                                        "flop_gap": match["gap"]}
                try:
                    base.update(train_case(iso, batch, length, ctx))
                    base["hnet_over_this"] = row["bases_per_s"] / base["bases_per_s"]
                    base["hnet_over_this_equal_flop"] = row["tflops"] / base["tflops"]
                except Exception as exc:
                    base["error"] = f"{type(exc).__name__}: {exc}"
                free(ctx.device)
                rows.append(base)
    return {"widths": list(plan.widths), "tokens_per_step": plan.tokens_per_step,
            "repeats": plan.repeats, "rows": rows}


def summary(r: dict[str, Any]) -> list[str]:
    out = [f"widths {r['widths']}, {r['tokens_per_step']} bases per step, median of "
           f"{r['repeats']}", "",
           "| L | model | layout | FLOP gap | train GFLOP/base | bases/s | TFLOP/s | peak MiB |"
           " H-Net / this (raw, equal-FLOP) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        if "error" in row or "skipped" in row:
            why = row.get("error") or row.get("skipped")
            out.append(f"| {row['length']} | {row['model']} | {why} | | | | | | |")
            continue
        ratio = (f"{row['hnet_over_this']:.2f}, {row['hnet_over_this_equal_flop']:.2f}"
                 if "hnet_over_this" in row else "")
        gap = f"{100 * row['flop_gap']:.0f}%" if "flop_gap" in row else ""
        out.append(f"| {row['length']} | {row['model']} | `{row['layout']}` | {gap} |"
                   f" {row['train_flops_per_base'] / 1e9:.4f} | {row['bases_per_s']:.0f} |"
                   f" {row['tflops']:.1f} | {fmt(row['peak_mib'], '.0f')} | {ratio} |")
    return out
