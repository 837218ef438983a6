"""Section ``generation``: cached decoding tokens/s (batch 1) at two contexts."""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks import models
from benchmarks.gpu.context import Context, free, prepare_model, sync

NEEDS_S = 15.0  # seconds of the budget this section needs to start


def run(ctx: Context) -> dict[str, Any]:
    ctx.need_gpu_or_smoke()
    from benchmarks.inference import generation_configs

    plan = ctx.plan
    configs = generation_configs(models.Widths(*plan.widths))
    rows: dict[str, Any] = {}
    total = max(plan.gen_contexts) + plan.gen_steps + 4
    ids = models.dna_batch(1, total, seed=1)
    for name in ("hnet_1stage", "hnet_2stage", "mamba2", "transformer_swa", "transformer"):
        if ctx.left() < 5:
            rows[name] = {"skipped": "the generation section's time share ran out"}
            continue
        try:
            model, _ = prepare_model(configs[name], ids[:, : max(plan.gen_contexts)], ctx)
            model.eval()
            dev_ids = ids.to(ctx.device)
            row: dict[str, Any] = {"layout": configs[name].arch_layout}
            with torch.no_grad():
                for context in plan.gen_contexts:
                    cache = model.allocate_inference_cache(1, total)
                    model(dev_ids[:, :context], cache=cache)
                    for pos in range(context, context + 2):  # warm-up steps
                        model.step(dev_ids[:, pos], cache)
                    sync(ctx.device)
                    t0 = time.perf_counter()
                    for pos in range(context + 2, context + 2 + plan.gen_steps):
                        model.step(dev_ids[:, pos], cache)
                    sync(ctx.device)
                    row[str(context)] = plan.gen_steps / (time.perf_counter() - t0)
            first, last = (str(c) for c in (plan.gen_contexts[0], plan.gen_contexts[-1]))
            row["ratio"] = row[last] / row[first]
            rows[name] = row
            del model
        except Exception as exc:
            rows[name] = {"error": f"{type(exc).__name__}: {exc}"}
        free(ctx.device)
    return {"contexts": list(plan.gen_contexts), "steps": plan.gen_steps, "batch": 1,
            "precision": "fp32", "rows": rows}


def summary(r: dict[str, Any]) -> list[str]:
    ctxs = [str(c) for c in r["contexts"]]
    out = [f"cached decoding, batch {r['batch']}, {r['precision']}, tokens/s", "",
           "| model | " + " | ".join(f"@{c}" for c in ctxs) + f" | {ctxs[-1]}/{ctxs[0]} |",
           "|---|" + "---|" * (len(ctxs) + 1)]
    for name, row in r["rows"].items():
        if "error" in row or "skipped" in row:
            out.append(f"| {name} | {row.get('error') or row.get('skipped')} |")
            continue
        out.append(f"| {name} | " + " | ".join(f"{row[c]:.0f}" for c in ctxs)
                   + f" | {row['ratio']:.2f} |")
    return out
