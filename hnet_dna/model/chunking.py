"""Dynamic chunking: routing (where do chunks start), chunk (downsample), dechunk (upsample).

A *boundary* is the first token of a chunk. Only boundary tokens go to the inner network; on the
way out each position takes the smoothed inner output of the most recent boundary at or before
it, which keeps the whole model causal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hnet_dna.model.ops.ema import ema_scan
from hnet_dna.model.rotary import sequence_starts
from hnet_dna.model.utils import accumulation_dtype

# The EMA is evaluated with P clamped away from 0 and 1 (as in the official code), so that the
# log-space decay log(1 - P) stays finite.
EMA_P_MIN = 1e-4


@dataclass
class RoutingOutput:
    """Routing decisions of one stage; all tensors ``(B, L)`` at that stage's resolution."""

    boundary_prob: Tensor  # p_t in [0, 1], float32
    boundary_mask: Tensor  # b_t = p_t > 0.5 (and token valid), bool
    selected_prob: Tensor  # c_t = p_t if b_t else 1 - p_t, float32
    mask: Tensor | None  # valid tokens (None = all valid)

    @property
    def chunk_lengths(self) -> list[Tensor]:
        """Per row, the number of tokens in each chunk (valid tokens only)."""
        out = []
        for row in range(self.boundary_mask.shape[0]):
            b = self.boundary_mask[row]
            n = int(self.mask[row].sum()) if self.mask is not None else b.numel()
            starts = torch.nonzero(b[:n]).flatten()
            ends = torch.cat([starts[1:], starts.new_tensor([n])])
            out.append(ends - starts)
        return out

    def tokens_per_chunk(self) -> float:
        """Realised compression: valid tokens / boundaries at this stage."""
        valid = self.mask.sum() if self.mask is not None else self.boundary_mask.numel()
        return float(valid) / max(float(self.boundary_mask.sum()), 1.0)


@dataclass
class RoutingState:
    """Decoding state of a routing module: the previous token's encoder output per row."""

    last_hidden: Tensor  # (B, D)
    has_seen_tokens: Tensor  # (B,) bool


@dataclass
class DeChunkState:
    """Decoding state of the dechunk EMA: the last smoothed value per row."""

    last_value: Tensor  # (B, D) float32 (float64 in float64 models)


def straight_through(x: Tensor) -> Tensor:
    """Exactly 1 in the forward pass; gradient passes to ``x`` unchanged."""
    return 1.0 + (x - x.detach())


