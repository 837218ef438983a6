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

from hnet_dna.model.utils import accumulation_dtype

# Set to True (or export HNET_DNA_DISABLE_KERNELS=1) to force the pure-torch paths.
DISABLE_KERNELS: bool = os.environ.get("HNET_DNA_DISABLE_KERNELS", "0") not in ("", "0")

# Kernel test tier only: with HNET_DNA_KERNELS_ON_CPU=1 *and* TRITON_INTERPRET=1 the Triton
# fast paths also take CPU tensors (Triton's interpreter runs them there, slowly), so the real
# kernel code can be checked without a GPU. Never set for real work.
_KERNELS_ON_CPU_ENV = "HNET_DNA_KERNELS_ON_CPU"

# Longest chunk the torch fallback of ``ssd_scan`` uses. The result does not depend on the chunk
# size (only rounding does); the cost does: (T, T) work per token grows with T, state work per
# token shrinks with it, and T = 64 was fastest on CPU (fwd + bwd) for headdim 32-64 and state
# 32-128, 10-30% faster than 128 and up to 1.4x faster than 256. The configured chunk size is
# kept for the mamba_ssm kernel.
TORCH_CHUNK_SIZE = 64

__all__ = [
    "DISABLE_KERNELS",
    "TORCH_CHUNK_SIZE",
    "chunked_linear_scan",
    "kernel_device_ok",
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


def kernel_device_ok(t: Tensor) -> bool:
    """Whether the Triton fast paths may take tensor ``t``: CUDA, or CPU under the Triton
    interpreter when the kernel test tier asks for it (``HNET_DNA_KERNELS_ON_CPU=1``)."""
    if t.is_cuda:
        return True
    return (
        t.device.type == "cpu"
        and os.environ.get(_KERNELS_ON_CPU_ENV, "0") not in ("", "0")
        and os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    )


def kernels_available(t: Tensor) -> bool:
    """Whether the mamba_ssm Triton SSD kernel can run on tensor ``t``."""
    return kernel_device_ok(t) and not kernels_disabled() and load_chunk_scan_kernel() is not None


# --------------------------------------------------------------------------- helpers
def segment_ids(seq_idx: Tensor) -> Tensor:
    """Monotone segment ids (b, l): 0 at position 0, +1 wherever ``seq_idx`` changes.

    Equality of segment ids then means "no reset in between", even for non-monotone inputs.
    """
    change = (seq_idx[:, 1:] != seq_idx[:, :-1]).long()
    return F.pad(torch.cumsum(change, dim=1), (1, 0))


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
    # D is per head (h,) or per head and channel (h, p); one fused pass.
    return torch.addcmul(y, x, D[:, None] if D.dim() == 1 else D)


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
def _decay_matrix_t(a: Tensor) -> Tensor:
    """(..., T) per-step log decays -> transposed decay matrix (..., T, T) with
    [j, i] = exp(a_{j+1} + ... + a_i) for i > j, 1 on and below the diagonal (masked later).

    Built as a running product of exp(a) along the last axis: no exp over (T, T) (exp of very
    negative or -inf inputs takes a slow path on CPU) and no cancellation (relative error
    ~(i - j) eps). The transposed layout puts the running product on the contiguous axis.
    """
    T = a.shape[-1]
    after = torch.ones(T, T, dtype=a.dtype, device=a.device).triu(1)  # [j, i] = 1 where i > j
    # 1 + (e^a - 1) * mask: two plain passes, about twice as fast as torch.where on CPU.
    return (torch.expm1(a)[..., None, :] * after).add_(1.0).cumprod_(dim=-1)


# Chunks per block in ``_IntraChunk``: (T, T) temporaries of about this many elements stay in
# the CPU cache while they are built, scaled, multiplied and reduced.
_BLOCK_ELEMENTS = 1 << 18


def _chunk_blocks(a: Tensor) -> list[tuple[int, slice]]:
    """(row, chunk slice) blocks of a (b, c, h, T) tensor, ~_BLOCK_ELEMENTS (T, T) each.

    One batch row per block: ``t[i, blk]`` of a contiguous (b, c, ...) tensor is contiguous, so
    the blocked matmuls read and write in place (slicing chunks of all rows at once made
    torch copy every operand and result of every block)."""
    b, c, h, T = a.shape
    step = max(1, _BLOCK_ELEMENTS // (h * T * T))
    return [(r, slice(i, min(i + step, c))) for r in range(b) for i in range(0, c, step)]


class _IntraChunk(torch.autograd.Function):
    """y[i] = sum_{j <= i} exp(a_{j+1} + .. + a_i) (C_i . B_j) x_j inside each chunk.

    Works on transposed (key j, query i) matrices. ``CBt`` [j, i] = C_i . B_j must already be
    zero wherever j may not reach i (j > i, or another segment). Hand-written backward that
    recomputes the decay matrix instead of saving it, and both directions go through blocks of
    chunks: the (T, T) tensors are the largest of the scan, autograd would keep several per
    call, and blocked they stay cache-resident, which keeps the cost per token flat in L.
    Shapes: a (b, c, h, T), CBt (b, c, g, T, T), x (b, c, h, T, p).
    """

    @staticmethod
    def forward(ctx, a: Tensor, CBt: Tensor, x: Tensor) -> Tensor:
        b, c, h, T = a.shape
        g = CBt.shape[2]
        y = torch.empty_like(x)
        for blk in _chunk_blocks(a):
            Mt = _decay_matrix_t(a[blk]).view(-1, g, h // g, T, T)
            Mt.mul_(CBt[blk][:, :, None])
            torch.matmul(Mt.view(-1, h, T, T).transpose(-1, -2), x[blk], out=y[blk])
        ctx.save_for_backward(a, CBt, x)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, CBt, x = ctx.saved_tensors
        b, c, h, T = a.shape
        g = CBt.shape[2]
        dy = dy.contiguous()
        dx, dCBt, dacs = torch.empty_like(x), torch.empty_like(CBt), torch.empty_like(a)
        for blk in _chunk_blocks(a):
            decay = _decay_matrix_t(a[blk]).view(-1, g, h // g, T, T)
            Mt = (decay * CBt[blk][:, :, None]).view(-1, h, T, T)
            torch.matmul(Mt, dy[blk], out=dx[blk])
            dMt = torch.matmul(x[blk], dy[blk].transpose(-1, -2))  # [j, i] = x_j . dy_i
            torch.sum(dMt.view_as(decay) * decay, dim=2, out=dCBt[blk])
            # With acs the running sum of a, M[i, j] ∝ exp(acs_i - acs_j): dacs = row sums minus
            # column sums of dM * M, i.e. column minus row sums in the transposed layout.
            Gt = dMt.mul_(Mt)
            torch.sub(Gt.sum(-2), Gt.sum(-1), out=dacs[blk])
        da = dacs.flip(-1).cumsum(-1).flip(-1)  # acs_i = sum_{k <= i} a_k
        return da, dCBt, dx


class _StatePassing(torch.autograd.Function):
    """Sequential scan over chunks: H_k = alpha_k H_{k-1} + S_k, H_{-1} = init.

    Returns the state entering each chunk, E_k = H_{k-1} (b, c, ...), and the final H_{c-1}.
    One small in-place update per chunk (forward and backward) keeps the cost linear in the
    number of chunks. Shapes: S (b, c, g, n, r, p), alpha (b, c, g, r), init (b, g, n, r, p).
    """

    @staticmethod
    def forward(ctx, S: Tensor, alpha: Tensor, init: Tensor) -> tuple[Tensor, Tensor]:
        c = S.shape[1]
        H = S.new_empty(S.shape[0], c + 1, *S.shape[2:])  # H[:, k] = state entering chunk k
        H[:, 0] = init
        a = alpha[:, :, :, None, :, None]  # broadcast over n and p
        for k in range(c):
            torch.addcmul(S[:, k], H[:, k], a[:, k], out=H[:, k + 1])
        ctx.save_for_backward(alpha, H)
        return H[:, :c], H[:, c]

    @staticmethod
    def backward(ctx, dE: Tensor | None, dfinal: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        alpha, H = ctx.saved_tensors
        c = alpha.shape[1]
        a = alpha[:, :, :, None, :, None]
        dS = torch.zeros_like(H[:, 1:])  # dS_k = dL/dH_k (total)
        if dfinal is not None:
            dS[:, c - 1] = dfinal
        if dE is not None:  # E_k = H_{k-1}: chunk k's entering state adds to dH_{k-1}
            dS[:, : c - 1] += dE[:, 1:]
        for k in range(c - 1, 0, -1):
            dS[:, k - 1].addcmul_(dS[:, k], a[:, k])
        dinit = dS[:, 0] * a[:, 0]
        if dE is not None:
            dinit = dinit + dE[:, 0]
        dalpha = (dS * H[:, :c]).sum(dim=(3, 5))
        return dS, dalpha, dinit


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
    (<= 0; -inf = exact reset), B/C (b, l, g, n), seg (b, l) monotone segment ids (see
    ``segment_ids``), initial_state (b, h, p, n). All tensors must share one float dtype.
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
    reset = torch.isneginf(log_decay)
    if bool(reset.any()):
        # A zero decay drops the state before adding the input: the same as a new segment
        # starting there. Turning it into one keeps every exponent finite (no -inf - -inf).
        new = reset.any(dim=-1).long().cumsum(dim=1)
        seg = new if seg is None else seg + new
        log_decay = log_decay.masked_fill(reset, 0.0)
    packed = seg is not None  # without segments all reset masks are skipped
    pad = (-seqlen) % T
    if pad:
        # Padded steps carry no input and no decay, so they leave the state untouched.
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        log_decay = F.pad(log_decay, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
        if packed:
            seg = torch.cat([seg, seg[:, -1:].expand(b, pad)], dim=1)
    c = (seqlen + pad) // T

    xc = x.reshape(b, c, T, h, p)
    Bc = B.reshape(b, c, T, g, n).transpose(2, 3)  # (b, c, g, T, n)
    Cc = C.reshape(b, c, T, g, n).transpose(2, 3)
    a = log_decay.reshape(b, c, T, h).transpose(2, 3)  # (b, c, h, T)
    acs = a.cumsum(dim=-1)  # within-chunk running log decay
    if packed:
        sg = seg.reshape(b, c, T)
        last_seg = sg[:, :, -1]  # (b, c)
        enter_seg = F.pad(last_seg[:, :-1], (1, 0))  # initial state belongs to segment 0

    # 1. Intra-chunk outputs, one (T, T) matmul per (b, c, h); CBt[j, i] = C_i . B_j.
    allowed = torch.ones(T, T, dtype=torch.bool, device=x.device).triu()  # key j <= query i
    if packed:
        allowed = allowed & (sg[:, :, :, None] == sg[:, :, None, :])[:, :, None]
    CBt = torch.matmul(Bc, Cc.transpose(-1, -2)).masked_fill(~allowed, 0.0)  # (b, c, g, T, T)
    y = _IntraChunk.apply(a.contiguous(), CBt, xc.transpose(2, 3).contiguous())  # (b,c,h,T,p)

    # 2. State at the end of each chunk from its own inputs (last segment of the chunk only).
    # Decay from j to the chunk end, sum_{k>j} a_k, as a reverse running sum (no cancellation).
    tail = F.pad(a[..., 1:].flip(-1).cumsum(-1).flip(-1), (0, 1))
    w_state = torch.exp(tail)  # (b, c, h, T)
    if packed:
        w_state = w_state * (sg == last_seg[:, :, None])[:, :, None]
    xw = (xc * w_state.transpose(2, 3)[..., None]).view(b, c, T, g, r * p).transpose(2, 3)
    S = torch.matmul(Bc.transpose(-1, -2), xw)  # (b, c, g, n, r * p)

    # 3. Pass states across chunks (sequential over chunks, linear cost).
    alpha = torch.exp(acs[..., -1]).view(b, c, g, r)
    if packed:
        alpha = alpha * (last_seg == enter_seg)[:, :, None, None]
    if initial_state is None:
        init = x.new_zeros(b, g, n, r, p)
    else:
        init = initial_state.reshape(b, g, r, p, n).permute(0, 1, 4, 2, 3).to(x.dtype)
    entering, final = _StatePassing.apply(S.view(b, c, g, n, r, p), alpha, init)

    # 4. Contribution of the entering state to each position of the chunk.
    w_in = torch.exp(acs)  # (b, c, h, T)
    if packed:
        w_in = w_in * (sg == enter_seg[:, :, None])[:, :, None]
    y_in = torch.matmul(Cc, entering.reshape(b, c, g, n, r * p))  # (b, c, g, T, r * p)
    y_in = y_in.view(b, c, g, T, r, p).transpose(2, 3).reshape(b, c, T, h, p)  # free if g = 1
    y = torch.addcmul(y.transpose(2, 3), y_in, w_in.transpose(2, 3)[..., None])

    y = y.reshape(b, c * T, h, p)[:, :seqlen]
    return y, final.permute(0, 1, 3, 4, 2).reshape(b, h, p, n)


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
    cdt = accumulation_dtype(x.dtype)
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
    """SSD scan: mamba_ssm Triton kernel on CUDA when available, ``ssd_chunked`` otherwise
    (with chunks of at most ``TORCH_CHUNK_SIZE``)."""
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
    chunk = min(chunk_size, TORCH_CHUNK_SIZE)
    return ssd_chunked(x, dt, A, B, C, chunk, D, seq_idx, initial_state, return_final_state)
