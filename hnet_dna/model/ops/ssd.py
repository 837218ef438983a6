"""Mamba-2 state-space-dual (SSD) scan: naive recurrence, chunked pure-torch form, dispatch.

Recurrence per head (state ``h`` of shape (p, n)):

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t B_t^T        y_t = h_t C_t (+ D * x_t)

with ``dt`` already positive (softplus applied by the caller). Where ``seq_idx`` changes from
one position to the next the state is reset to zero before the update (packed sequences).

The chunked form splits the sequence into chunks of ``chunk_size``: inside a chunk the output
is a masked (decay-weighted) attention-like product, across chunks only the (p, n) states are
passed. All decays are exponentials of sums of ``dt * A`` restricted to one chunk (or of the
per-chunk totals between two chunks), never of a cumulative sum over the whole sequence.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# Set to True (or export HNET_DNA_DISABLE_KERNELS=1) to force the pure-torch paths.
DISABLE_KERNELS: bool = os.environ.get("HNET_DNA_DISABLE_KERNELS", "0") not in ("", "0")

__all__ = [
    "DISABLE_KERNELS",
    "chunked_linear_scan",
    "compute_dtype",
    "kernels_available",
    "kernels_disabled",
    "load_chunk_scan_kernel",
    "segment_ids",
    "ssd_chunked",
    "ssd_naive",
    "ssd_scan",
]


# --------------------------------------------------------------------------- kernel dispatch
def kernels_disabled() -> bool:
    """True when the module flag or the environment variable forces the torch paths."""
    env = os.environ.get("HNET_DNA_DISABLE_KERNELS", "0") not in ("", "0")
    return DISABLE_KERNELS or env


@functools.lru_cache(maxsize=1)
def load_chunk_scan_kernel() -> Callable | None:
    """``mamba_chunk_scan_combined`` if mamba_ssm imports, else None (cached)."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception:  # ImportError, or a broken CUDA/triton install
        return None
    return mamba_chunk_scan_combined


def kernels_available(t: Tensor) -> bool:
    """Whether the mamba_ssm Triton SSD kernel can run on tensor ``t``."""
    return t.is_cuda and not kernels_disabled() and load_chunk_scan_kernel() is not None


# --------------------------------------------------------------------------- helpers
def segment_ids(seq_idx: Tensor) -> Tensor:
    """Monotone segment ids (b, l): 0 at position 0, +1 wherever ``seq_idx`` changes.

    Equality of segment ids then means "no reset in between", even for non-monotone inputs.
    """
    change = (seq_idx[:, 1:] != seq_idx[:, :-1]).long()
    return F.pad(torch.cumsum(change, dim=1), (1, 0))


