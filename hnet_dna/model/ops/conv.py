"""Causal depthwise 1-D convolution in (B, L, C) layout, as a sum of shifted inputs.

out[t] = bias + sum_{s=0..K-1} w[:, K-1-s] * x[t - s]   (x[t - s] = 0 before the row starts, and,
with ``seq_idx``, wherever token t - s belongs to another packed sequence).

The CPU path of the Mamba-2 mixer. A hand-written backward: autograd through the shifted
products spends a zero-filled buffer, a scalar product and a copy per tap (half the time of a
Mamba-2 layer's convolution went there), while the gradients are again K shifted in-place
passes:

    dx[t] = sum_s w[:, K-1-s] * m_s[t+s] * dout[t+s]      dw[:, K-1-s] = sum_t dout[t] m_s[t] x[t-s]

with m_s[t] = 1 where tokens t and t - s share a sequence.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["causal_depthwise_conv"]


def _tap_mask(seq_idx: Tensor | None, s: int, dtype: torch.dtype) -> Tensor | None:
    """m_s for outputs t >= s, (B, L - s, 1): token t - s is in the same sequence as t."""
    if seq_idx is None:
        return None
    return (seq_idx[:, s:] == seq_idx[:, :-s]).unsqueeze(-1).to(dtype)


def _channel_dot(a: Tensor, b: Tensor) -> Tensor:
    """sum over (B, L) of a * b, per channel: (C,)."""
    return (a * b).sum(dim=(0, 1))


class _CausalConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, bias: Tensor | None,
                seq_idx: Tensor | None) -> Tensor:
        L, K = x.shape[1], w.shape[1]
        out = x * w[:, K - 1] if bias is None else torch.addcmul(bias, x, w[:, K - 1])
        for s in range(1, min(K, L)):  # taps reaching before position 0 only add zeros
            src = x[:, : L - s]
            mask = _tap_mask(seq_idx, s, x.dtype)
            out[:, s:].addcmul_(src if mask is None else src * mask, w[:, K - 1 - s])
        ctx.save_for_backward(x, w, seq_idx)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, dout: Tensor) -> tuple[Tensor, Tensor, Tensor | None, None]:
        x, w, seq_idx = ctx.saved_tensors
        L, K = x.shape[1], w.shape[1]
        dx = dout * w[:, K - 1]
        dw = torch.zeros_like(w)
        dw[:, K - 1] = _channel_dot(dout, x)
        for s in range(1, min(K, L)):
            d_s = dout[:, s:]  # gradient reaching x[t - s] through tap s
            mask = _tap_mask(seq_idx, s, x.dtype)
            if mask is not None:
                d_s = d_s * mask
            dx[:, : L - s].addcmul_(d_s, w[:, K - 1 - s])
            dw[:, K - 1 - s] = _channel_dot(d_s, x[:, : L - s])
        dbias = dout.sum(dim=(0, 1)) if ctx.has_bias else None
        return dx, dw, dbias, None


def causal_depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                          seq_idx: Tensor | None = None) -> Tensor:
    """x (B, L, C), weight (C, K) with tap K-1 on the current token, bias (C,), seq_idx (B, L):
    the causal depthwise convolution above, (B, L, C) in the dtype of ``x``."""
    return _CausalConv.apply(x, weight, bias, seq_idx)
