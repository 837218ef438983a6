"""One GPU check in one command: kernel parity, training throughput and memory, cached generation,
and a short data-efficiency run, sized to finish in under 8 minutes on one H200.

    python benchmarks/gpu_check.py --out DIR                 # full check (GPU rows need CUDA)
    python benchmarks/gpu_check.py --out DIR --smoke         # tiny shapes, seconds (CPU or GPU)
    python benchmarks/gpu_check.py --prepare .gpu_carry      # here, before a device session

Sections, in order; each is guarded (a failure is recorded and the next one runs) and the JSON
and markdown are rewritten after every section, so a run cut short still leaves its results:

* ``environment``: torch / CUDA / device, and which fast paths import (mamba_ssm's Triton SSD
  kernels, the fused Mamba-2 kernel with causal_conv1d, flash-attn);
* ``parity``: every fast path hnet_dna dispatches to against its torch path on the same CUDA
  inputs in fp32 and bf16, both against a float64 CPU oracle (forward and gradients);
* ``throughput``: training bases/s and peak memory of the 1- and 2-stage H-Nets and the
  FLOP-matched Transformer and Mamba-2 (``benchmarks.models``) at 1k / 8k / 32k, bf16 autocast;
* ``generation``: cached decoding tokens/s at two contexts;
* ``data_efficiency``: H-Net vs isotropic Transformer vs Mamba-2 at d 256 trained on the same
  windows for the same number of bases (as many as the slowest model fits in its time share),
  held-out bits per base along the way.

Without CUDA the GPU rows are skipped with the reason; ``--smoke`` then runs every section's
CPU-capable code at tiny shapes (what the tests do). On the device machine the optional kernels
come from ``--carry DIR`` (made here by ``--prepare``): wheels are installed into a temporary
folder, the mamba-ssm source is imported for its Triton kernels, and causal_conv1d's CUDA
extension is compiled for the present GPU in the background while parity runs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks import models  # noqa: E402
from benchmarks.gpu_kernels import (  # noqa: E402
    MAMBA_TRITON,
    count_kernel_calls,
    fast_paths,
    finish_conv_build,
    import_submodule,
    prepare,
    setup_carry,
    torch_paths,
)
from benchmarks.timing import REPO, peak_memory_of, time_repeats  # noqa: E402
from hnet_dna.model.build import build_model  # noqa: E402
from hnet_dna.training.distributed import resolve_device  # noqa: E402

NAME = "gpu_check"
DEFAULT_OUT = REPO / "benchmarks" / "results" / NAME
NO_CUDA = "no CUDA device in this run (the GPU rows need one)"
# Relative L2 error (||out - ref|| / ||ref||) a fast path may show against the float64 oracle.
# fp32: the Triton kernels use TF32 tensor-core products; bf16: inputs rounded to 8 bits.
TOLERANCE = {"fp32": 5e-3, "bf16": 3e-2}


class Skip(Exception):
    """A section or row that cannot run here; the message is the reason recorded."""


# ----------------------------------------------------------------------------- plan
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


# ----------------------------------------------------------------------------- parity
def errors(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """max |out - ref|, that over max |ref| (``max_rel``), and ||out - ref|| / ||ref||."""
    out, ref = out.detach().double().cpu(), ref.detach().double().cpu()
    diff = (out - ref).abs()
    scale = float(ref.abs().max()) or 1.0
    norm = float(ref.norm()) or 1.0
    return {"max_abs": float(diff.max()), "max_rel": float(diff.max()) / scale,
            "rel_l2": float(diff.norm()) / norm}


def _run(fn: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor],
         grads: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Output and the gradients of <output, cotangent> w.r.t. ``grads``; the cotangent is the
    same seeded random tensor for every path."""
    leaves = {k: (v.detach().clone().requires_grad_(k in grads) if v.is_floating_point()
                  else v) for k, v in inputs.items()}
    out = fn(**leaves)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out.float() * cotangent.to(out.device)).sum().backward()
    result = {"out": out.detach()}
    result.update({f"d{k}": leaves[k].grad for k in grads if leaves[k].grad is not None})
    return result


