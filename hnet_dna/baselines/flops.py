"""Counted forward FLOPs per base (and parameters) for H-Nets and isotropic token models.

Counted per token of each stage, then scaled by that stage's tokens per base:

* every matmul (``nn.Linear``: 2 * in * out per token), including the LM head (embeddings are
  lookups: 0);
* attention's length term: ``QK^T`` and ``AV`` cost 2 * d each per visible key, with the mean
  number of visible keys over a window of the stage's length (causal, window-aware);
* the Mamba-2 depthwise conv (2 * channels * d_conv) and the SSD scan, counted as the chunked
  SSD algorithm that trains the model: within-chunk ``C B^T`` and its product with ``x`` over
  the causal half of the chunk, chunk states ``B^T x``, state-to-output ``C h``, and the
  per-chunk state passing;
* the H-Net routing projections, ``residual_proj`` and the dechunk EMA (3 FLOPs per channel per
  chunk: ``p * x + (1 - p) * z``).

Norms, activations, rotary, gathers and the loss are elementwise and left out. Stage ``s`` runs
on ``1 / (bases_per_token * prod_{i<s} N_i)`` tokens per base, with N the target compression (or
the realised one measured at evaluation). Training costs ~3x the forward (backward = 2x).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from hnet_dna.model.attention import CausalMHA
from hnet_dna.model.config import HNetConfig, per_stage
from hnet_dna.model.hnet import HNet
from hnet_dna.model.isotropic import Isotropic
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.model.mamba2 import Mamba2

TRAIN_MULTIPLIER = 3.0  # forward + backward (2x forward)


@dataclass
class FlopsReport:
    """Forward FLOPs per base by component; ``tokens_per_base`` and ``seq_len`` per stage."""

    breakdown: dict[str, float] = field(default_factory=dict)
    tokens_per_base: list[float] = field(default_factory=list)
    seq_len: list[float] = field(default_factory=list)
    params: int = 0
    non_embedding_params: int = 0

    @property
    def forward_per_base(self) -> float:
        return sum(self.breakdown.values())

    @property
    def train_per_base(self) -> float:
        return TRAIN_MULTIPLIER * self.forward_per_base

    def add(self, key: str, flops_per_base: float) -> None:
        self.breakdown[key] = self.breakdown.get(key, 0.0) + flops_per_base


def mean_visible_keys(length: float, window_size: int) -> float:
    """Mean keys visible to a query over a causal window of ``length`` tokens (real-valued, so
    inner stages with a fractional mean length work); ``window_size`` -1 = global, else
    ``window_size + 1`` keys at most (the convention of ``CausalMHA``)."""
    if length <= 0:
        return 0.0
    if window_size < 0 or length <= window_size + 1:
        return (length + 1) / 2
    keys = window_size + 1
    return (keys * (keys + 1) / 2 + (length - keys) * keys) / length


def attention_flops(mha: CausalMHA, length: float) -> dict[str, float]:
    """Per-token forward FLOPs of one attention mixer at sequence length ``length``."""
    d = mha.d_model
    return {
        "attn_proj": _linear(mha.Wqkv) + _linear(mha.out_proj),
        "attn_length": 4 * d * mean_visible_keys(length, mha.window_size),
    }


def mamba2_flops(mixer: Mamba2, length: float) -> dict[str, float]:
    """Per-token forward FLOPs of one Mamba-2 mixer (chunked SSD at sequence length ``length``)."""
    chunk = max(1.0, min(float(mixer.chunk_size), length))
    causal = (chunk + 1) / 2  # mean positions a token attends to inside its chunk
    hp = mixer.nheads * mixer.headdim
    state = hp * mixer.d_state
    ssd = (
        2 * causal * mixer.ngroups * mixer.d_state  # C B^T, one row per token
        + 2 * causal * hp  # (C B^T * decay) x
        + 2 * state  # chunk states B^T x
        + 2 * state  # C h from the previous chunk's state
        + 2 * state / chunk  # state passing between chunks, amortised per token
    )
    return {
        "ssm_proj": _linear(mixer.in_proj) + _linear(mixer.out_proj),
        "ssm_conv": 2 * mixer.conv_dim * mixer.d_conv,
        "ssm_scan": ssd,
    }


def _linear(layer: nn.Linear) -> float:
    return 2.0 * layer.in_features * layer.out_features


def isotropic_flops(stack: Isotropic, length: float) -> dict[str, float]:
    """Per-token forward FLOPs of a stack of blocks at sequence length ``length``."""
    out: dict[str, float] = {}
    for block in stack.layers:
        if isinstance(block.mixer, CausalMHA):
            parts = attention_flops(block.mixer, length)
        elif isinstance(block.mixer, Mamba2):
            parts = mamba2_flops(block.mixer, length)
        else:  # pragma: no cover - create_block only builds the two
            raise TypeError(f"no FLOP count for mixer {type(block.mixer).__name__}")
        if block.mlp is not None:
            parts["mlp"] = _linear(block.mlp.fc1) + _linear(block.mlp.fc2)
        for key, value in parts.items():
            out[key] = out.get(key, 0.0) + value
    return out


def count_flops(
    model: HNetForCausalLM,
    context_tokens: float,
    compression: Sequence[float] | None = None,
    bases_per_token: float = 1.0,
) -> FlopsReport:
    """Forward FLOPs per base of ``model`` on sequences of ``context_tokens`` stage-0 tokens.

    ``compression``: N per chunking stage (stage-s tokens per stage-(s+1) token); required for an
    H-Net. ``bases_per_token``: bases per stage-0 token (1 at base level, k for k-mers, the
    measured mean for BPE).
    """
    num_stages = model.config.num_stages
    compression = list(compression or [])
    if len(compression) != num_stages:
        raise ValueError(f"need {num_stages} compression ratio(s) for this model, got "
                         f"{len(compression)}")
    if any(n < 1 for n in compression) or bases_per_token <= 0:
        raise ValueError(f"compression must be >= 1 and bases_per_token > 0, got {compression}, "
                         f"{bases_per_token}")
    report = FlopsReport()
    rate, length = 1.0 / bases_per_token, float(context_tokens)
    for stage in range(num_stages + 1):
        report.tokens_per_base.append(rate)
        report.seq_len.append(length)
        if stage < num_stages:
            rate, length = rate / compression[stage], length / compression[stage]

    def walk(hnet: HNet) -> None:
        s = hnet.stage_idx
        rate, length = report.tokens_per_base[s], report.seq_len[s]
        stacks = [hnet.main_network] if hnet.is_innermost else [hnet.encoder, hnet.decoder]
        for stack in stacks:
            for key, value in isotropic_flops(stack, length).items():
                report.add(key, value * rate)
        if hnet.is_innermost:
            return
        routing = hnet.routing_module
        report.add("routing", (_linear(routing.q_proj_layer) + _linear(routing.k_proj_layer)
                               + _linear(hnet.residual_proj)) * rate)
        report.add("dechunk_ema", 3 * hnet.d_model * report.tokens_per_base[s + 1])
        walk(hnet.main_network)

    walk(model.backbone)
    report.add("lm_head", _linear(model.lm_head) * report.tokens_per_base[0])
    report.params = model.num_parameters()
    embedding = model.embeddings.weight.numel()
    head = 0 if model.config.tie_embeddings else model.lm_head.weight.numel()
    report.non_embedding_params = report.params - embedding - head
    return report


def config_flops(
    config: HNetConfig,
    context_tokens: float,
    compression: Sequence[float] | None = None,
    bases_per_token: float = 1.0,
) -> FlopsReport:
    """:func:`count_flops` for a config, built on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = HNetForCausalLM(config)
    return count_flops(model, context_tokens, compression, bases_per_token)


def relative_gap(a: float, b: float) -> float:
    """``|a - b| / b``: how far ``a`` is from the reference ``b``."""
    return abs(a - b) / b if b else math.inf


def preset_flops(
    model_config: dict, vocab_size: int, context_units: int,
    target_ratio: Sequence[float] = (3.0,), units_per_token: float = 1.0,
) -> FlopsReport:
    """Planning count for a preset's model entry: target compression, assumed units per token."""
    config = HNetConfig.from_dict({**model_config, "vocab_size": vocab_size})
    ratios = per_stage(target_ratio, config.num_stages, "target_ratio")
    return config_flops(config, context_units / units_per_token, ratios, units_per_token)
