"""Small helpers shared by the model modules."""

from __future__ import annotations

import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision and float32 models, float64 for float64 (reference) models."""
    return torch.promote_types(dtype, torch.float32)