def compare(fn: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor],
            grads: tuple[str, ...], precision: str, ctx: Context,
            fast_ok: bool, why_not: str) -> dict[str, Any]:
    """Run ``fn`` on ``inputs`` three ways: CPU float64 copies (the oracle), the device's torch
    path, and, where ``fast_ok``, the device's fast path; compare outputs and gradients."""
    oracle_in = {k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}
    dev_in = {k: v.to(ctx.device) for k, v in inputs.items()}
    row: dict[str, Any] = {"precision": precision, "tolerance_rel_l2": TOLERANCE[precision]}
    with torch_paths():
        oracle = _run(fn, oracle_in, grads)
        torch_out = _run(fn, dev_in, grads)
    row["torch_vs_f64"] = {k: errors(torch_out[k], oracle[k]) for k in oracle if k in torch_out}
    if not fast_ok:
        row["fast"] = f"skipped: {why_not}"
        return row
    with count_kernel_calls() as calls:
        fast_out = _run(fn, dev_in, grads)
        sync(ctx.device)
    row["fast_calls"] = dict(calls)
    if not any(calls.values()):
        row["fast"] = "not taken: no fast-path call was made (dispatch rejected these inputs)"
        return row
    missing = sorted(set(oracle) - set(fast_out))
    row["fast_vs_f64"] = {k: errors(fast_out[k], oracle[k]) for k in oracle if k in fast_out}
    row["fast_vs_torch"] = {k: errors(fast_out[k], torch_out[k])
                            for k in oracle if k in fast_out and k in torch_out}
    worst = max(e["rel_l2"] for e in row["fast_vs_f64"].values())
    row["fast"] = "pass" if worst <= TOLERANCE[precision] and not missing else "FAIL"
    if missing:
        row["missing_gradients"] = missing  # the fast path gave none where the oracle did
    row["worst_rel_l2"] = worst
    return row


def _cast(t: torch.Tensor, precision: str) -> torch.Tensor:
    """Round to the input precision (the oracle then sees exactly the same numbers)."""
    return t.bfloat16() if precision == "bf16" else t.float()