class RoutingModule(nn.Module):
    """p_t = (1 - cos(W_q x_{t-1}, W_k x_t)) / 2, forced to 1 at every sequence start."""

    def __init__(
        self, d_model: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.d_model = d_model
        factory = {"device": device, "dtype": dtype}
        self.q_proj_layer = nn.Linear(d_model, d_model, bias=False, **factory)
        self.k_proj_layer = nn.Linear(d_model, d_model, bias=False, **factory)
        with torch.no_grad():
            # Identity init: at the start boundaries come from raw encoder-state dissimilarity.
            self.q_proj_layer.weight.copy_(torch.eye(d_model))
            self.k_proj_layer.weight.copy_(torch.eye(d_model))
        self.q_proj_layer.weight._no_reinit = True
        self.k_proj_layer.weight._no_reinit = True

    def _prob(self, prev: Tensor, cur: Tensor) -> Tensor:
        acc = accumulation_dtype(prev.dtype)
        q = F.normalize(self.q_proj_layer(prev).to(acc), dim=-1)
        k = F.normalize(self.k_proj_layer(cur).to(acc), dim=-1)
        return ((1.0 - (q * k).sum(-1)) / 2).clamp(0.0, 1.0)

    def forward(
        self,
        hidden: Tensor,  # (B, L, D)
        mask: Tensor | None = None,
        seq_idx: Tensor | None = None,
        state: RoutingState | None = None,
    ) -> RoutingOutput:
        p = self._prob(hidden[:, :-1], hidden[:, 1:])
        p = F.pad(p, (1, 0), value=1.0)  # (B, L)
        if seq_idx is not None:
            p = torch.where(sequence_starts(seq_idx), torch.ones_like(p), p)
        boundary = p > 0.5
        if mask is not None:
            boundary = boundary & mask
        selected = torch.where(boundary, p, 1.0 - p)
        if state is not None:
            if seq_idx is not None:
                raise ValueError("prefill with a cache does not support packed sequences")
            lengths = _lengths(hidden, mask)
            last = (lengths - 1).clamp(min=0)
            state.last_hidden.copy_(hidden[torch.arange(hidden.shape[0]), last])
            state.has_seen_tokens.copy_(lengths > 0)
        return RoutingOutput(p, boundary, selected, mask)

    def extend(self, hidden: Tensor, state: RoutingState, mask: Tensor | None = None
               ) -> RoutingOutput:
        """Routing of new tokens (B, L, D) continuing each row from ``state``: the first new
        token compares with the cached last token (p = 1 for a row that has seen none); the
        state moves to each row's last new valid token (kept where a row has none)."""
        prev = torch.cat([state.last_hidden[:, None].to(hidden.dtype), hidden[:, :-1]], dim=1)
        p = self._prob(prev, hidden)
        first = torch.zeros_like(p, dtype=torch.bool)
        first[:, 0] = ~state.has_seen_tokens
        p = torch.where(first, torch.ones_like(p), p)
        boundary = p > 0.5
        if mask is not None:
            boundary = boundary & mask
        lengths = _lengths(hidden, mask)
        last = hidden[torch.arange(hidden.shape[0]), (lengths - 1).clamp(min=0)]
        seen = (lengths > 0)[:, None]
        state.last_hidden.copy_(torch.where(seen, last.to(state.last_hidden.dtype),
                                            state.last_hidden))
        state.has_seen_tokens.copy_(state.has_seen_tokens | seen[:, 0])
        return RoutingOutput(p, boundary, torch.where(boundary, p, 1.0 - p), mask)

    def allocate_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> RoutingState:
        dtype = dtype or self.q_proj_layer.weight.dtype
        return RoutingState(
            torch.zeros(batch_size, self.d_model, device=device, dtype=dtype),
            torch.zeros(batch_size, dtype=torch.bool, device=device),
        )

    def step(
        self, hidden: Tensor, state: RoutingState, active: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One token per row: returns ``(p (B,), boundary (B,) bool)`` and updates the state."""
        cur = hidden[:, 0]
        p = self._prob(state.last_hidden.to(cur.dtype), cur)
        p = torch.where(state.has_seen_tokens, p, torch.ones_like(p))
        active = _all_active(active, cur)
        state.last_hidden.copy_(torch.where(active[:, None], cur, state.last_hidden))
        state.has_seen_tokens.copy_(state.has_seen_tokens | active)
        return p, (p > 0.5) & active


def _lengths(hidden: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return torch.full((hidden.shape[0],), hidden.shape[1], device=hidden.device)
    return mask.sum(1)


def _all_active(active: Tensor | None, ref: Tensor) -> Tensor:
    if active is None:
        return torch.ones(ref.shape[0], dtype=torch.bool, device=ref.device)
    return active


@dataclass
class Chunked:
    """Boundary tokens gathered to the front of each row."""

    hidden: Tensor  # (B, M, D)
    mask: Tensor  # (B, M) bool, valid chunk tokens
    seq_idx: Tensor | None  # (B, M)
    order: Tensor  # (B, M) source position of each chunk token


class ChunkLayer(nn.Module):
    """Keep the boundary tokens (padded form: rows right-padded to the longest chunk count)."""

    def forward(
        self, hidden: Tensor, boundary_mask: Tensor, seq_idx: Tensor | None = None
    ) -> Chunked:
        batch, length = boundary_mask.shape
        num_chunks = boundary_mask.sum(-1)  # (B,)
        max_chunks = int(num_chunks.max()) if batch > 0 else 0
        # Stable sort key that moves boundary tokens to the front, keeping their order.
        positions = torch.arange(length, device=hidden.device)
        key = positions + (~boundary_mask).long() * length
        order = torch.argsort(key, dim=1)[:, :max_chunks]  # (B, M)
        gathered = hidden.gather(1, order[..., None].expand(-1, -1, hidden.shape[-1]))
        next_mask = torch.arange(max_chunks, device=hidden.device) < num_chunks[:, None]
        next_seq_idx = None if seq_idx is None else seq_idx.gather(1, order)
        return Chunked(gathered, next_mask, next_seq_idx, order)

    @staticmethod
    def step(hidden: Tensor, boundary: Tensor) -> Tensor:
        """Decoding: the token goes inward only for rows where ``boundary``; see ``HNet.step``."""
        return hidden


class DeChunkLayer(nn.Module):
    """Smooth the inner outputs with an EMA over chunks, then give each token its chunk's value.

    z̄_j = P_j ẑ_j + (1 - P_j) z̄_{j-1} over chunks j (P = boundary probability of the chunk's
    first token); token t takes z̄ of the latest boundary at or before t.
    """

    def __init__(self, d_model: int, chunk_size: int = 256) -> None:
        super().__init__()
        self.d_model = d_model
        self.chunk_size = chunk_size

    def forward(
        self,
        inner: Tensor,  # (B, M, D) inner-network outputs at boundary tokens
        routing: RoutingOutput,
        chunked: Chunked,
        state: DeChunkState | None = None,
    ) -> Tensor:
        p = routing.boundary_prob.clamp(EMA_P_MIN, 1 - EMA_P_MIN)
        p_chunks = p.gather(1, chunked.order)  # (B, M)
        # Padding chunks (beyond each row's count) come after the valid ones; the EMA is causal,
        # so they cannot affect valid values.
        smoothed = ema_scan(
            inner.to(accumulation_dtype(inner.dtype)),
            p_chunks.to(accumulation_dtype(inner.dtype)),
            seq_idx=chunked.seq_idx,
            chunk_size=self.chunk_size,
        )  # (B, M, D) float32 (float64 for float64 models)
        if state is not None:
            num = chunked.mask.sum(1)
            last = smoothed[torch.arange(inner.shape[0]), (num - 1).clamp(min=0)]
            state.last_value.copy_(torch.where((num > 0)[:, None], last, 0.0))
        chunk_of_token = (routing.boundary_mask.long().cumsum(1) - 1).clamp(min=0)  # (B, L)
        out = smoothed.gather(1, chunk_of_token[..., None].expand(-1, -1, inner.shape[-1]))
        return out.to(inner.dtype)

    def extend(
        self,
        inner: Tensor,  # (B, M, D) inner outputs at the new boundary tokens
        routing: RoutingOutput,  # of the new tokens
        chunked: Chunked,
        state: DeChunkState,
    ) -> Tensor:
        """Dechunk new tokens continuing each row from ``state``: the EMA starts from the cached
        last value, and new tokens before a row's first new boundary take that value (they
        belong to the last cached chunk)."""
        acc = accumulation_dtype(inner.dtype)
        p = routing.boundary_prob.clamp(EMA_P_MIN, 1 - EMA_P_MIN).gather(1, chunked.order)
        smoothed = ema_scan(inner.to(acc), p.to(acc), chunk_size=self.chunk_size,
                            initial_state=state.last_value.to(acc))
        values = torch.cat([state.last_value[:, None].to(acc), smoothed], dim=1)  # (B, 1 + M, D)
        num = chunked.mask.sum(1)
        state.last_value.copy_(values[torch.arange(inner.shape[0]), num])
        chunk_of_token = routing.boundary_mask.long().cumsum(1)  # 0 = the cached last chunk
        out = values.gather(1, chunk_of_token[..., None].expand(-1, -1, inner.shape[-1]))
        return out.to(inner.dtype)

    def allocate_state(
        self, batch_size: int, device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> DeChunkState:
        acc = accumulation_dtype(dtype or torch.float32)
        return DeChunkState(torch.zeros(batch_size, self.d_model, device=device, dtype=acc))

    def step(
        self,
        inner: Tensor,  # (B, 1, D); only meaningful where boundary
        p: Tensor,  # (B,)
        boundary: Tensor,  # (B,) bool
        state: DeChunkState,
        active: Tensor | None = None,
    ) -> Tensor:
        p = p.clamp(EMA_P_MIN, 1 - EMA_P_MIN)[:, None]  # (B, 1): per-row, not broadcast over B
        p = p.to(state.last_value.dtype)
        updated = p * inner[:, 0].to(p.dtype) + (1 - p) * state.last_value
        # torch.where, not arithmetic masking: inner rows that were not stepped may hold garbage.
        value = torch.where(boundary[:, None], updated, state.last_value)
        active = _all_active(active, inner)
        state.last_value.copy_(torch.where(active[:, None], value, state.last_value))
        return value[:, None].to(inner.dtype)


def ratio_loss(routing: RoutingOutput, target_ratio: float) -> Tensor:
    """Load-balancing loss N/(N-1) * ((N-1) F G + (1-F)(1-G)); equals 1 at F = G = 1/N.

    F = fraction of valid tokens selected as boundaries, G = mean boundary probability over valid
    tokens (padding excluded, unlike the official padded-mode code).
    """
    n = float(target_ratio)
    if n <= 1.0:
        raise ValueError(f"target_ratio must be > 1, got {target_ratio}")
    prob = routing.boundary_prob.to(accumulation_dtype(routing.boundary_prob.dtype))
    selected = routing.boundary_mask.to(prob.dtype)
    if routing.mask is None:
        f, g = selected.mean(), prob.mean()
    else:
        valid = routing.mask.to(prob.dtype)
        count = valid.sum().clamp(min=1.0)
        f = (selected * valid).sum() / count
        g = (prob * valid).sum() / count
    return n / (n - 1) * ((n - 1) * f * g + (1 - f) * (1 - g))
