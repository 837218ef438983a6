"""Partial rotary position embedding (non-interleaved, GPT-NeoX "rotate-half" layout).

Channel ``i`` and channel ``i + dim/2`` (``i < dim/2``) of each head form one pair that is rotated
by the angle ``position * base ** (-2 i / dim)``; channels ``dim..head_dim`` pass through.
Positions are explicit per token, so packed sequences restart at 0 and cached decoding can use a
different offset per row.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hnet_dna.model.utils import accumulation_dtype


def sequence_starts(seq_idx: Tensor) -> Tensor:
    """(B, L) bool: True where a packed sequence starts (column 0 and every change of seq_idx)."""
    starts = torch.ones_like(seq_idx, dtype=torch.bool)
    starts[:, 1:] = seq_idx[:, 1:] != seq_idx[:, :-1]
    return starts


def sequence_positions(seq_idx: Tensor) -> Tensor:
    """(B, L) int64 position of each token inside its packed sequence (restarts at 0)."""
    _, length = seq_idx.shape
    idx = torch.arange(length, device=seq_idx.device).expand_as(seq_idx)  # (B, L)
    # Index of the most recent sequence start at or before each token.
    last_start = torch.where(sequence_starts(seq_idx), idx, 0).cummax(dim=1).values
    return idx - last_start


class RotaryEmbedding(nn.Module):
    """Rotates the first ``dim`` channels of every head of q and k by their token position."""

    inv_freq: Tensor

    def __init__(self, dim: int, base: float = 10000.0, device: torch.device | None = None):
        super().__init__()
        if dim <= 0 or dim % 2 != 0:
            raise ValueError(f"rotary dim must be a positive even number, got {dim}")
        self.dim = dim
        self.base = float(base)
        # Non-persistent: derived from (dim, base), so checkpoints neither store nor need it.
        self.register_buffer("inv_freq", self._inv_freq(torch.float32, device), persistent=False)

    def _inv_freq(self, dtype: torch.dtype, device: torch.device | None) -> Tensor:
        exponent = torch.arange(0, self.dim, 2, dtype=dtype, device=device) / self.dim
        return 1.0 / self.base**exponent  # (dim/2,)

    def cos_sin(
        self, positions: Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """cos and sin of the rotation angles, each (B, L, dim/2) in ``dtype`` (fp32 or fp64)."""
        inv_freq = self.inv_freq
        if not (dtype == torch.float32 and inv_freq.dtype == torch.float32):
            # The buffer may have been cast with the model (bf16 would wreck angles at large
            # positions), or fp64 is wanted: recompute from scratch in the angle dtype.
            inv_freq = self._inv_freq(dtype, positions.device)
        angles = positions.to(dtype)[..., None] * inv_freq.to(positions.device)  # (B, L, dim/2)
        return angles.cos(), angles.sin()

    def rotate(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Apply the rotation to x (B, L, H, head_dim) given cos/sin (B, L, dim/2)."""
        half = self.dim // 2
        # Rotate in the angle dtype (>= fp32) so half-precision inputs lose nothing extra.
        x_rot = x[..., : self.dim].to(cos.dtype)
        x1, x2 = x_rot[..., :half], x_rot[..., half:]
        c, s = cos[:, :, None, :], sin[:, :, None, :]  # broadcast over heads
        rotated = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(x.dtype)
        return torch.cat((rotated, x[..., self.dim :]), dim=-1)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate q and k (B, L, H, head_dim) at integer ``positions`` (B, L)."""
        if positions.shape != q.shape[:2]:
            raise ValueError(
                f"positions must have shape (B, L) = {tuple(q.shape[:2])}, "
                f"got {tuple(positions.shape)}"
            )
        # Angles in fp32 (fp64 for fp64 inputs): bf16 angles are wrong beyond a few hundred.
        angle_dtype = accumulation_dtype(q.dtype)
        cos, sin = self.cos_sin(positions, angle_dtype)
        return self.rotate(q, cos, sin), self.rotate(k, cos, sin)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}"
