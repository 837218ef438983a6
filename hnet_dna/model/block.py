"""Pre-norm residual block: ``x += mixer(norm1(x))`` then optionally ``x += mlp(norm2(x))``.

The residual stream is kept in float32 (the official code's ``residual_in_fp32``); the mixer and
MLP run in the module / autocast dtype. Written as explicit adds rather than mamba_ssm's fused
"deferred add" form, which computes the same thing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hnet_dna.model.attention import CausalMHA
from hnet_dna.model.mamba2 import Mamba2
from hnet_dna.model.mlp import SwiGLU
from hnet_dna.model.norm import RMSNorm
from hnet_dna.model.utils import on_valid


class Block(nn.Module):
    def __init__(
        self,
        d_model: int,
        mixer: nn.Module,
        mlp: nn.Module | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = RMSNorm(d_model, eps=1e-5, device=device, dtype=dtype)
        self.mixer = mixer
        if mlp is not None:
            self.norm2 = RMSNorm(d_model, eps=1e-5, device=device, dtype=dtype)
            self.mlp = mlp
        else:
            self.norm2 = None
            self.mlp = None

    @property
    def height(self) -> int:
        """Residual adds in this block (used for the out_proj init scale)."""
        return 1 if self.mlp is None else 2

    def forward(
        self,
        residual: Tensor,  # (B, L, D) float32 (float64 in float64 models)
        mask: Tensor | None = None,
        seq_idx: Tensor | None = None,
        cache: Any = None,
        extend: bool = False,
    ) -> Tensor:
        """``extend``: continue from ``cache`` (the mixer's ``extend``) instead of prefilling."""
        dtype = self.norm1.weight.dtype
        x = self.norm1(residual.to(dtype))
        if extend:
            h = self.mixer.extend(x, cache, mask=mask)
        else:
            h = self.mixer(x, mask=mask, seq_idx=seq_idx, cache=cache)
        residual = residual + h.to(residual.dtype)
        if self.mlp is not None:
            def mlp(r: Tensor) -> Tensor:
                return self.mlp(self.norm2(r.to(dtype)))

            residual = residual + (on_valid(mlp, mask, residual) if extend
                                   else mlp(residual)).to(residual.dtype)
        return residual

    def step(self, residual: Tensor, cache: Any, active: Tensor | None = None) -> Tensor:
        dtype = self.norm1.weight.dtype
        h = self.mixer.step(self.norm1(residual.to(dtype)), cache, active=active)
        residual = residual + h.to(residual.dtype)
        if self.mlp is not None:
            residual = residual + self.mlp(self.norm2(residual.to(dtype))).to(residual.dtype)
        return residual

    def allocate_cache(
        self, batch_size: int, max_seqlen: int, device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Any:
        return self.mixer.allocate_cache(batch_size, max_seqlen, device=device, dtype=dtype)


def create_block(
    letter: str,
    d_model: int,
    stage_cfg: dict[str, Any],
    layer_idx: int,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Block:
    """Build one layer from its layout letter: m/t = Mamba-2/attention, upper case adds SwiGLU."""
    factory = {"device": device, "dtype": dtype}
    kind = letter.lower()
    if kind == "m":
        mixer: nn.Module = Mamba2(
            d_model,
            d_state=stage_cfg["d_state"],
            d_conv=stage_cfg["d_conv"],
            expand=stage_cfg["expand"],
            headdim=stage_cfg["headdim"],
            ngroups=stage_cfg["ngroups"],
            chunk_size=stage_cfg["chunk_size"],
            layer_idx=layer_idx,
            **factory,
        )
    elif kind == "t":
        mixer = CausalMHA(
            d_model,
            num_heads=stage_cfg["num_heads"],
            rotary_emb_dim=stage_cfg["rotary_emb_dim"],
            window_size=stage_cfg["window_size"],
            layer_idx=layer_idx,
            **factory,
        )
    else:
        raise ValueError(f"unknown layer letter {letter!r} (expected m, M, t or T)")
    mlp = None
    if letter.isupper():
        d_intermediate = stage_cfg["d_intermediate"]
        if not d_intermediate:
            raise ValueError(
                f"layer {letter!r} needs an MLP but d_intermediate is {d_intermediate} "
                "at this stage"
            )
        mlp = SwiGLU(d_model, d_intermediate, **factory)
    return Block(d_model, mixer, mlp, **factory)
