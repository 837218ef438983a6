"""The recursive H-Net stage: encoder -> route -> chunk -> main network -> dechunk -> decoder.

``HNet(config, stage_idx=s)`` builds stage s; its ``main_network`` is either ``HNet(s + 1)`` or,
at the innermost stage, an ``Isotropic`` stack. Module and parameter names follow the official
code so that its checkpoints map one-to-one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor, nn

from hnet_dna.model.chunking import (
    Chunked,
    ChunkLayer,
    DeChunkLayer,
    DeChunkState,
    RoutingModule,
    RoutingOutput,
    RoutingState,
    straight_through,
)
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.isotropic import Isotropic
from hnet_dna.model.utils import accumulation_dtype


@dataclass
class HNetCache:
    """Decoding state of one stage (``main`` nests the next stage's ``HNetCache``)."""

    main: Any
    encoder: list[Any] | None = None
    decoder: list[Any] | None = None
    routing: RoutingState | None = None
    dechunk: DeChunkState | None = None


def select_rows(state: Any, rows: Tensor) -> Any:
    """A copy of a decoding cache (``HNetCache`` or any part of it) holding the given rows, in
    that order (a row may repeat): e.g. one prefilled prefix continued by several suffixes."""
    if isinstance(state, Tensor):
        return state.index_select(0, rows)
    if isinstance(state, list):
        return [select_rows(s, rows) for s in state]
    if state is None:
        return None
    return replace(state, **{f.name: select_rows(getattr(state, f.name), rows)
                             for f in fields(state)})


class HNet(nn.Module):
    def __init__(
        self,
        config: HNetConfig,
        stage_idx: int = 0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.stage_idx = stage_idx
        layout = config.stage_layout(stage_idx)
        cfg = config.stage_cfg(stage_idx)
        self.d_model = d_model = cfg["d_model"]
        self.is_innermost = len(layout) == 1

        if self.is_innermost:
            self.main_network = Isotropic(layout[0], d_model, cfg, **factory)
        else:
            self.encoder = Isotropic(layout[0], d_model, cfg, **factory)
            self.main_network = HNet(config, stage_idx + 1, **factory)
            self.decoder = Isotropic(layout[2], d_model, cfg, **factory)
            self.routing_module = RoutingModule(d_model, **factory)
            self.chunk_layer = ChunkLayer()
            self.dechunk_layer = DeChunkLayer(d_model, chunk_size=cfg["chunk_size"])
            # fp32 like the official code: this path carries the fine-grained residual.
            self.residual_proj = nn.Linear(
                d_model, d_model, device=device,
                dtype=accumulation_dtype(dtype or torch.get_default_dtype()),
            )
            nn.init.zeros_(self.residual_proj.weight)
            self.residual_proj.weight._no_reinit = True

        if stage_idx > 0:
            d_outer = config.stage_cfg(stage_idx - 1)["d_model"]
            if d_model > d_outer:
                # Widening appends a learned vector (zeros at init); narrowing truncates.
                self.pad_dimension = nn.Parameter(torch.zeros(d_model - d_outer, **factory))
        if not hasattr(self, "pad_dimension"):
            self.pad_dimension = None

    # ------------------------------------------------------------------ helpers
    def _widen(self, x: Tensor) -> Tensor:
        if self.pad_dimension is None:
            return x
        pad = self.pad_dimension.to(x.dtype).expand(*x.shape[:-1], -1)
        return torch.cat([x, pad], dim=-1)

    def _residual(self, hidden: Tensor) -> Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            return self.residual_proj(hidden.to(self.residual_proj.weight.dtype))

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: Tensor,  # (B, L, D_outer)
        mask: Tensor | None = None,
        seq_idx: Tensor | None = None,
        cache: HNetCache | None = None,
        extend: bool = False,
    ) -> tuple[Tensor, list[RoutingOutput]]:
        """Without ``extend``: the forward pass (a prefill too when ``cache`` is given). With
        ``extend``: the new tokens ``x`` continue each row from ``cache`` (a prefill or earlier
        extends; rows may hold different lengths) and the cache moves past them; equal to the
        full forward over cached + new tokens. Routing outputs then cover the new tokens only.
        """
        if extend and (cache is None or seq_idx is not None):
            raise ValueError("extend needs a cache and no seq_idx")
        d_outer = x.shape[-1]
        x = self._widen(x)
        if self.is_innermost:
            out = self.main_network(x, mask, seq_idx, None if cache is None else cache.main,
                                    extend=extend)
            return out[..., :d_outer], []

        hidden = self.encoder(x, mask, seq_idx, None if cache is None else cache.encoder,
                              extend=extend)
        residual = self._residual(hidden)
        if extend:
            routing = self.routing_module.extend(hidden, cache.routing, mask)
        else:
            routing = self.routing_module(
                hidden, mask, seq_idx, state=None if cache is None else cache.routing
            )
        chunked = self.chunk_layer(hidden, routing.boundary_mask, seq_idx)
        if extend and chunked.hidden.shape[1] == 0:
            # No row has a new boundary: one masked chunk keeps every inner cache as it is.
            none = torch.zeros_like(routing.boundary_mask[:, :1])
            chunked = Chunked(hidden[:, :1], none, None, none.long())
        inner, inner_routing = self.main_network(
            chunked.hidden, chunked.mask, chunked.seq_idx, None if cache is None else cache.main,
            extend=extend,
        )
        if extend:
            smoothed = self.dechunk_layer.extend(inner, routing, chunked, cache.dechunk)
        else:
            smoothed = self.dechunk_layer(
                inner, routing, chunked, state=None if cache is None else cache.dechunk
            )
        # Confidence c_t scales the dechunked path through a straight-through estimator: the
        # forward value is unchanged, the gradient reaches the routing projections.
        confidence = straight_through(routing.selected_prob)[..., None].to(residual.dtype)
        combined = smoothed.to(residual.dtype) * confidence + residual
        out = self.decoder(
            combined.to(hidden.dtype), mask, seq_idx, None if cache is None else cache.decoder,
            extend=extend,
        )
        return out[..., :d_outer], [routing, *inner_routing]

    # ------------------------------------------------------------------ decoding
    def allocate_cache(
        self,
        batch_size: int,
        max_seqlen: int,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> HNetCache:
        if self.is_innermost:
            main = self.main_network.allocate_cache(batch_size, max_seqlen, device, dtype)
            return HNetCache(main=main)
        return HNetCache(
            main=self.main_network.allocate_cache(batch_size, max_seqlen, device, dtype),
            encoder=self.encoder.allocate_cache(batch_size, max_seqlen, device, dtype),
            decoder=self.decoder.allocate_cache(batch_size, max_seqlen, device, dtype),
            routing=self.routing_module.allocate_state(batch_size, device, dtype),
            dechunk=self.dechunk_layer.allocate_state(batch_size, device, dtype),
        )

    def step(self, x: Tensor, cache: HNetCache, active: Tensor | None = None) -> Tensor:
        """One token per row ``(B, 1, D_outer)``; rows not ``active`` keep their state.

        Unlike the official decoder (batch 1 only), each row routes independently: the inner
        network is stepped for the whole batch but only rows whose token is a boundary commit
        their inner state, so rows may place boundaries differently.
        """
        d_outer = x.shape[-1]
        x = self._widen(x)
        if active is None:
            active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        if self.is_innermost:
            return self.main_network.step(x, cache.main, active)[..., :d_outer]

        hidden = self.encoder.step(x, cache.encoder, active)
        residual = self._residual(hidden)
        p, boundary = self.routing_module.step(hidden, cache.routing, active)
        inner = self.main_network.step(hidden, cache.main, active & boundary)
        smoothed = self.dechunk_layer.step(inner, p, boundary, cache.dechunk, active)
        combined = smoothed.to(residual.dtype) + residual  # straight-through factor is 1 here
        out = self.decoder.step(combined.to(hidden.dtype), cache.decoder, active)
        return out[..., :d_outer]

    # ------------------------------------------------------------------ bookkeeping
    def stage_parameters(self, prefix: str = "") -> list[list[tuple[str, nn.Parameter]]]:
        """Parameters grouped by the stage whose resolution they act at (outer -> inner)."""
        own: list[tuple[str, nn.Parameter]] = []
        inner: list[list[tuple[str, nn.Parameter]]] = []
        for name, child in self.named_children():
            if isinstance(child, HNet):
                inner = child.stage_parameters(f"{prefix}{name}.")
            else:
                own.extend((f"{prefix}{name}.{n}", p) for n, p in child.named_parameters())
        if self.pad_dimension is not None:
            own.append((f"{prefix}pad_dimension", self.pad_dimension))
        return [own, *inner]

    def residual_heights(self, outer_height: int = 0) -> dict[int, int]:
        """n_res per stage for the out-projection init: residual adds from the outside in."""
        if self.is_innermost:
            return {self.stage_idx: outer_height + self.main_network.height}
        height = outer_height + self.encoder.height + self.decoder.height
        return {self.stage_idx: height, **self.main_network.residual_heights(height)}

    def isotropic_stacks(self) -> list[tuple[int, Isotropic]]:
        """(stage, stack) for every encoder/decoder/innermost main network."""
        if self.is_innermost:
            return [(self.stage_idx, self.main_network)]
        return [
            (self.stage_idx, self.encoder),
            (self.stage_idx, self.decoder),
            *self.main_network.isotropic_stacks(),
        ]
