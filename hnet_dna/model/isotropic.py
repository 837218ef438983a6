"""Isotropic stack: the blocks of one layout string (e.g. ``"m3T1"``) plus a final RMSNorm."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hnet_dna.model.block import create_block
from hnet_dna.model.config import expand_layout_string
from hnet_dna.model.norm import RMSNorm
from hnet_dna.model.utils import accumulation_dtype


class Isotropic(nn.Module):
    """Sequence-to-sequence stack ``(B, L, D) -> (B, L, D)`` at a single resolution."""

    def __init__(
        self,
        layout: str,
        d_model: int,
        stage_cfg: dict[str, Any],
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.d_model = d_model
        self.layers = nn.ModuleList(
            create_block(letter, d_model, stage_cfg, i, device=device, dtype=dtype)
            for i, letter in enumerate(expand_layout_string(layout))
        )
        self.rmsnorm = RMSNorm(d_model, eps=1e-5, device=device, dtype=dtype)

    @property
    def height(self) -> int:
        return sum(layer.height for layer in self.layers)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        seq_idx: Tensor | None = None,
        cache: list[Any] | None = None,
        extend: bool = False,
    ) -> Tensor:
        """``extend``: continue every layer from ``cache`` (see ``HNet.forward``)."""
        residual = x.to(accumulation_dtype(x.dtype))
        for i, layer in enumerate(self.layers):
            residual = layer(
                residual, mask=mask, seq_idx=seq_idx, cache=None if cache is None else cache[i],
                extend=extend,
            )
        return self.rmsnorm(residual.to(self.rmsnorm.weight.dtype)).to(x.dtype)

    def step(self, x: Tensor, cache: list[Any], active: Tensor | None = None) -> Tensor:
        residual = x.to(accumulation_dtype(x.dtype))
        for layer, layer_cache in zip(self.layers, cache, strict=True):
            residual = layer.step(residual, layer_cache, active=active)
        return self.rmsnorm(residual.to(self.rmsnorm.weight.dtype)).to(x.dtype)

    def allocate_cache(
        self, batch_size: int, max_seqlen: int, device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> list[Any]:
        return [
            layer.allocate_cache(batch_size, max_seqlen, device=device, dtype=dtype)
            for layer in self.layers
        ]
