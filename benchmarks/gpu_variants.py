"""GPU check section: ``score-variants`` variants/s, whole windows vs the shared REF/ALT prefix.

``variant_rate(ctx)`` is one section of ``benchmarks/gpu_check.py`` (its ``Context``: ``plan``,
``device``, ``left()``, ``need_gpu_or_smoke()``); ``variant_rate_md(result)`` its report lines.
The hnet_1stage benchmark H-Net at the GPU zoo widths (``plan.widths``, routing calibrated to
N = 3) scores the excerpt VCF (tests/data/evaluation, 769 records) at the default window (256),
both strands averaged, bf16 autocast (``PerBaseForward`` on CUDA), at two batch sizes; each row
is timed after a warm-up batch and stops when the section's time share runs out. The max score
difference between the two paths is reported (bf16 rounding, not the 1e-5 of float32).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from benchmarks import models
from benchmarks.variant_rate import FASTA, VCF, WINDOW

SHARE_S = 40.0  # the section's time share in gpu_check's plan
BATCHES = (16, 64)


def variant_rate(ctx: Any) -> dict[str, Any]:
    """Variants/s per (batch size, path); smoke: tiny widths, 8 variants, batch 8, on the CPU."""
    ctx.need_gpu_or_smoke()
    from hnet_dna.evaluation.runner import PerBaseForward
    from hnet_dna.evaluation.scoring import VariantScorer
    from hnet_dna.evaluation.vcf_scoring import score_vcf
    from hnet_dna.genomics.fasta import Genome
    from hnet_dna.model.build import build_model

    plan = ctx.plan
    variants = 8 if plan.smoke else None  # the whole excerpt on a GPU
    batches = (8,) if plan.smoke else BATCHES
    config = models.hnet_config("hnet_1stage", models.Widths(*plan.widths))
    model = build_model(config, seed=0, device=ctx.device).eval()
    with torch.no_grad():
        compression = models.calibrate_routing(
            model, models.dna_batch(4, 1024, seed=1).to(ctx.device))
    genome = Genome(FASTA, backend="memory")
    rows: dict[str, Any] = {}
    scores: dict[bool, Any] = {}
    for batch in batches:
        for share in (False, True):
            key = f"batch {batch}, {'shared prefix' if share else 'whole windows'}"
            if ctx.left() < 5:
                rows[key] = {"skipped": "the variant_rate section's time share ran out"}
                continue
            scorer = VariantScorer(PerBaseForward(model, batch), share_prefix=share)
            score_vcf(VCF, genome, scorer, WINDOW, max_variants=batch, progress=False)  # warm-up
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            t0 = time.perf_counter()
            table, _ = score_vcf(VCF, genome, scorer, WINDOW, max_variants=variants,
                                 progress=False)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            seconds = time.perf_counter() - t0
            rows[key] = {"alts": table.height, "seconds": seconds,
                         "variants_per_s": table.height / seconds}
            scores[share] = table["llr"].to_numpy()
    diff = None
    if len(scores) == 2:
        gap = abs(scores[True] - scores[False])
        diff = float(gap[gap == gap].max())  # NaN-free (rows that were not scored)
    return {"model": "hnet_1stage", "widths": list(plan.widths), "window": WINDOW,
            "strands": "both (averaged)", "precision": "bf16 autocast" if ctx.device.type ==
            "cuda" else "fp32", "compression": compression, "rows": rows,
            "max_llr_diff": diff}


def variant_rate_md(r: dict[str, Any]) -> list[str]:
    out = [f"score-variants, {r['model']} widths {r['widths']}, window {r['window']}, "
           f"{r['strands']}, {r['precision']}; max |llr| difference shared vs whole: "
           f"{r['max_llr_diff']}", "", "| batch, path | ALTs | s | variants/s |",
           "|---|---|---|---|"]
    for key, row in r["rows"].items():
        if "skipped" in row or "error" in row:
            out.append(f"| {key} | {row.get('skipped') or row.get('error')} |||")
            continue
        out.append(f"| {key} | {row['alts']} | {row['seconds']:.1f} "
                   f"| {row['variants_per_s']:.0f} |")
    return out
