"""EMA scan used by the dechunk layer: z_t = P_t x_t + (1 - P_t) z_{t-1}.

This is a one-head linear recurrence with log-decay ``log(1 - P_t)`` and input ``P_t x_t``, so
the torch path reuses the chunked SSD machinery (decays only ever summed inside a chunk or
between chunk totals). On CUDA with mamba_ssm present it calls the SSD Triton kernel with the
official H-Net's mapping (A = -1, dt = -log(1 - P), B = P, C = 1, x / dt; headdim 32), in one of
two input precisions (``kernel_inputs``):

- ``"fp32"`` (default): dt, x / dt, B and C handed to the kernel in float32, chunks of the
  given ``chunk_size``. The most accurate choice; note that on NVIDIA GPUs Triton runs the
  kernel's float32 ``tl.dot`` in TF32 by default (~5e-4 relative, still ~8x finer than bf16).
- ``"official"``: the official DeChunkLayer's operation order exactly: dt = log(1 / (1 - P))
  rounded to bf16 first, x divided by that rounded dt then rounded to bf16, B = P and C = 1 in
  bf16, chunks of 256 (its ``block_size``), whatever ``chunk_size`` says. Reproduces the
  official numbers (about 3e-2 off float64 for unit-scale inputs).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hnet_dna.model.ops.ssd import (
    chunked_linear_scan,
    kernels_available,
    load_chunk_scan_kernel,
    segment_ids,
)
from hnet_dna.model.utils import accumulation_dtype

__all__ = ["EMA_KERNEL_INPUTS", "ema_chunked", "ema_naive", "ema_scan"]

_KERNEL_HEADDIM = 32
# The official DeChunkLayer's chunk size for the kernel (its ``block_size``).
_OFFICIAL_BLOCK_SIZE = 256
EMA_KERNEL_INPUTS = ("fp32", "official")


def ema_naive(
    x: Tensor,
    p: Tensor,
    seq_idx: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> Tensor:
    """Sequential reference in the dtype of ``x``. x (b, m, d), p (b, m), seq_idx (b, m),
    initial_state (b, d). Returns z (b, m, d)."""
    b, m, d = x.shape
    p = p.to(x.dtype)
    z = x.new_zeros(b, d) if initial_state is None else initial_state.to(x.dtype)
    out = []
    for t in range(m):
        if seq_idx is not None and t > 0:
            keep = (seq_idx[:, t] == seq_idx[:, t - 1]).to(x.dtype)  # (b,)
            z = z * keep[:, None]
        z = p[:, t, None] * x[:, t] + (1 - p[:, t, None]) * z
        out.append(z)
    return torch.stack(out, dim=1) if out else x.new_zeros(b, 0, d)


def ema_chunked(
    x: Tensor,
    p: Tensor,
    seq_idx: Tensor | None = None,
    initial_state: Tensor | None = None,
    chunk_size: int = 256,
) -> Tensor:
    """Pure-torch chunked EMA in float32 (float64 for float64 inputs); returns x.dtype.

    ``p`` may be exactly 1 (full reset); p must be < 1 for finite gradients w.r.t. ``p``.
    """
    b, m, d = x.shape
    cdt = accumulation_dtype(x.dtype)
    pf = p.to(cdt)
    xin = (pf[..., None] * x.to(cdt))[:, :, None, :]  # (b, m, 1, d): one head, headdim d
    log_decay = torch.log1p(-pf)[..., None]  # (b, m, 1)
    ones = xin.new_ones(b, m, 1, 1)  # B = C = 1, state size 1
    seg = None if seq_idx is None else segment_ids(seq_idx)
    init = None if initial_state is None else initial_state.to(cdt).reshape(b, 1, d, 1)
    z, _ = chunked_linear_scan(xin, log_decay, ones, ones, chunk_size, seg, init)
    return z.reshape(b, m, d).to(x.dtype)


def _ema_kernel(
    x: Tensor,
    p: Tensor,
    seq_idx: Tensor | None,
    initial_state: Tensor | None,
    chunk_size: int,
    kernel_inputs: str,
) -> Tensor:
    b, m, d = x.shape
    nh = d // _KERNEL_HEADDIM
    if kernel_inputs == "official":
        # Official order: round dt to bf16, divide by the rounded dt, round x; block 256.
        dt = torch.log(1 / (1 - p.float())).to(torch.bfloat16)  # (b, m)
        xk = (x / dt[..., None]).to(torch.bfloat16)
        Bk = p.to(torch.bfloat16)
        chunk_size = _OFFICIAL_BLOCK_SIZE
    else:
        dt = -torch.log1p(-p.float())  # (b, m)
        xk = x.float() / dt[..., None]
        Bk = p.float()
    xk = xk.reshape(b, m, nh, _KERNEL_HEADDIM)
    dtk = dt[..., None].expand(b, m, nh)
    A = -torch.ones(nh, device=x.device, dtype=torch.float32)
    Bk = Bk.reshape(b, m, 1, 1)
    Ck = torch.ones_like(Bk)
    init = None
    if initial_state is not None:
        init = initial_state.float().reshape(b, nh, _KERNEL_HEADDIM, 1)
    z = load_chunk_scan_kernel()(
        xk,
        dtk,
        A,
        Bk,
        Ck,
        chunk_size,
        initial_states=init,
        seq_idx=None if seq_idx is None else seq_idx.to(torch.int32).contiguous(),
    )
    return z.reshape(b, m, d).to(x.dtype)


def ema_scan(
    x: Tensor,
    p: Tensor,
    seq_idx: Tensor | None = None,
    initial_state: Tensor | None = None,
    chunk_size: int = 256,
    kernel_inputs: str = "fp32",
) -> Tensor:
    """EMA z_t = p_t x_t + (1 - p_t) z_{t-1} over (b, m, d); resets where seq_idx changes.

    Dispatches to the mamba_ssm kernel on CUDA (d divisible by 32, p < 1), else ``ema_chunked``.
    ``kernel_inputs`` ("fp32" or "official", see the module docstring) only affects the kernel.
    """
    if kernel_inputs not in EMA_KERNEL_INPUTS:
        raise ValueError(f"kernel_inputs must be one of {EMA_KERNEL_INPUTS}, got {kernel_inputs!r}")
    if kernels_available(x) and x.shape[-1] % _KERNEL_HEADDIM == 0:
        return _ema_kernel(x, p, seq_idx, initial_state, chunk_size, kernel_inputs)
    return ema_chunked(x, p, seq_idx, initial_state, chunk_size)
