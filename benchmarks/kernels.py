"""Kernels: chunked torch scans vs their naive recurrences, blocked vs masked local attention,
and (only when a CUDA device is present) the mamba-ssm / flash-attn fast paths vs the torch
paths, with a parity check.

Each comparison is timed round-robin in one process, forward and forward+backward, at the shapes
of the benchmark zoo (Mamba-2 with 8 heads of 32 channels, state 32, chunks of 128).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from benchmarks.cases import Options
from benchmarks.timing import set_threads, time_interleaved
from hnet_dna.model.attention import CausalMHA
from hnet_dna.model.ops.ema import ema_chunked, ema_naive
from hnet_dna.model.ops.ssd import kernels_available, ssd_chunked, ssd_naive

NAME = "kernels"
HEADS, HEADDIM, STATE, CHUNK = 8, 32, 32, 128


def _ssd_inputs(length: int, device: str = "cpu") -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, length, HEADS, HEADDIM, generator=g)
    dt = torch.rand(1, length, HEADS, generator=g) * 0.1 + 1e-3
    A = -(torch.rand(HEADS, generator=g) * 8 + 1)
    B = torch.randn(1, length, 1, STATE, generator=g)
    C = torch.randn(1, length, 1, STATE, generator=g)
    return [t.to(device) for t in (x, dt, A, B, C)]


def _with_backward(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor],
                   grad: bool) -> Callable[[], None]:
    leaves = [t.clone().requires_grad_(grad and t.is_floating_point()) for t in inputs]

    def call() -> None:
        out = fn(*leaves)
        if grad:
            out.sum().backward()

    return call


def _compare(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, Any]:
    timings = time_interleaved(fns, warmup=1, repeats=repeats)
    out: dict[str, Any] = {k: t.to_dict() for k, t in timings.items()}
    names = list(fns)
    ref = timings[names[0]].cpu.median
    out["speedup_cpu"] = {k: timings[k].cpu.median / ref for k in names[1:]}
    return out


def scans(lengths: list[int], repeats: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for length in lengths:
        inputs = _ssd_inputs(length)
        ema_x = torch.randn(1, length // 3, 192)
        ema_p = torch.rand(1, length // 3).clamp(1e-4, 1 - 1e-4)
        for grad in (False, True):
            tag = f"{length}_{'fwd_bwd' if grad else 'fwd'}"
            res[f"ssd_{tag}"] = _compare({
                "chunked": _with_backward(lambda *a: ssd_chunked(*a, CHUNK), inputs, grad),
                "naive": _with_backward(lambda *a: ssd_naive(*a)[0], inputs, grad)}, repeats)
            res[f"ema_{tag}"] = _compare({
                "chunked": _with_backward(ema_chunked, [ema_x, ema_p], grad),
                "naive": _with_backward(ema_naive, [ema_x, ema_p], grad)}, repeats)
    return res


def local_attention(lengths: list[int], repeats: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    torch.manual_seed(0)
    mha = CausalMHA(128, 4, 16, window_size=1023)
    for length in lengths:
        x = torch.randn(1, length, 128, requires_grad=True)

        def blocked(x=x) -> None:
            mha(x).sum().backward()

        def masked(x=x) -> None:
            q, k, v = mha._qkv(x)
            mha.out_proj(mha._masked_sdpa(q, k, v, None).flatten(2)).sum().backward()

        fns = {"blocked": blocked, "masked": masked} if length <= 8192 else {"blocked": blocked}
        res[f"window1023_{length}_fwd_bwd"] = _compare(fns, repeats)
    return res


def gpu(repeats: int) -> dict[str, Any]:
    """mamba-ssm SSD kernel vs the torch path on CUDA, with a bf16 parity check."""
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device in this run (the GPU was not lent to this task)"}
    inputs = _ssd_inputs(4096, "cuda")
    if not kernels_available(inputs[0]):  # pragma: no cover - GPU only
        return {"skipped": "mamba_ssm not importable"}
    from hnet_dna.model.ops.ssd import load_chunk_scan_kernel  # pragma: no cover

    kernel = load_chunk_scan_kernel()  # pragma: no cover
    x, dt, A, B, C = inputs  # pragma: no cover
    xb, Bb, Cb = (t.bfloat16() for t in (x, B, C))  # pragma: no cover
    fast = kernel(xb, dt, A, Bb, Cb, CHUNK).float()  # pragma: no cover
    ref = ssd_chunked(xb.float(), dt, A, Bb.float(), Cb.float(), CHUNK)  # pragma: no cover
    rel = float((fast - ref).norm() / ref.norm())  # pragma: no cover

    def sync(fn: Callable[[], Any]) -> Callable[[], None]:  # pragma: no cover
        return lambda: (fn(), torch.cuda.synchronize())

    timing = _compare({  # pragma: no cover
        "torch": sync(lambda: ssd_chunked(x, dt, A, B, C, CHUNK)),
        "mamba_ssm": sync(lambda: kernel(xb, dt, A, Bb, Cb, CHUNK))}, repeats)
    return {"ssd_parity_rel_err": rel, "bf16_tolerance": 2e-2, "parity_ok": rel < 2e-2,
            "ssd_4096": timing}  # pragma: no cover


def run(opts: Options) -> dict[str, Any]:
    set_threads(opts.threads)
    repeats = max(3, opts.repeats)
    return {
        "scans": scans([1024] if opts.quick else [1024, 4096], repeats),
        "local_attention": local_attention([4096] if opts.quick else [4096, 16384], repeats),
        "gpu": gpu(repeats),
    }


def summarize(result: dict[str, Any]) -> list[str]:
    lines = ["| comparison | reference (CPU ms) | others: CPU time relative to the reference |",
             "|---|---|---|"]
    for group in ("scans", "local_attention"):
        for name, r in result[group].items():
            ref = next(k for k in r if k != "speedup_cpu")
            others = ", ".join(f"{k} {v:.2f}x" for k, v in r["speedup_cpu"].items())
            lines.append(f"| {name} | {ref} {1e3 * r[ref]['cpu']['median']:.1f} | {others} |")
    gpu_res = result["gpu"]
    lines.append("")
    lines.append(f"GPU: {gpu_res.get('skipped') or gpu_res}")
    return lines
