"""Small helpers shared by the model modules."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision and float32 models, float64 for float64 (reference) models."""
    return torch.promote_types(dtype, torch.float32)


def on_valid(fn: Callable[..., Tensor], mask: Tensor | None, *xs: Tensor) -> Tensor:
    """A token-wise ``fn`` (projections, MLP) of ``xs`` (each (B, L, ...)) on valid tokens only,
    zeros at padding: a ragged batch (e.g. chunks of rows with different boundary counts) does
    not pay for its padding. Only the continuation path (``extend``) uses it; the forward keeps
    its dense form."""
    if mask is None or bool(mask.all()):
        return fn(*xs)
    y = fn(*(x[mask] for x in xs))
    out = y.new_zeros(*mask.shape, *y.shape[1:])
    out[mask] = y
    return out
