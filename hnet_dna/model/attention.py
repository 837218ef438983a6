"""Causal multi-head attention with partial rotary, a left sliding window and a KV cache.

Visibility rule everywhere (forward, packed, prefill, decode): key ``j`` is visible to query
``i`` iff ``0 <= i - j <= window_size`` (``window_size = -1``: no left limit) and both tokens
belong to the same packed sequence. ``window_size = w`` therefore means ``w + 1`` keys including
the query itself, as in flash-attn's ``window_size=(w, -1)``.

The pure-torch path (``F.scaled_dot_product_attention``) is the reference; flash-attn is used
only when it imports and the tensors are CUDA fp16/bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hnet_dna.model.rotary import RotaryEmbedding, sequence_positions, sequence_starts
from hnet_dna.model.utils import on_valid

try:  # Optional fast path; absent on CPU-only installs.
    from flash_attn import flash_attn_func, flash_attn_varlen_func
except (ImportError, OSError):  # pragma: no cover - depends on the environment
    flash_attn_func = flash_attn_varlen_func = None


@dataclass
class AttentionCache:
    """KV cache of one attention layer.

    ``k``, ``v``: (B, max_seqlen, H, head_dim), keys stored after rotary (absolute positions).
    ``lengths``: (B,) int64, number of cached tokens per row; slots ``>= lengths`` are garbage.
    A sliding-window layer still stores every position (simple and correct; the window is
    applied by masking when attending), so ``max_seqlen`` must cover the whole sequence.
    """

    k: Tensor
    v: Tensor
    lengths: Tensor

    @property
    def max_seqlen(self) -> int:
        return self.k.shape[1]


def attention_mask(length: int, window_size: int, seq_idx: Tensor | None, device=None) -> Tensor:
    """Boolean visibility mask (B or 1, L, L): causal, left window, same packed sequence."""
    idx = torch.arange(length, device=device)
    diff = idx[:, None] - idx[None, :]  # (L, L) query i minus key j
    visible = diff >= 0
    if window_size >= 0:
        visible = visible & (diff <= window_size)
    if seq_idx is None:
        return visible[None]
    return visible[None] & (seq_idx[:, :, None] == seq_idx[:, None, :])


# Query block of the blocked sliding-window path: at least this many queries per block.
LOCAL_MIN_BLOCK = 128


def local_block_size(window_size: int) -> int:
    """Query block for a left window ``w``: ~w / 4, so each query computes ~1.25 (w + 1) scores
    instead of L (fastest on CPU among w/4, w/2, w at w = 1023), never below
    ``LOCAL_MIN_BLOCK``."""
    return max(LOCAL_MIN_BLOCK, -(-window_size // 4))


def cu_seqlens_from_seq_idx(seq_idx: Tensor) -> tuple[Tensor, int]:
    """Flatten packed rows (B, L) into flash-attn varlen form.

    Returns ``cu_seqlens`` (N + 1,) int32 over the B * L flattened tokens (every row start also
    starts a sequence) and ``max_seqlen`` as a python int (flash-attn rejects a tensor there).
    """
    starts = sequence_starts(seq_idx).flatten().nonzero().squeeze(1)  # (N,)
    total = torch.tensor([seq_idx.numel()], device=seq_idx.device)
    cu_seqlens = torch.cat((starts, total)).to(torch.int32)
    return cu_seqlens, int((cu_seqlens[1:] - cu_seqlens[:-1]).max())


def _flash_usable(q: Tensor) -> bool:
    return (
        flash_attn_func is not None
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and q.shape[-1] % 8 == 0
        and q.shape[-1] <= 256
    )


class CausalMHA(nn.Module):
    """Causal multi-head self-attention (official H-Net ``CausalMHA`` parameter layout)."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        rotary_emb_dim: int = 0,
        window_size: int = -1,
        qkv_proj_bias: bool = False,
        out_proj_bias: bool = False,
        softmax_scale: float | None = None,
        layer_idx: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if num_heads <= 0 or d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        head_dim = d_model // num_heads
        if rotary_emb_dim < 0 or rotary_emb_dim > head_dim or rotary_emb_dim % 2 != 0:
            raise ValueError(
                f"rotary_emb_dim ({rotary_emb_dim}) must be even and in [0, head_dim={head_dim}]"
            )
        if window_size < -1:
            raise ValueError(f"window_size must be -1 (global) or >= 0, got {window_size}")
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.rotary_emb_dim = rotary_emb_dim
        self.window_size = window_size
        self.softmax_scale = head_dim**-0.5 if softmax_scale is None else softmax_scale
        self.layer_idx = layer_idx
        # Output features ordered (3, heads, head_dim): q, k, v are contiguous blocks.
        self.Wqkv = nn.Linear(d_model, 3 * d_model, bias=qkv_proj_bias, **factory)
        self.out_proj = nn.Linear(d_model, d_model, bias=out_proj_bias, **factory)
        self.rotary_emb = (
            RotaryEmbedding(rotary_emb_dim, device=device) if rotary_emb_dim > 0 else None
        )

    # ------------------------------------------------------------------ helpers
    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, length, _ = x.shape
        qkv = self.Wqkv(x).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(dim=2)  # each (B, L, H, hd)
        return q, k, v

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, seq_idx: Tensor | None) -> Tensor:
        length, w = q.shape[1], self.window_size
        # A window that covers the whole sequence does not bind: plain causal attention.
        if seq_idx is None and (w < 0 or length <= w + 1):
            qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, L, hd)
            out = F.scaled_dot_product_attention(
                qt, kt, vt, is_causal=True, scale=self.softmax_scale
            )
            return out.transpose(1, 2)  # (B, L, H, hd)
        if w >= 0:
            block = local_block_size(w)
            first = -(-w // block) * block  # queries before this see key positions < 0
            if length > first + block:
                return self._local_sdpa(q, k, v, seq_idx, block, first)
        return self._masked_sdpa(q, k, v, seq_idx)

    def _masked_sdpa(self, q: Tensor, k: Tensor, v: Tensor, seq_idx: Tensor | None) -> Tensor:
        """Reference path: one explicit (L, L) visibility mask."""
        qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
        mask = attention_mask(q.shape[1], self.window_size, seq_idx, device=q.device)
        out = F.scaled_dot_product_attention(
            qt, kt, vt, attn_mask=mask[:, None], scale=self.softmax_scale
        )
        return out.transpose(1, 2)

    def _local_sdpa(
        self, q: Tensor, k: Tensor, v: Tensor, seq_idx: Tensor | None, block: int, first: int
    ) -> Tensor:
        """Sliding-window attention by query blocks, each against its own ``block + w`` keys.

        The (L, L) form computes (and masks) every score: L / w times the needed work, and an
        L x L mask. Here query block [s, s + block) attends to keys [s - w, s + block), the same
        band mask for every block, so cost and memory grow linearly in L. The first ``first``
        queries (whose window would reach before position 0) go through ``_sdpa`` on their own.
        """
        batch, length, heads, hd = q.shape
        w = self.window_size
        n_blocks = -(-(length - first) // block)
        pad = first + n_blocks * block - length
        span = block + w

        def key_blocks(t: Tensor) -> Tensor:  # (B, L, ...) -> (B * n_blocks, span, ...)
            # Padded keys lie after every real query, so the band mask already hides them.
            t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))[:, first - w :]
            t = t.unfold(1, span, block)  # (B, n_blocks, ..., span)
            return t.movedim(-1, 2).reshape(batch * n_blocks, span, *t.shape[2:-1])

        qb = F.pad(q[:, first:], (0, 0, 0, 0, 0, pad)).reshape(batch * n_blocks, block, heads, hd)
        kb, vb = key_blocks(k), key_blocks(v)
        # Query i (absolute s + i) sees key j (absolute s - w + j) iff i <= j <= i + w.
        qi = torch.arange(block, device=q.device)[:, None]
        kj = torch.arange(span, device=q.device)[None, :]
        mask = ((kj >= qi) & (kj <= qi + w))[None, None]  # (1, 1, block, span)
        if seq_idx is not None:
            sq = F.pad(seq_idx[:, first:], (0, pad)).reshape(batch * n_blocks, block)
            sk = key_blocks(seq_idx[..., None])[..., 0]
            mask = mask & (sq[:, :, None] == sk[:, None, :])[:, None]
        out = F.scaled_dot_product_attention(
            qb.transpose(1, 2), kb.transpose(1, 2), vb.transpose(1, 2),
            attn_mask=mask, scale=self.softmax_scale,
        )  # (B * n_blocks, H, block, hd)
        out = out.transpose(1, 2).reshape(batch, n_blocks * block, heads, hd)[:, : length - first]
        if first == 0:
            return out
        seq_first = None if seq_idx is None else seq_idx[:, :first]
        out_first = self._sdpa(q[:, :first], k[:, :first], v[:, :first], seq_first)
        return torch.cat([out_first, out], dim=1)

    def _flash(self, q: Tensor, k: Tensor, v: Tensor, seq_idx: Tensor | None) -> Tensor:
        window = (self.window_size, -1)  # (left, right); -1 = unlimited
        if seq_idx is None:
            return flash_attn_func(
                q, k, v, softmax_scale=self.softmax_scale, causal=True, window_size=window
            )
        batch, length = seq_idx.shape
        cu_seqlens, max_seqlen = cu_seqlens_from_seq_idx(seq_idx)
        q, k, v = (t.reshape(batch * length, self.num_heads, self.head_dim) for t in (q, k, v))
        out = flash_attn_varlen_func(
            q,
            k,
            v,
            cu_seqlens,
            cu_seqlens,
            max_seqlen,
            max_seqlen,
            softmax_scale=self.softmax_scale,
            causal=True,
            window_size=window,
        )
        return out.view(batch, length, self.num_heads, self.head_dim)

    # ------------------------------------------------------------------ API
    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        seq_idx: Tensor | None = None,
        cache: AttentionCache | None = None,
    ) -> Tensor:
        """x (B, L, D) -> (B, L, D). With ``cache``: prefill, restarting each row at position 0.

        ``mask`` (right padding) only sets the cached lengths: causality already keeps padding
        (always after the valid tokens) out of every valid query.
        """
        batch, length, _ = x.shape
        if cache is not None:
            if seq_idx is not None:
                raise ValueError("prefill with seq_idx (packed sequences) is not supported")
            if cache.k.shape[0] != batch:
                raise ValueError(f"cache batch size {cache.k.shape[0]} != input batch {batch}")
            if length > cache.max_seqlen:
                raise ValueError(
                    f"prefill of {length} tokens exceeds cache max_seqlen {cache.max_seqlen}"
                )
        q, k, v = self._qkv(x)
        if self.rotary_emb is not None:
            if seq_idx is None:
                positions = torch.arange(length, device=x.device).expand(batch, length)
            else:
                positions = sequence_positions(seq_idx)
            q, k = self.rotary_emb(q, k, positions)
        if cache is not None:
            # Caches are inference state: never part of the autograd graph.
            cache.k[:, :length] = k.detach().to(cache.k.dtype)
            cache.v[:, :length] = v.detach().to(cache.v.dtype)
            if mask is None:
                cache.lengths.fill_(length)
            else:
                cache.lengths.copy_(mask.sum(dim=1))
        if _flash_usable(q):
            out = self._flash(q, k, v, seq_idx)
        else:
            out = self._sdpa(q, k, v, seq_idx)
        return self.out_proj(out.reshape(batch, length, self.d_model))

    def allocate_cache(
        self,
        batch_size: int,
        max_seqlen: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> AttentionCache:
        """Empty cache holding up to ``max_seqlen`` tokens per row (also for sliding windows)."""
        device = self.Wqkv.weight.device if device is None else device
        dtype = self.Wqkv.weight.dtype if dtype is None else dtype
        shape = (batch_size, max_seqlen, self.num_heads, self.head_dim)
        return AttentionCache(
            k=torch.zeros(shape, device=device, dtype=dtype),
            v=torch.zeros(shape, device=device, dtype=dtype),
            lengths=torch.zeros(batch_size, device=device, dtype=torch.long),
        )

    def step(self, x: Tensor, cache: AttentionCache, active: Tensor | None = None) -> Tensor:
        """Decode one token per row: x (B, 1, D) -> (B, 1, D).

        Row b sits at position ``cache.lengths[b]``. Only active rows write their k/v and advance;
        inactive rows' cache is left bit-for-bit untouched and their output is unspecified.
        """
        batch = x.shape[0]
        if x.shape[1] != 1:
            raise ValueError(f"step expects one token per row, got x of shape {tuple(x.shape)}")
        if cache.k.shape[0] != batch:
            raise ValueError(f"cache batch size {cache.k.shape[0]} != input batch {batch}")
        lengths = cache.lengths  # (B,)
        act = (
            torch.ones(batch, dtype=torch.bool, device=x.device)
            if active is None
            else active.to(device=x.device, dtype=torch.bool)
        )
        # One host sync: the key range [lo, hi] shared by the batch, and the overflow check.
        hi, lo_len = torch.stack(
            (torch.where(act, lengths, -1).max(), torch.where(act, lengths, lengths.max()).min())
        ).tolist()
        if hi < 0:  # no active row: nothing to write, output unspecified
            return torch.zeros_like(x)
        if hi >= cache.max_seqlen:
            raise ValueError(
                f"attention cache is full: a row already holds {hi} tokens "
                f"(max_seqlen={cache.max_seqlen})"
            )
        lo = 0 if self.window_size < 0 else max(0, lo_len - self.window_size)

        q, k, v = self._qkv(x)  # (B, 1, H, hd)
        if self.rotary_emb is not None:
            q, k = self.rotary_emb(q, k, lengths[:, None])

        # Write the new k/v at each row's position. Inactive rows rewrite their own old slot
        # (a no-op bit for bit) so the batch needs no data-dependent indexing.
        rows = torch.arange(batch, device=x.device)
        slot = lengths.clamp(max=cache.max_seqlen - 1)
        keep = ~act[:, None, None]  # (B, 1, 1) over (H, hd)
        for store, new in ((cache.k, k), (cache.v, v)):
            old = store[rows, slot]  # (B, H, hd)
            store[rows, slot] = torch.where(keep, old, new[:, 0].detach().to(store.dtype))

        keys = cache.k[:, lo : hi + 1].to(q.dtype)  # (B, n, H, hd)
        values = cache.v[:, lo : hi + 1].to(q.dtype)
        diff = lengths[:, None] - torch.arange(lo, hi + 1, device=x.device)  # (B, n) query - key
        visible = diff >= 0
        if self.window_size >= 0:
            visible = visible & (diff <= self.window_size)
        # Inactive rows may see no key in [lo, hi]; let them see all so the output stays finite.
        visible = visible | ~act[:, None]
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            keys.transpose(1, 2),
            values.transpose(1, 2),
            attn_mask=visible[:, None, None, :],
            scale=self.softmax_scale,
        )  # (B, H, 1, hd)
        cache.lengths.add_(act.to(cache.lengths.dtype))
        return self.out_proj(out.transpose(1, 2).reshape(batch, 1, self.d_model))

    def extend(self, x: Tensor, cache: AttentionCache, mask: Tensor | None = None) -> Tensor:
        """Continue every row from its KV cache over new tokens: x (B, L, D) -> (B, L, D).

        Row b's new tokens sit at positions ``cache.lengths[b]`` on (rows may differ); ``mask``
        (right padding) marks them, and ``lengths`` advances by their count. Only they are
        written; padded queries' outputs are unspecified (finite).
        """
        batch, length, _ = x.shape
        if cache.k.shape[0] != batch:
            raise ValueError(f"cache batch size {cache.k.shape[0]} != input batch {batch}")
        start = cache.lengths
        positions = start[:, None] + torch.arange(length, device=x.device)  # (B, L)
        valid = torch.ones_like(positions, dtype=torch.bool) if mask is None else mask
        end, cached = (int(t) for t in torch.stack([(start + valid.sum(1)).max(), start.max()]))
        if end > cache.max_seqlen:
            raise ValueError(f"extending to {end} tokens exceeds cache max_seqlen "
                             f"{cache.max_seqlen}")
        qkv = on_valid(self.Wqkv, mask, x).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.unbind(dim=2)
        if self.rotary_emb is not None:
            q, k = self.rotary_emb(q, k, positions)
        rows = torch.arange(batch, device=x.device)[:, None].expand(-1, length)[valid]
        slots = positions[valid]  # padding is not written: it may lie past max_seqlen
        cache.k[rows, slots] = k[valid].detach().to(cache.k.dtype)
        cache.v[rows, slots] = v[valid].detach().to(cache.v.dtype)
        cache.lengths.add_(valid.sum(1).to(cache.lengths.dtype))
        if cached == 0:  # nothing cached: plain self-attention (causal kernels, local blocks)
            out = self._flash(q, k, v, None) if _flash_usable(q) else self._sdpa(q, k, v, None)
        else:
            keys = torch.arange(end, device=x.device)
            visible = keys <= positions[:, :, None]  # (B, L, end)
            if self.window_size >= 0:
                visible = visible & (keys >= positions[:, :, None] - self.window_size)
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                cache.k[:, :end].to(q.dtype).transpose(1, 2),
                cache.v[:, :end].to(q.dtype).transpose(1, 2),
                attn_mask=visible[:, None],
                scale=self.softmax_scale,
            ).transpose(1, 2)  # (B, L, H, hd)
        return on_valid(self.out_proj, mask, out.reshape(batch, length, self.d_model))

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, num_heads={self.num_heads}, "
            f"rotary_emb_dim={self.rotary_emb_dim}, window_size={self.window_size}"
        )