def _packed(batch: int, length: int) -> torch.Tensor:
    """seq_idx with three packed sequences per row (cuts at 1/3 and 3/4)."""
    idx = torch.zeros(batch, length, dtype=torch.int32)
    idx[:, length // 3:] = 1
    idx[:, 3 * length // 4:] = 2
    return idx


def _module_call(module: torch.nn.Module, x: torch.Tensor, seq_idx: torch.Tensor | None,
                 precision: str) -> torch.Tensor:
    """``module`` (fp32 parameters) applied to ``x`` on x's device: a float64 copy for float64
    input (the oracle), else an fp32 copy, under bf16 autocast for the bf16 rows."""
    f64 = x.dtype == torch.float64
    copy_ = copy.deepcopy(module).to(x.device, torch.float64 if f64 else torch.float32)
    with torch.autocast(x.device.type, torch.bfloat16, enabled=precision == "bf16" and not f64):
        return copy_(x if f64 else x.float(), seq_idx=seq_idx)


def parity_rows(ctx: Context) -> dict[str, Any]:
    from hnet_dna.model.attention import CausalMHA
    from hnet_dna.model.mamba2 import Mamba2
    from hnet_dna.model.ops import ema_scan, ssd_scan

    plan, paths = ctx.plan, fast_paths()
    L, heads, headdim, state, chunk = plan.parity_length, 8, 32, 32, 128
    g = torch.Generator().manual_seed(0)
    rows: dict[str, Any] = {}
    on = ctx.cuda

    def why(key: str) -> str:
        return NO_CUDA if not on else paths[key]

    def add(name: str, make: Callable[[str], dict[str, Any]]) -> None:
        for precision in ("fp32", "bf16"):
            key = f"{name}/{precision}"
            if ctx.left() < 5:
                rows[key] = {"skipped": "the parity section's time share ran out"}
                continue
            try:
                rows[key] = make(precision)
            except Exception as exc:  # one row's failure must not hide the others
                rows[key] = {"error": f"{type(exc).__name__}: {exc}",
                             "traceback": traceback.format_exc()[-3000:]}
            free(ctx.device)

    # 1. SSD scan -> mamba_chunk_scan_combined (Mamba-2 mixers; packed rows via seq_idx)
    x = torch.randn(2, L, heads, headdim, generator=g)
    dt = torch.rand(2, L, heads, generator=g) * 0.1 + 1e-3
    A = -(torch.rand(heads, generator=g) * 8 + 1)
    B = torch.randn(2, L, 1, state, generator=g)
    C = torch.randn(2, L, 1, state, generator=g)
    D = torch.randn(heads, generator=g)
    for packed in (False, True):
        def ssd_row(precision: str, packed: bool = packed) -> dict[str, Any]:
            inputs = {"x": _cast(x, precision), "dt": dt, "A": A, "B": _cast(B, precision),
                      "C": _cast(C, precision), "D": D}
            if packed:
                inputs["seq_idx"] = _packed(2, L)
            fn = lambda **kw: ssd_scan(chunk_size=chunk, **kw)  # noqa: E731
            return compare(fn, inputs, ("x", "dt", "B", "C"), precision, ctx,
                           on and paths["ssd_triton"] == "available", why("ssd_triton"))
        add(f"ssd_scan{'_packed' if packed else ''} (mamba_chunk_scan_combined)", ssd_row)

    # 2. EMA dechunk (DeChunkLayer) -> the same SSD kernel, one state per channel
    m, d = max(L // 3, 8), 256
    ex = torch.randn(2, m, d, generator=g)
    ep = torch.rand(2, m, generator=g) * 0.9 + 0.05
    for packed in (False, True):
        def ema_row(precision: str, packed: bool = packed) -> dict[str, Any]:
            inputs = {"x": _cast(ex, precision), "p": ep}
            if packed:
                inputs["seq_idx"] = _packed(2, m)
            return compare(ema_scan, inputs, ("x", "p"), precision, ctx,
                           on and paths["ssd_triton"] == "available", why("ssd_triton"))
        add(f"ema_scan{'_packed' if packed else ''} (dechunk EMA kernel)", ema_row)

    # 3. Mamba-2 mixer -> fused mamba_split_conv1d_scan_combined (+ causal_conv1d), else the
    # SSD kernel inside the unfused forward; compared through the module, params fixed by seed.
    if ctx.build is not None:  # causal_conv1d compiled in the background meanwhile
        ctx.kernels["causal_conv1d_build"] = ctx.finish_build(ctx.left() - 40)
        paths = ctx.kernels["fast_paths_after_build"] = fast_paths(refresh=True)
    torch.manual_seed(0)
    mixer = Mamba2(256, d_state=state, headdim=headdim, chunk_size=chunk)
    mx = torch.randn(2, L, 256, generator=g)
    fused = paths["mamba2_fused"] == "available"
    for packed in (False, True):
        def mamba_row(precision: str, packed: bool = packed) -> dict[str, Any]:
            def fn(x: torch.Tensor, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
                return _module_call(mixer, x, seq_idx, precision)

            inputs = {"x": _cast(mx, precision)}
            if packed:
                inputs["seq_idx"] = _packed(2, L)
            row = compare(fn, inputs, ("x",), precision, ctx,
                          on and paths["ssd_triton"] == "available", why("ssd_triton"))
            row["path"] = ("fused mamba_split_conv1d_scan_combined + causal_conv1d" if fused
                           else f"unfused forward with the SSD kernel ({paths['mamba2_fused']})")
            return row
        add(f"mamba2{'_packed' if packed else ''} (fused Mamba-2 kernel)", mamba_row)

    # 4. Attention -> flash_attn_func (window 1023 and global) / flash_attn_varlen_func (packed)
    for window, packed in ((1023, False), (-1, False), (1023, True)):
        torch.manual_seed(0)
        mha = CausalMHA(256, 8, rotary_emb_dim=16, window_size=window)
        ax = torch.randn(2, plan.attention_length, 256, generator=g)

        def attn_row(precision: str, mha: CausalMHA = mha, ax: torch.Tensor = ax,
                     packed: bool = packed) -> dict[str, Any]:
            def fn(x: torch.Tensor, seq_idx: torch.Tensor | None = None) -> torch.Tensor:
                return _module_call(mha, x, seq_idx, precision)

            inputs = {"x": _cast(ax, precision)}
            if packed:
                inputs["seq_idx"] = _packed(2, plan.attention_length)
            ok = on and paths["flash_attn"] == "available" and precision == "bf16"
            reason = ("flash-attn takes fp16/bf16 only: fp32 always runs the torch path"
                      if precision == "fp32" else why("flash_attn"))
            return compare(fn, inputs, ("x",), precision, ctx, ok, reason)
        name = f"attention_w{window}{'_packed' if packed else ''}"
        add(f"{name} (flash_attn{'_varlen' if packed else ''}_func)", attn_row)
    return {"rows": rows, "fast_paths": paths,
            "note": "errors are ||out - ref|| / ||ref|| (rel_l2), max |out - ref| (max_abs) and "
                    "max_abs / max |ref| (max_rel); the oracle is the torch path in float64 on "
                    "the CPU on the same (rounded) inputs; gradients of <out, random cotangent>"}


# ----------------------------------------------------------------------------- throughput
def prepare_model(config: Any, tokens: torch.Tensor, ctx: Context) -> tuple[Any, list[float]]:
    """Build, move to the device, calibrate routing to N = 3 on a prefix of the first row;
    returns the model and its realised compression on ``tokens``."""
    model = build_model(config, seed=0).to(ctx.device)
    tokens = tokens.to(ctx.device)
    if not config.num_stages:
        return model, []
    models.calibrate_routing(model, tokens[:1, : ctx.plan.calibrate_length])
    return model, models.realised_compression(model, tokens)


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


def throughput(ctx: Context) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------- generation
def generation(ctx: Context) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------- data efficiency
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


def data_efficiency(ctx: Context) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------- environment
def environment(ctx: Context) -> dict[str, Any]:
    from benchmarks.timing import machine_info

    info: dict[str, Any] = machine_info(torch.get_num_threads())
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        info.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2**30,
                    capability=list(torch.cuda.get_device_capability(ctx.device)))
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = None
    try:
        info["mamba_ssm_import"] = import_submodule(MAMBA_TRITON)
    except Exception as exc:
        info["mamba_ssm_import"] = f"failed: {type(exc).__name__}: {exc}"
    info["fast_paths"] = fast_paths(refresh=True)
    return info


def parity(ctx: Context) -> dict[str, Any]:
    ctx.need_gpu_or_smoke()
    return parity_rows(ctx)


SECTIONS: list[tuple[str, Callable[[Context], dict[str, Any]], float]] = [
    # (name, function, seconds it needs at least to start)
    ("environment", environment, 0.0),
    ("parity", parity, 20.0),
    ("throughput", throughput, 60.0),
    ("generation", generation, 15.0),
    ("data_efficiency", data_efficiency, 40.0),
]


# ----------------------------------------------------------------------------- report
def _fmt(x: Any, spec: str = ".3g") -> str:
    return "" if x is None else format(x, spec) if isinstance(x, float | int) else str(x)


def markdown(payload: dict[str, Any]) -> str:
    """A short summary of the JSON (GPU rows say why they were skipped)."""
    sec = payload["sections"]
    env = sec.get("environment", {})
    plan = payload["plan"]
    device = env.get("gpu") or env.get("device", "?")
    lines = [f"# gpu_check: {payload['when']}", "",
             f"device `{device}`, torch {env.get('torch')}, commit {env.get('commit')}"
             f"{' (dirty)' if env.get('dirty') else ''}, {payload['seconds']:.0f} s of the"
             f" {plan['budget_s']:.0f} s budget", ""]
    if plan["smoke"] or device == "cpu":
        lines += [f"**{'Smoke run (tiny shapes)' if plan['smoke'] else 'No GPU'} on `{device}`:"
                  " these numbers test the script; they are not GPU readings.**", ""]
    for key, value in (env.get("fast_paths") or {}).items():
        lines.append(f"* {key}: {value}")
    for key, value in payload.get("kernels", {}).items():
        lines.append(f"* {key}: {str(value)[:300]}")
    for name in SUMMARIES:
        r = sec.get(name)
        lines += ["", f"## {name}", ""]
        if r is None:
            lines.append("not reached")
            continue
        if "skipped" in r or "error" in r:
            kind = "skipped" if "skipped" in r else "error"
            lines.append(f"{kind}: {r[kind]}")
            continue
        lines += SUMMARIES[name](r)
    return "\n".join(lines) + "\n"


def _parity_md(r: dict[str, Any]) -> list[str]:
    out = ["| fast path | precision | verdict | fast vs f64 (worst rel L2) | torch vs f64 (worst"
           " rel L2) | fast vs torch (worst max abs) |", "|---|---|---|---|---|---|"]
    for key, row in r["rows"].items():
        name, precision = key.rsplit("/", 1)
        if "error" in row:
            out.append(f"| {name} | {precision} | error: {row['error'][:200]} | | | |")
            continue
        t = max(e["rel_l2"] for e in row["torch_vs_f64"].values())
        f = row.get("worst_rel_l2")
        ft = (max(e["max_abs"] for e in row["fast_vs_torch"].values())
              if "fast_vs_torch" in row else None)
        out.append(f"| {name} | {precision} | {row['fast']} | {_fmt(f)} | {_fmt(t)} | {_fmt(ft)} |")
    out += ["", f"Tolerances (rel L2 vs float64): {TOLERANCE}. {r['note']}."]
    return out


def _throughput_md(r: dict[str, Any]) -> list[str]:
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
                   f" {row['tflops']:.1f} | {_fmt(row['peak_mib'], '.0f')} | {ratio} |")
    return out


def _generation_md(r: dict[str, Any]) -> list[str]:
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


def _de_md(r: dict[str, Any]) -> list[str]:
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


SUMMARIES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "parity": _parity_md, "throughput": _throughput_md, "generation": _generation_md,
    "data_efficiency": _de_md}


def write(out_dir: Path, payload: dict[str, Any]) -> None:
    """Rewrite ``gpu_check.json`` and ``gpu_check.md`` (temporary file, then rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in ((f"{NAME}.json", json.dumps(payload, indent=1, default=str) + "\n"),
                       (f"{NAME}.md", markdown(payload))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out_dir / name)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for {NAME}.json and {NAME}.md (default %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (seconds)")
    parser.add_argument("--carry", type=Path, default=None,
                        help="folder made by --prepare (kernels, wheels) to install first")
    parser.add_argument("--prepare", type=Path, default=None, metavar="FOLDER",
                        help="download the device's extras into FOLDER and exit")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole run")
    parser.add_argument("--corpus", default=None,
                        help="data-efficiency corpus: a name (load_corpus) or a FASTA path")
    parser.add_argument("--de-seconds", type=float, default=None,
                        help="data efficiency: training seconds per model (three models)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    args = parser.parse_args(argv)
    if args.prepare is not None:
        prepare(args.prepare)
        return None
    t0 = time.perf_counter()
    plan = Plan.make(args.smoke, budget_s=args.budget, corpus=args.corpus,
                     de_seconds=args.de_seconds)
    device = resolve_device(args.device or "auto")
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # CPU runs are smoke tests: one thread never oversubscribes
    try:
        return _run_sections(args, plan, device, t0, argv)
    finally:
        torch.set_num_threads(threads)


def _run_sections(args: argparse.Namespace, plan: Plan, device: torch.device, t0: float,
                  argv: list[str] | None) -> dict[str, Any]:
    ctx = Context(plan, device, deadline=t0 + plan.budget_s)
    payload: dict[str, Any] = {"benchmark": NAME, "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                               "argv": sys.argv if argv is None else argv, "plan": asdict(plan),
                               "kernels": ctx.kernels, "sections": {}, "seconds": 0.0}
    ctx.build_started = time.perf_counter()
    try:
        info, ctx.build = setup_carry(args.carry, device)
        ctx.kernels.update(info)
    except Exception as exc:
        ctx.kernels["error"] = f"{type(exc).__name__}: {exc}"
    for name, fn, needs in SECTIONS:
        started = time.perf_counter()
        ctx.section_end = started + plan.shares.get(name, math.inf)
        if ctx.left() < needs:
            result: dict[str, Any] = {"skipped": f"deadline: {ctx.left():.0f} s left of the "
                                                 f"{plan.budget_s:.0f} s budget"}
        else:
            print(f"[{NAME}] {name}: start ({ctx.left():.0f} s left)", flush=True)
            try:
                result = fn(ctx)
            except Skip as why:
                result = {"skipped": str(why)}
            except Exception as exc:
                result = {"error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()[-4000:]}
            free(device)
        result["section_seconds"] = time.perf_counter() - started
        payload["sections"][name] = result
        payload["seconds"] = time.perf_counter() - t0
        write(args.out, payload)
        status = result.get("skipped") or result.get("error") or "done"
        print(f"[{NAME}] {name}: {status} ({result['section_seconds']:.1f} s)", flush=True)
    if ctx.build is not None:
        ctx.build.kill()
        ctx.kernels["causal_conv1d_build"] = "build stopped: no section used it"
    write(args.out, payload)
    print(f"[{NAME}] wrote {args.out / (NAME + '.json')} and {NAME}.md "
          f"in {payload['seconds']:.0f} s", flush=True)
    return payload


if __name__ == "__main__":
    main()
