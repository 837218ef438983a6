"""SwiGLU feed-forward block (official H-Net layout: fc1 -> (value, gate), fc2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SwiGLU"]


class SwiGLU(nn.Module):
    """out = fc2(silu(gate) * value) with [value, gate] = fc1(x).chunk(2).

    ``d_intermediate`` is rounded up to a multiple of ``multiple_of``; the (value, gate) order
    matches the released checkpoints.
    """

    def __init__(
        self,
        d_model: int,
        d_intermediate: int,
        multiple_of: int = 128,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        d_int = -(-d_intermediate // multiple_of) * multiple_of
        self.d_intermediate = d_int
        self.fc1 = nn.Linear(d_model, 2 * d_int, bias=False, device=device, dtype=dtype)
        self.fc2 = nn.Linear(d_int, d_model, bias=False, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:  # (..., d_model) -> (..., d_model)
        value, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(gate) * value)