def compute_dtype(t: Tensor) -> torch.dtype:
    """float64 for float64 tensors, float32 otherwise."""
    # Never accumulate in half precision; keep float64 for reference checks.
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _expand_groups(t: Tensor, nheads: int) -> Tensor:
    """(b, l, g, n) -> (b, l, h, n): head k uses group k // (h // g)."""
    g = t.shape[2]
    if nheads % g != 0:
        raise ValueError(f"ngroups ({g}) must divide nheads ({nheads})")
    return t.repeat_interleave(nheads // g, dim=2)


def _add_skip(y: Tensor, x: Tensor, D: Tensor | None) -> Tensor:
    if D is None:
        return y
    D = D.to(y.dtype)
    # D is per head (h,) or per head and channel (h, p).
    return y + x * (D[:, None] if D.dim() == 1 else D)


# --------------------------------------------------------------------------- reference
def ssd_naive(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    seq_idx: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Sequential reference recurrence, computed in the dtype of ``x`` (use float64).

    Shapes: x (b, l, h, p), dt (b, l, h), A (h,), B/C (b, l, g, n), D (h,) or (h, p),
    seq_idx (b, l), initial_state (b, h, p, n). Returns y (b, l, h, p), final state (b, h, p, n).
    """
    b, seqlen, h, p = x.shape
    n = B.shape[-1]
    dtype = x.dtype
    Bh = _expand_groups(B, h).to(dtype)
    Ch = _expand_groups(C, h).to(dtype)
    dt = dt.to(dtype)
    A = A.to(dtype)
    state = x.new_zeros(b, h, p, n) if initial_state is None else initial_state.to(dtype)
    ys = []
    for t in range(seqlen):
        if seq_idx is not None and t > 0:
            keep = (seq_idx[:, t] == seq_idx[:, t - 1]).to(dtype)  # (b,)
            state = state * keep[:, None, None, None]
        decay = torch.exp(dt[:, t] * A)  # (b, h)
        inp = (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]  # (b, h, p, n)
        state = decay[:, :, None, None] * state + inp
        ys.append(torch.einsum("bhpn,bhn->bhp", state, Ch[:, t]))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(b, 0, h, p)
    return _add_skip(y, x, D), state


# --------------------------------------------------------------------------- chunked core
def _segsum(a: Tensor, keep: Tensor | None = None) -> Tensor:
    """(..., T) -> (..., T, T) with out[i, j] = sum_{k=j+1..i} a_k for j <= i, -inf above
    the diagonal and wherever the optional bool mask ``keep`` (broadcastable) is False.

    Sums each window directly (masked cumsum) instead of subtracting two running sums, so
    small decays next to a large chunk total keep full relative precision.
    """
    T = a.shape[-1]
    rows = a[..., :, None].expand(*a.shape, T)  # [k, j] = a_k
    lower_strict = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(-1)
    out = torch.cumsum(rows.masked_fill(~lower_strict, 0.0), dim=-2)
    lower = torch.ones(T, T, dtype=torch.bool, device=a.device).tril()
    if keep is not None:
        lower = lower & keep
    return out.masked_fill(~lower, float("-inf"))


def chunked_linear_scan(
    x: Tensor,
    log_decay: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    seg: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Chunked scan of h_t = exp(a_t) h_{t-1} + x_t B_t^T, y_t = h_t C_t.

    x (b, l, h, p) is the already-weighted input (``dt * x`` for SSD), log_decay (b, l, h) = a_t
    (<= 0), B/C (b, l, g, n), seg (b, l) monotone segment ids (see ``segment_ids``),
    initial_state (b, h, p, n). All tensors must share one float dtype.
    Returns y (b, l, h, p) and the final state (b, h, p, n).
    """
    b, seqlen, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    if h % g != 0:
        raise ValueError(f"ngroups ({g}) must divide nheads ({h})")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    r = h // g
    T = chunk_size
    pad = (-seqlen) % T
    packed = seg is not None  # without segments the intra-chunk reset mask is skipped
    if seg is None:
        seg = torch.zeros(b, seqlen, dtype=torch.long, device=x.device)
    if pad:
        # Padded steps carry no input and no decay, so they leave the state untouched.
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        log_decay = F.pad(log_decay, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
        seg = torch.cat([seg, seg[:, -1:].expand(b, pad)], dim=1)
    c = (seqlen + pad) // T

    xc = x.reshape(b, c, T, g, r, p)
    Bc = B.reshape(b, c, T, g, n)
    Cc = C.reshape(b, c, T, g, n)
    a = log_decay.reshape(b, c, T, g, r).permute(0, 1, 3, 4, 2)  # (b, c, g, r, T)
    sg = seg.reshape(b, c, T)

    # 1. Intra-chunk outputs: y_i = sum_{j<=i, same segment} (C_i.B_j) exp(a_{j+1..i}) x_j.
    same = (sg[:, :, :, None] == sg[:, :, None, :])[:, :, None, None] if packed else None
    decay = torch.exp(_segsum(a, same))  # (b, c, g, r, T, T)
    CB = torch.einsum("bclgn,bcsgn->bcgls", Cc, Bc)  # (b, c, g, T, T)
    y = torch.einsum("bcgrls,bcsgrp->bclgrp", CB[:, :, :, None] * decay, xc)

    # 2. State at the end of each chunk from its own inputs (last segment of the chunk only).
    acs = torch.cumsum(a, dim=-1)  # (b, c, g, r, T), within-chunk running log decay
    # tail_j = sum_{k>j} a_k as an exclusive reverse running sum (no cancellation).
    rev = torch.flip(torch.cumsum(torch.flip(a, (-1,)), dim=-1), (-1,))
    tail = F.pad(rev[..., 1:], (0, 1))
    last_seg = sg[:, :, -1]  # (b, c)
    in_last = (sg == last_seg[:, :, None])[:, :, None, None]  # (b, c, 1, 1, T)
    w_state = torch.exp(tail) * in_last
    xw = xc * w_state.permute(0, 1, 4, 2, 3)[..., None]  # (b, c, T, g, r, p)
    local = torch.einsum("bcsgn,bcsgrp->bcgrpn", Bc, xw)  # one bmm per (b, c, g)

    # 3. Pass states across chunks: a segsum over chunk totals, masked across segments.
    if initial_state is None:
        init = x.new_zeros(b, 1, g, r, p, n)
    else:
        init = initial_state.reshape(b, 1, g, r, p, n).to(x.dtype)
    states = torch.cat([init, local], dim=1)  # (b, c+1, g, r, p, n)
    totals = F.pad(acs[..., -1], (0, 0, 0, 0, 1, 0))  # (b, c+1, g, r), entry 0 unused
    state_seg = F.pad(last_seg, (1, 0))  # (b, c+1): initial state belongs to segment 0
    same_c = (state_seg[:, :, None] == state_seg[:, None, :])[:, None, None]  # (b,1,1,c+1,c+1)
    chunk_decay = torch.exp(_segsum(totals.permute(0, 2, 3, 1), same_c))  # (b, g, r, c+1, c+1)
    passed = torch.einsum("bgrij,bjgrpn->bigrpn", chunk_decay, states)
    entering, final = passed[:, :-1], passed[:, -1]  # state before chunk k; after the last

    # 4. Contribution of the entering state to each position of the chunk.
    enter_seg = state_seg[:, :-1]  # (b, c)
    w_in = torch.exp(acs) * (sg == enter_seg[:, :, None])[:, :, None, None]  # (b, c, g, r, T)
    y_in = torch.einsum("bclgn,bcgrpn->bclgrp", Cc, entering)  # one bmm per (b, c, g)
    y = y + y_in * w_in.permute(0, 1, 4, 2, 3)[..., None]

    y = y.reshape(b, c * T, h, p)[:, :seqlen]
    return y, final.reshape(b, h, p, n)


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    D: Tensor | None = None,
    seq_idx: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Chunked SSD in pure torch (float32, or float64 for float64 inputs).

    Same shapes as ``ssd_naive``. Returns y (b, l, h, p) in the dtype of ``x``, plus the final
    state (b, h, p, n) in the compute dtype when ``return_final_state``.
    """
    cdt = compute_dtype(x)
    xf, dtf = x.to(cdt), dt.to(cdt)
    log_decay = dtf * A.to(cdt)  # (b, l, h)
    seg = None if seq_idx is None else segment_ids(seq_idx)
    init = None if initial_state is None else initial_state.to(cdt)
    y, final = chunked_linear_scan(
        xf * dtf[..., None], log_decay, B.to(cdt), C.to(cdt), chunk_size, seg, init
    )
    y = _add_skip(y, xf, D).to(x.dtype)
    return (y, final) if return_final_state else y


def ssd_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    D: Tensor | None = None,
    seq_idx: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """SSD scan: mamba_ssm Triton kernel on CUDA when available, ``ssd_chunked`` otherwise."""
    if kernels_available(x):
        kernel = load_chunk_scan_kernel()
        out = kernel(
            x,
            dt,
            A,
            B,
            C,
            chunk_size,
            D=D,
            initial_states=initial_state,
            seq_idx=None if seq_idx is None else seq_idx.to(torch.int32).contiguous(),
            return_final_states=return_final_state,
        )
        return out
    return ssd_chunked(x, dt, A, B, C, chunk_size, D, seq_idx, initial_state, return_final_state)
