"""Section ``data_efficiency``: H-Net vs isotropic Transformer vs Mamba-2 at one width, trained on
the same windows for the same number of bases (as many as the slowest model fits in its time
share), held-out bits per base along the way."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from benchmarks import models
from benchmarks.gpu.context import Context, free, sync
from hnet_dna.model.build import build_model

NEEDS_S = 40.0  # seconds of the budget this section needs to start


def de_configs(width: int, length: int) -> dict[str, Any]:
    """H-Net (Mamba-2 encoder with one local-attention layer, Transformer on the chunks, Mamba-2
    decoder) at width ``width`` and the isotropic Transformer and Mamba-2 at the same width, with
    the depth whose counted training FLOPs per base is closest to the H-Net's at N = 3."""
    from hnet_dna.model.config import HNetConfig

    heads = width // models.HEAD_DIM
    hnet = HNetConfig(arch_layout=["m2t1", ["T5"], "m2"], d_model=[width, width],
                      d_intermediate=[0, 2 * width], vocab_size=16, ssm_cfg=dict(models.SSM),
                      attn_cfg={"num_heads": [heads, heads], "rotary_emb_dim": [16, 16],
                                "window_size": [models.LOCAL_WINDOW, -1]})
    target = models.train_flops_per_base(hnet, length)
    out = {"hnet": hnet}
    for kind, d_int in (("transformer", 2 * width), ("mamba2", 0)):
        fixed, per_layer = models._per_layer(kind, width, d_int, length)  # FLOPs linear in depth
        layers = min(48, max(1, round((target - fixed) / per_layer)))
        out[kind] = models.isotropic_config(kind, width, layers, d_int)
    return out


