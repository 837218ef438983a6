"""Inference: embedding extraction bases/s, and generation cost per token at 1k and 16k context.

Generation: prefill the context into the inference cache, then time single-token ``step`` calls
(the cached cost per generated token), and a full no-cache forward over the context (what every
new token costs when the prefix is recomputed). Cached steps should cost the same at 1k and 16k
for Mamba-2 and H-Nets (constant-size states; a sliding window bounds attention); a global
attention cache makes each step read the whole prefix (the Transformer row is that reference;
an H-Net with global attention on chunks reads a prefix ~N times shorter, small next to the
rest of a step at these sizes).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks import models
from benchmarks.cases import Options, measure_case
from benchmarks.timing import isolated, set_threads, time_interleaved, time_repeats
from hnet_dna.model.build import build_model
from hnet_dna.model.config import HNetConfig

NAME = "inference"
EMBED_LENGTH = 4096
CONTEXTS = (1024, 16384)


def embedding_configs() -> dict[str, HNetConfig]:
    out = {name: models.hnet_config(name) for name in ("hnet_1stage", "hnet_2stage")}
    target = models.train_flops_per_base(out["hnet_1stage"], EMBED_LENGTH)
    for kind in ("transformer", "mamba2"):
        m = models.match_isotropic(kind, target, EMBED_LENGTH, out["hnet_1stage"].d_model)
        out[kind] = models.isotropic_config(kind, m["d_model"], m["layers"], m["d_intermediate"])
    return out


def generation_configs(w: models.Widths | None = None) -> dict[str, HNetConfig]:
    w = w or models.Widths()
    return {
        "hnet_1stage": models.hnet_config("hnet_1stage", w),
        "hnet_1stage_mamba": models.hnet_config("hnet_1stage_mamba", w),
        "hnet_2stage": models.hnet_config("hnet_2stage", w),
        "mamba2": models.isotropic_config("mamba2", w.inner, 6),
        "transformer_swa": models.isotropic_config("transformer_swa", w.inner, 4, w.mlp),
        "transformer": models.isotropic_config("transformer", w.inner, 4, w.mlp),
    }


def generation_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Per-token cost of cached decoding and of prefix recomputation at each context.

    The routing is calibrated once (on the longest context); the caches of all contexts are
    prefilled first and their single-token steps are then timed round-robin, so a drift of
    machine speed hits every context alike.
    """
    set_threads(spec["threads"])
    config = HNetConfig.from_dict(spec["config"])
    model = build_model(config, seed=0).eval()
    steps, contexts = spec["steps"], spec["contexts"]
    warmup = 3
    total = max(contexts) + steps + warmup + 1
    ids = models.dna_batch(1, total, seed=1)
    out: dict[str, Any] = {}
    steppers = {}
    with torch.no_grad():
        if config.num_stages:
            out["compression"] = models.calibrate_routing(model, ids[:, : max(contexts)])
        for ctx in contexts:
            cache = model.allocate_inference_cache(1, total)
            prefill = time_repeats(lambda ctx=ctx, cache=cache: model(ids[:, :ctx], cache=cache),
                              warmup=0, repeats=1)
            recompute = time_repeats(lambda ctx=ctx: model(ids[:, :ctx]), warmup=0, repeats=2)
            out[str(ctx)] = {"prefill_s": prefill.wall.median,
                             "recompute_token_s": recompute.wall.median,
                             "recompute_token_cpu_s": recompute.cpu.median}
            pos = [ctx]

            def step(cache=cache, pos=pos) -> None:
                model.step(ids[:, pos[0]], cache)
                pos[0] += 1

            steppers[str(ctx)] = step
        timings = time_interleaved(steppers, warmup=warmup, repeats=steps)
    for ctx, t in timings.items():
        out[ctx].update(cached_token_s=t.wall.median, cached_token_cpu_s=t.cpu.median,
                        cached_token_spread=t.wall.spread)
    first, last = (str(c) for c in (contexts[0], contexts[-1]))
    out["cached_ratio"] = out[last]["cached_token_s"] / out[first]["cached_token_s"]
    out["cached_cpu_ratio"] = out[last]["cached_token_cpu_s"] / out[first]["cached_token_cpu_s"]
    return out


def run(opts: Options) -> dict[str, Any]:
    embed_batch = 1 if opts.quick else 4
    embedding = {}
    for name, config in embedding_configs().items():
        spec = opts.spec(config, embed_batch, EMBED_LENGTH, mode="forward")
        r = isolated(measure_case, spec)
        r["layout"] = config.arch_layout
        embedding[name] = r
    generation = {}
    for name, config in generation_configs().items():
        spec = {"config": config.to_dict(), "threads": opts.threads, "contexts": list(CONTEXTS),
                "steps": 16 if opts.quick else 48}
        r = isolated(generation_case, spec)
        r["layout"] = config.arch_layout
        generation[name] = r
    return {"embedding": embedding, "generation": generation}


def summarize(result: dict[str, Any]) -> list[str]:
    lines = ["Embedding extraction (no-grad forward at 4 kb, bases/s):", "",
             "| model | layout | bases/s (wall) | bases/s (CPU) |", "|---|---|---|---|"]
    for name, r in result["embedding"].items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} |||")
            continue
        lines.append(f"| {name} | `{r['layout']}` | {r['bases_per_s']:.0f}"
                     f" | {r['cpu_bases_per_s']:.0f} |")
    a, b = (str(c) for c in CONTEXTS)
    lines += ["", "Generation, ms per token (wall; CPU in parentheses):", "",
              f"| model | cached @{a} | cached @{b} | cached {b}/{a} (wall, CPU)"
              f" | recompute @{a} | recompute @{b} |", "|---|---|---|---|---|---|"]
    for name, r in result["generation"].items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} |||||")
            continue

        def ms(ctx: str, key: str, r=r) -> str:
            return (f"{1e3 * r[ctx][key + '_s']:.1f} ({1e3 * r[ctx][key + '_cpu_s']:.1f})")

        lines.append(f"| {name} | {ms(a, 'cached_token')} | {ms(b, 'cached_token')}"
                     f" | {r['cached_ratio']:.2f}, {r['cached_cpu_ratio']:.2f}"
                     f" | {ms(a, 'recompute_token')} | {ms(b, 'recompute_token')} |")
    return lines
