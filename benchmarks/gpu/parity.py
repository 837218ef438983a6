"""Section ``parity``: every fast path hnet_dna dispatches to against its torch path on the same
CUDA inputs in fp32 and bf16, both against a float64 CPU oracle (forward and gradients)."""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.gpu.context import NO_CUDA, Context, free, sync
from benchmarks.gpu.results import fmt
from benchmarks.gpu_kernels import count_kernel_calls, fast_paths, torch_paths

NEEDS_S = 20.0  # seconds of the budget this section needs to start

# Relative L2 error (||out - ref|| / ||ref||) a fast path may show against the float64 oracle.
# fp32: the Triton kernels use TF32 tensor-core products; bf16: inputs rounded to 8 bits.
TOLERANCE = {"fp32": 5e-3, "bf16": 3e-2}


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


def run(ctx: Context) -> dict[str, Any]:
    ctx.need_gpu_or_smoke()
    return parity_rows(ctx)


def summary(r: dict[str, Any]) -> list[str]:
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
        out.append(f"| {name} | {precision} | {row['fast']} | {fmt(f)} | {fmt(t)} | {fmt(ft)} |")
    out += ["", f"Tolerances (rel L2 vs float64): {TOLERANCE}. {r['note']}."]
    return out