def run(ctx: Context) -> dict[str, Any]:
    ctx.need_gpu_or_smoke()
    from hnet_dna.baselines.corpus import cap_regions
    from hnet_dna.genomics.alphabet import DNA_VOCAB
    from hnet_dna.genomics.corpora import load_corpus
    from hnet_dna.genomics.framing import shift_right
    from hnet_dna.genomics.windows import WindowDataset
    from hnet_dna.training.config import OptimConfig, ScheduleConfig
    from hnet_dna.training.distributed import DistEnv
    from hnet_dna.training.heldout import heldout_bits
    from hnet_dna.training.losses import pretraining_loss
    from hnet_dna.training.optim import build_optimizer, eq11_lr_multipliers
    from hnet_dna.training.schedule import build_scheduler

    plan, device = ctx.plan, ctx.device
    corpus = load_corpus(plan.corpus)
    L, batch = plan.de_length, plan.de_batch
    configs = de_configs(plan.de_width, L)
    env = DistEnv(device=device)
    amp = torch.bfloat16 if ctx.cuda else None

    def autocast() -> contextlib.AbstractContextManager:
        return (contextlib.nullcontext() if amp is None
                else torch.autocast(device.type, dtype=amp))

    def train_stream(steps: int) -> Iterator[dict]:
        ds = corpus.windows("train", L, mode="random", samples_per_epoch=steps * batch,
                            rc_prob=0.5, seed=0, batch_size=batch)
        return ds.iter_batches()

    eval_regions = cap_regions(corpus.regions("valid"), plan.de_eval_bases)

    def evaluate(model: Any) -> dict[str, float]:
        ds = WindowDataset(eval_regions, L, mode="tile", batch_size=batch)
        return heldout_bits(model, ds.iter_batches(), env, DNA_VOCAB, autocast=autocast)

    def setup(config: Any, steps: int) -> tuple[Any, Callable[[dict], float]]:
        model = build_model(config, seed=0).to(device)
        ratios = [models.TARGET_RATIO] * config.num_stages
        widths = [config.stage_cfg(s)["d_model"] for s in range(config.num_stages + 1)]
        opt = build_optimizer(model.stage_parameters(), OptimConfig(lr=plan.de_lr),
                              eq11_lr_multipliers(ratios, widths))
        sched = build_scheduler(opt, ScheduleConfig(), steps)

        def step(mb: dict) -> float:
            model.train()
            tokens = mb["tokens"].to(device)
            weight = mb["loss_weight"].to(device, torch.float32)
            inputs, mask = shift_right(tokens, DNA_VOCAB.bos_id, DNA_VOCAB.pad_id)
            with autocast():
                out = model(inputs, mask=mask)
                parts = pretraining_loss(out.logits, out.routing, tokens, weight,
                                         weight_norm=weight.sum(), ratio_alpha=0.03,
                                         target_ratios=ratios)
            parts.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            return float(parts.loss.detach())

        return model, step

    # Probe: seconds per step of each model on real batches (compiles kernels too).
    probe: dict[str, float] = {}
    for name, config in configs.items():
        model, step = setup(config, 10)
        batches = train_stream(4)
        step(next(batches))
        sync(device)
        t0 = time.perf_counter()
        for mb in batches:
            step(mb)
        sync(device)
        probe[name] = (time.perf_counter() - t0) / 3
        del model, step
        free(device)
    # Equal bases for all: what the slowest model fits in its share of the time left (less ~10 s
    # per model for set-up and held-out evaluation).
    share = min(plan.de_seconds, max(1.0, ctx.left() / len(configs) - 10))
    steps = max(2, int(share / max(probe.values())))
    if plan.de_max_steps is not None:
        steps = min(steps, plan.de_max_steps)
    evals = sorted({max(1, round(steps * (i + 1) / plan.de_evals)) for i in range(plan.de_evals)})
    train_bases = corpus.bases("train")
    runs: dict[str, Any] = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        model, step = setup(config, steps)
        curve, losses = [], []
        t0 = time.perf_counter()
        for i, mb in enumerate(train_stream(steps), start=1):
            losses.append(step(mb))
            if i in evals:
                sync(device)
                paused = time.perf_counter()
                held_out = evaluate(model)  # bpb, bpb_upper, bases / bases_upper scored
                curve.append({"step": i, "train_bases": i * batch * L, **held_out})
                t0 += time.perf_counter() - paused
        sync(device)
        seconds = time.perf_counter() - t0
        tokens = models.dna_batch(batch, L, seed=3).to(device)
        compression = (models.realised_compression(model, tokens) if config.num_stages else [])
        runs[name] = {"layout": config.arch_layout, "d_model": config.d_model,
                      "train_seconds": seconds, "bases_per_s": steps * batch * L / seconds,
                      "final_train_loss": losses[-1], "curve": curve,
                      "final_bpb": curve[-1]["bpb"], "compression": compression,
                      **models.flops_report(model, L, compression)}
        del model, step
        free(device)
    return {"corpus": plan.corpus, "train_split_bases": train_bases,
            "eval_bases_cap": plan.de_eval_bases, "context": L, "batch": batch, "lr": plan.de_lr,
            "precision": "bf16 autocast" if amp else "fp32", "probe_s_per_step": probe,
            "steps": steps, "bases_per_model": steps * batch * L,
            "epochs": steps * batch * L / train_bases, "seconds_share": share, "runs": runs}


def summary(r: dict[str, Any]) -> list[str]:
    scored = int(next(iter(r["runs"].values()))["curve"][-1]["bases"]) if r["runs"] else 0
    out = [f"corpus `{r['corpus']}` ({r['train_split_bases']} training bases), context "
           f"{r['context']}, batch {r['batch']}, {r['precision']}, lr {r['lr']}: "
           f"{r['steps']} steps = {r['bases_per_model']} bases per model "
           f"({r['epochs']:.3g} epochs), held-out bits/base on the first {scored} valid"
           " bases", "",
           "| model | layout | train GFLOP/base | bases/s | bpb along the run | final bpb |",
           "|---|---|---|---|---|---|"]
    for name, run in r["runs"].items():
        curve = ", ".join(f"{c['bpb']:.3f}" for c in run["curve"])
        out.append(f"| {name} | `{run['layout']}` | {run['train_flops_per_base'] / 1e9:.4f} |"
                   f" {run['bases_per_s']:.0f} | {curve} | {run['final_bpb']:.4f} |")
    return out
