"""Mamba-2 mixer (mamba_ssm defaults and parameter names) with prefill cache, one-token step and
multi-token continuation from a cache (``extend``).

Pure-torch path everywhere; on CUDA with mamba_ssm + causal_conv1d importable the no-cache
forward uses the fused ``mamba_split_conv1d_scan_combined`` kernel (same parameters).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hnet_dna.model.norm import RMSNormGated
from hnet_dna.model.ops.conv import causal_depthwise_conv
from hnet_dna.model.ops.ssd import (
    TORCH_CHUNK_SIZE,
    kernel_device_ok,
    kernels_available,
    kernels_disabled,
    ssd_scan,
)
from hnet_dna.model.utils import accumulation_dtype, on_valid

__all__ = ["Mamba2", "Mamba2Cache", "balanced_chunk"]


def balanced_chunk(length: int, limit: int) -> int:
    """The scan chunk for ``length`` tokens: as many chunks as ``limit`` needs, of equal size, so
    the scan pads the sequence by less than one token per chunk (129 tokens: 3 x 43, not
    3 x 64 = 192)."""
    n = max(1, -(-length // limit))
    return -(-length // n)


@dataclass
class Mamba2Cache:
    """Decoding state of one Mamba2 layer.

    conv_state (B, conv_dim, d_conv): the last d_conv conv inputs (xBC before the conv), oldest
    first; ssm_state (B, nheads, headdim, d_state): the SSM state, kept in float32 or float64.
    """

    conv_state: Tensor
    ssm_state: Tensor


@functools.lru_cache(maxsize=1)
def _load_fused_kernel() -> Callable | None:
    try:
        import causal_conv1d  # noqa: F401  (the fused kernel needs it at call time)
        from mamba_ssm.ops.triton.ssd_combined import mamba_split_conv1d_scan_combined
    except Exception:
        return None
    return mamba_split_conv1d_scan_combined


class Mamba2(nn.Module):
    """Mamba-2 block: in_proj -> [z, xBC, dt]; causal depthwise conv + SiLU on xBC;
    SSD(x, dt, A, B, C) + D x; RMSNormGated(y, z); out_proj.

    ``forward(x, mask, seq_idx, cache)`` / ``allocate_cache`` / ``step`` follow the mixer
    contract of docs/architecture.md.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        expand: int = 2,
        headdim: int = 64,
        ngroups: int = 1,
        chunk_size: int = 256,
        layer_idx: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        A_init_range: tuple[float, float] = (1.0, 16.0),
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = expand * d_model
        if self.d_inner % headdim != 0:
            raise ValueError(f"expand * d_model ({self.d_inner}) must be divisible by {headdim=}")
        self.headdim = headdim
        self.nheads = self.d_inner // headdim
        if self.nheads % ngroups != 0:
            raise ValueError(f"ngroups ({ngroups}) must divide nheads ({self.nheads})")
        self.ngroups = ngroups
        self.chunk_size = chunk_size
        self.layer_idx = layer_idx
        self.conv_dim = self.d_inner + 2 * ngroups * d_state

        d_in_proj = self.d_inner + self.conv_dim + self.nheads  # [z, xBC, dt]
        self.in_proj = nn.Linear(d_model, d_in_proj, bias=False, **factory)
        # padding is not used by forward (causal padding is explicit); kept for parity.
        self.conv1d = nn.Conv1d(
            self.conv_dim,
            self.conv_dim,
            kernel_size=d_conv,
            groups=self.conv_dim,
            padding=d_conv - 1,
            bias=True,
            **factory,
        )

        # dt log-uniform in [dt_min, dt_max], floored; dt_bias = softplus^{-1}(dt) so that
        # softplus(0 + dt_bias) reproduces it at init.
        dt = torch.exp(
            torch.rand(self.nheads, device=device) * (math.log(dt_max) - math.log(dt_min))
            + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        inv_dt = dt + torch.log(-torch.expm1(-dt))
        self.dt_bias = nn.Parameter(inv_dt.to(dtype) if dtype is not None else inv_dt)
        A = torch.empty(self.nheads, device=device).uniform_(*A_init_range)
        A_log = torch.log(A)
        self.A_log = nn.Parameter(A_log.to(dtype) if dtype is not None else A_log)
        self.D = nn.Parameter(torch.ones(self.nheads, **factory))
        for p in (self.dt_bias, self.A_log, self.D):
            p._no_weight_decay = True

        self.norm = RMSNormGated(
            self.d_inner,
            eps=1e-5,
            group_size=self.d_inner // ngroups,
            norm_before_gate=False,
            **factory,
        )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False, **factory)

    # ------------------------------------------------------------------ helpers
    def _split_xbc(self, xBC: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        gn = self.ngroups * self.d_state
        return torch.split(xBC, [self.d_inner, gn, gn], dim=-1)

    def _conv(self, xBC: Tensor, seq_idx: Tensor | None) -> Tensor:
        """Causal depthwise conv over (B, L, conv_dim); no tap crosses a change of seq_idx."""
        w = self.conv1d.weight[:, 0]  # (conv_dim, d_conv), tap d_conv-1 = current token
        bias = self.conv1d.bias
        if seq_idx is None and xBC.is_cuda:
            xt = F.pad(xBC.transpose(1, 2), (self.d_conv - 1, 0))  # (B, C, L + d_conv - 1)
            out = F.conv1d(xt, self.conv1d.weight, bias, groups=self.conv_dim)
            # Back to (B, L, C) in memory: the SiLU and its backward on the transposed view
            # run on strided data, ~1.5x slower than this copy plus contiguous passes.
            return out.transpose(1, 2).contiguous()
        # CPU and packed rows: a sum of shifted inputs with a hand-written backward (K small,
        # so K in-place passes are cheap). On CPU this trains several times faster than
        # F.conv1d, whose depthwise backward dominated a whole training step; packed rows
        # mask each tap where the shifted token belongs to another sequence.
        return causal_depthwise_conv(xBC, w, bias, seq_idx)

    def _fused_forward(self, x: Tensor, seq_idx: Tensor | None) -> Tensor | None:
        if not kernel_device_ok(x) or kernels_disabled():
            return None
        kernel = _load_fused_kernel()
        if kernel is None:
            return None
        return kernel(
            self.in_proj(x),
            self.conv1d.weight[:, 0],
            self.conv1d.bias,
            self.dt_bias,
            -torch.exp(self.A_log.to(accumulation_dtype(x.dtype))),
            self.D,
            self.chunk_size,
            seq_idx=None if seq_idx is None else seq_idx.to(torch.int32).contiguous(),
            activation="silu",
            rmsnorm_weight=self.norm.weight,
            rmsnorm_eps=self.norm.eps,
            outproj_weight=self.out_proj.weight,
            outproj_bias=self.out_proj.bias,
            headdim=self.headdim,
            ngroups=self.ngroups,
            norm_before_gate=False,
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        seq_idx: Tensor | None = None,
        cache: Mamba2Cache | None = None,
    ) -> Tensor:
        """x (B, L, D) -> (B, L, D). With ``cache``, also fill it from each row's valid tokens."""
        if cache is not None and seq_idx is not None:
            raise ValueError("prefill with a cache does not support seq_idx")
        if cache is None:
            # Right padding + causality: padded positions cannot reach valid ones, so the fused
            # kernel (which knows nothing of the mask) gives the same valid outputs.
            out = self._fused_forward(x, seq_idx)
            if out is not None:
                return out

        Bsz, L, _ = x.shape
        z, xBC, dt = torch.split(
            self.in_proj(x), [self.d_inner, self.conv_dim, self.nheads], dim=-1
        )
        if mask is not None:
            xBC = xBC * mask.unsqueeze(-1).to(xBC.dtype)
        xBC_raw = xBC
        xBC = F.silu(self._conv(xBC, seq_idx))
        xs, Bm, Cm = self._split_xbc(xBC)

        cdt = accumulation_dtype(x.dtype)  # float32, or float64 for float64 modules
        A = -torch.exp(self.A_log.to(cdt))  # (h,)
        dt = F.softplus(dt.to(cdt) + self.dt_bias.to(cdt))  # (B, L, h)
        xs = xs.reshape(Bsz, L, self.nheads, self.headdim)
        if mask is not None:
            # dt = 0 on padding: no decay and no input, so the state after the last valid
            # token is the final state.
            dt = dt * mask.unsqueeze(-1).to(dt.dtype)
            xs = xs * mask[:, :, None, None].to(xs.dtype)
        y = ssd_scan(
            xs,
            dt,
            A,
            Bm.reshape(Bsz, L, self.ngroups, self.d_state),
            Cm.reshape(Bsz, L, self.ngroups, self.d_state),
            self.chunk_size,
            D=self.D,
            seq_idx=seq_idx,
            return_final_state=cache is not None,
        )
        if cache is not None:
            y, final_state = y
            self._fill_cache(cache, xBC_raw, final_state, mask)
        y = self.norm(y.reshape(Bsz, L, self.d_inner), z)
        return self.out_proj(y)

    def _fill_cache(
        self, cache: Mamba2Cache, xBC: Tensor, final_state: Tensor, mask: Tensor | None
    ) -> None:
        Bsz, L, _ = xBC.shape
        if mask is None:
            lengths = torch.full((Bsz,), L, device=xBC.device, dtype=torch.long)
        else:
            lengths = mask.long().sum(dim=1)
        # Columns lengths - d_conv .. lengths - 1 of each row, zeros before the row starts.
        idx = lengths[:, None] - self.d_conv + torch.arange(self.d_conv, device=xBC.device)
        valid = (idx >= 0).unsqueeze(-1)  # (B, d_conv, 1)
        gathered = torch.gather(
            xBC, 1, idx.clamp(min=0).unsqueeze(-1).expand(Bsz, self.d_conv, self.conv_dim)
        )
        conv_state = (gathered * valid).transpose(1, 2)  # (B, conv_dim, d_conv)
        cache.conv_state = conv_state.to(cache.conv_state.dtype).detach().clone()
        cache.ssm_state = final_state.to(cache.ssm_state.dtype).detach().clone()

    def extend(self, x: Tensor, cache: Mamba2Cache, mask: Tensor | None = None) -> Tensor:
        """Continue every row from its cache over new tokens: x (B, L, D) -> (B, L, D).

        ``mask`` (right padding) marks each row's new tokens; the cache ends after them (a row
        with none keeps its cache). Equal to the full forward over cached + new tokens: the
        conv reads the cached last inputs, the scan starts from the cached SSM state.
        """
        Bsz, L, _ = x.shape
        K = self.d_conv
        z, xBC, dt = torch.split(
            on_valid(self.in_proj, mask, x), [self.d_inner, self.conv_dim, self.nheads], dim=-1
        )  # zeros at padding
        # The cached last K conv inputs go before the new ones (contiguous, which the shifted
        # adds of the conv also prefer); outputs at the history positions are dropped.
        full = torch.cat([cache.conv_state.transpose(1, 2).to(xBC.dtype), xBC], dim=1)
        xBC = F.silu(causal_depthwise_conv(full, self.conv1d.weight[:, 0], self.conv1d.bias)[:, K:])
        xs, Bm, Cm = self._split_xbc(xBC)
        cdt = accumulation_dtype(x.dtype)
        A = -torch.exp(self.A_log.to(cdt))
        dt = F.softplus(dt.to(cdt) + self.dt_bias.to(cdt))
        xs = xs.reshape(Bsz, L, self.nheads, self.headdim)
        if mask is not None:
            dt = dt * mask.unsqueeze(-1).to(dt.dtype)
            xs = xs * mask[:, :, None, None].to(xs.dtype)
        chunk = self.chunk_size
        if not kernels_available(x):  # torch scan: no chunk mostly padding for short segments
            chunk = balanced_chunk(L, min(chunk, TORCH_CHUNK_SIZE))
        y, final_state = ssd_scan(
            xs, dt, A,
            Bm.reshape(Bsz, L, self.ngroups, self.d_state),
            Cm.reshape(Bsz, L, self.ngroups, self.d_state),
            chunk, D=self.D, initial_state=cache.ssm_state.to(cdt), return_final_state=True,
        )
        new = torch.full((Bsz,), L, device=x.device) if mask is None else mask.long().sum(1)
        idx = (K + new)[:, None] - K + torch.arange(K, device=x.device)  # last K valid inputs
        conv_state = full.gather(1, idx.unsqueeze(-1).expand(Bsz, K, self.conv_dim))
        cache.conv_state = conv_state.transpose(1, 2).to(cache.conv_state.dtype).contiguous()
        cache.ssm_state = final_state.to(cache.ssm_state.dtype)
        return on_valid(lambda y, z: self.out_proj(self.norm(y, z)), mask,
                        y.reshape(Bsz, L, self.d_inner), z)

    # ------------------------------------------------------------------ decoding
    def allocate_cache(
        self,
        batch_size: int,
        max_seqlen: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Mamba2Cache:
        """Zero cache. conv_state in ``dtype`` (default float32); ssm_state float32 (float64 if
        ``dtype`` is float64). ``max_seqlen`` is unused: the state size is constant."""
        del max_seqlen
        device = self.in_proj.weight.device if device is None else device
        conv_dtype = torch.float32 if dtype is None else dtype
        ssm_dtype = accumulation_dtype(conv_dtype)
        return Mamba2Cache(
            conv_state=torch.zeros(
                batch_size, self.conv_dim, self.d_conv, device=device, dtype=conv_dtype
            ),
            ssm_state=torch.zeros(
                batch_size,
                self.nheads,
                self.headdim,
                self.d_state,
                device=device,
                dtype=ssm_dtype,
            ),
        )

    def step(self, x: Tensor, cache: Mamba2Cache, active: Tensor | None = None) -> Tensor:
        """One token per row: x (B, 1, D) -> (B, 1, D). Rows with ``active`` False keep their
        cache (their output is unspecified). The cache tensors are replaced, not mutated."""
        if x.shape[1] != 1:
            raise ValueError(f"step expects one token per row, got shape {tuple(x.shape)}")
        Bsz = x.shape[0]
        z, xBC, dt = torch.split(
            self.in_proj(x[:, 0]), [self.d_inner, self.conv_dim, self.nheads], dim=-1
        )
        sdt = cache.ssm_state.dtype
        conv_state = torch.cat(
            [cache.conv_state[:, :, 1:], xBC.unsqueeze(-1).to(cache.conv_state.dtype)], dim=-1
        )  # (B, conv_dim, d_conv)
        w = self.conv1d.weight[:, 0].to(sdt)  # (conv_dim, d_conv)
        xBC = F.silu((conv_state.to(sdt) * w).sum(-1) + self.conv1d.bias.to(sdt))
        xs, Bm, Cm = self._split_xbc(xBC)

        A = -torch.exp(self.A_log.to(sdt))  # (h,)
        dt = F.softplus(dt.to(sdt) + self.dt_bias.to(sdt))  # (B, h)
        xs = xs.reshape(Bsz, self.nheads, self.headdim)
        rep = self.nheads // self.ngroups
        Bh = Bm.reshape(Bsz, self.ngroups, self.d_state).repeat_interleave(rep, dim=1)
        Ch = Cm.reshape(Bsz, self.ngroups, self.d_state).repeat_interleave(rep, dim=1)
        decay = torch.exp(dt * A)[:, :, None, None]  # (B, h, 1, 1)
        ssm_state = cache.ssm_state * decay + (dt[:, :, None] * xs)[..., None] * Bh[:, :, None]
        y = torch.einsum("bhpn,bhn->bhp", ssm_state, Ch) + self.D.to(sdt)[:, None] * xs

        if active is not None:
            act = active.to(torch.bool)
            conv_state = torch.where(act[:, None, None], conv_state, cache.conv_state)
            ssm_state = torch.where(act[:, None, None, None], ssm_state, cache.ssm_state)
        cache.conv_state = conv_state
        cache.ssm_state = ssm_state

        y = self.norm(y.reshape(Bsz, self.d_inner).to(x.dtype), z)
        return self.out_proj(y).unsqueeze(1)
