"""The benchmark model zoo, FLOP matching of isotropic baselines, routing calibration, inputs.

H-Nets follow the paper's DNA recipe scaled down for a CPU (Mamba-2 encoder with one local
attention layer at base resolution, a Transformer or Mamba-2 main network on the chunks, Mamba-2
decoder). Isotropic baselines are plain :class:`HNetForCausalLM` with a one-stage layout, sized to
the H-Net's counted training FLOPs per base (``hnet_dna.baselines.flops``) at each context.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import hnet_dna
from hnet_dna.baselines.flops import config_flops, count_flops, relative_gap
from hnet_dna.genomics.alphabet import encode
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.lm import HNetForCausalLM

TARGET_RATIO = 3.0  # compression N per stage that the ratio loss drives training to
LOCAL_WINDOW = 1023  # base-resolution attention window (1024 keys incl. self), as in the paper
SSM = {"d_state": 32, "headdim": 32, "chunk_size": 128}  # the repo's CPU presets
HEAD_DIM = 32
MATCH_TOLERANCE = 0.03  # FLOP gaps up to this count as matched
YEAST = (Path(hnet_dna.__file__).parent / "genomics" / "data"
         / "ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz")


@dataclass(frozen=True)
class Widths:
    """Stage widths of the zoo: ``outer`` at base resolution, ``inner`` on chunks."""

    outer: int = 128
    inner: int = 192

    @property
    def mlp(self) -> int:
        return 2 * self.inner  # SwiGLU width of the inner Transformer (rounded up to 128)


def _attn(widths: list[int], windows: list[int]) -> dict[str, list[int]]:
    return {"num_heads": [w // HEAD_DIM for w in widths],
            "rotary_emb_dim": [16] * len(widths), "window_size": windows}


def hnet_config(name: str, w: Widths = Widths()) -> HNetConfig:
    """``hnet_1stage`` (Transformer main network), ``hnet_1stage_mamba`` (Mamba-2 main network)
    or ``hnet_2stage``."""
    if name in ("hnet_1stage", "hnet_1stage_mamba"):
        main = ["T4"] if name == "hnet_1stage" else ["M4"]
        layout: list = ["m2t1", main, "m2"]
        widths, windows = [w.outer, w.inner], [LOCAL_WINDOW, -1]
        d_int = [0, w.mlp]
    elif name == "hnet_2stage":
        layout = ["m2t1", ["m2", ["T3"], "m2"], "m2"]
        widths, windows = [w.outer, w.outer, w.inner], [LOCAL_WINDOW, -1, -1]
        d_int = [0, 0, w.mlp]
    else:
        raise ValueError(f"unknown H-Net {name!r}")
    return HNetConfig(arch_layout=layout, d_model=widths, d_intermediate=d_int, vocab_size=16,
                      ssm_cfg=dict(SSM), attn_cfg=_attn(widths, windows))


def isotropic_config(kind: str, d_model: int, layers: int, d_intermediate: int = 0) -> HNetConfig:
    """``transformer`` (global attention), ``transformer_swa`` (window ``LOCAL_WINDOW``) or
    ``mamba2`` (Mamba-2 mixers without MLP, the Mamba-2 paper's block)."""
    if kind == "mamba2":
        layout, d_int = [f"m{layers}"], [0]
        attn = _attn([d_model], [-1])
    elif kind in ("transformer", "transformer_swa"):
        layout, d_int = [f"T{layers}"], [d_intermediate]
        attn = _attn([d_model], [LOCAL_WINDOW if kind == "transformer_swa" else -1])
    else:
        raise ValueError(f"unknown isotropic kind {kind!r}")
    return HNetConfig(arch_layout=layout, d_model=[d_model], d_intermediate=d_int, vocab_size=16,
                      ssm_cfg=dict(SSM), attn_cfg=attn)


def train_flops_per_base(config: HNetConfig, context: int,
                         compression: list[float] | None = None) -> float:
    """Counted training FLOPs per base (3x forward) at ``context`` bases."""
    ratios = compression if compression is not None else [TARGET_RATIO] * config.num_stages
    return config_flops(config, context, ratios).train_per_base


@lru_cache(maxsize=256)
def _per_layer(kind: str, d_model: int, d_int: int, context: int) -> tuple[float, float]:
    """(FLOPs of the layer-independent part, FLOPs per layer) of an isotropic model."""
    one = train_flops_per_base(isotropic_config(kind, d_model, 1, d_int), context)
    two = train_flops_per_base(isotropic_config(kind, d_model, 2, d_int), context)
    return one - (two - one), two - one


def match_isotropic(kind: str, target: float, context: int, widths: list[int]) -> dict[str, Any]:
    """The isotropic ``kind`` whose training FLOPs per base at ``context`` are closest to
    ``target``: search over width (multiples of 32 from 64 up to the H-Net's widest stage),
    depth and, for Transformers, the SwiGLU width (2x, 3x, 4x d_model). At long contexts a
    global Transformer's attention can make even one layer cost more than the H-Net; the
    reported ``gap`` says how close the match is."""
    candidates = []
    for d in range(max(widths), 63, -HEAD_DIM):
        mlps = [0] if kind == "mamba2" else [m * d for m in (2, 3, 4)]
        for d_int in mlps:
            fixed, per = _per_layer(kind, d, d_int, context)
            layers = min(48, max(1, round((target - fixed) / per)))
            flops = fixed + per * layers
            candidates.append({"kind": kind, "d_model": d, "layers": layers,
                               "d_intermediate": d_int, "train_flops_per_base": flops,
                               "gap": relative_gap(flops, target)})
    # Within MATCH_TOLERANCE of the best gap, the widest (then shallowest) wins: a narrow deep
    # stack can match FLOPs just as well but is not the baseline anyone would train.
    best_gap = min(c["gap"] for c in candidates)
    close = [c for c in candidates if c["gap"] <= max(best_gap, MATCH_TOLERANCE)]
    return max(close, key=lambda c: (c["d_model"], -c["layers"], -c["gap"]))


# ----------------------------------------------------------------------------- inputs
@lru_cache(maxsize=1)
def _yeast_ids() -> np.ndarray:
    """Base ids of the first record of the bundled yeast chromosome I (~230 kb)."""
    seq = []
    with gzip.open(YEAST, "rt") as f:
        for line in f:
            if line.startswith(">"):
                if seq:
                    break
                continue
            seq.append(line.strip())
    ids, _ = encode("".join(seq))
    return ids.astype(np.int64)


def dna_batch(batch: int, length: int, seed: int = 0) -> Tensor:
    """(batch, length) base ids: random windows of real yeast DNA (windows may overlap)."""
    ids = _yeast_ids()
    rng = np.random.default_rng(seed)
    if length > len(ids):
        reps = math.ceil(length / len(ids)) + 1
        ids = np.tile(ids, reps)
    starts = rng.integers(0, len(ids) - length + 1, size=batch)
    return torch.from_numpy(np.stack([ids[s:s + length] for s in starts]))


# ----------------------------------------------------------------------------- routing
def _routing_stages(model: HNetForCausalLM) -> list:
    stages, hnet = [], model.backbone
    while not hnet.is_innermost:
        stages.append(hnet.routing_module)
        hnet = hnet.main_network
    return stages


@torch.no_grad()
def calibrate_routing(model: HNetForCausalLM, ids: Tensor, target: float = TARGET_RATIO,
                      iters: int = 30) -> list[float]:
    """Set each stage's routing so that ~1/``target`` of its tokens are boundaries on ``ids``.

    A freshly initialised H-Net places boundaries wherever consecutive encoder states happen to
    point apart, which can be far from the N = 3 a trained model reaches under the ratio loss;
    compute per base depends on it. Each routing module gets ``W_q = I + lambda v v^T`` (``v`` the
    mean encoder direction, ``W_k = I``): lambda > 0 aligns consecutive tokens (fewer
    boundaries), lambda -> -1 removes the shared direction (more); lambda is bisected. Stages are
    calibrated outer to inner. Returns the realised compression per stage on ``ids``.
    """
    for router in _routing_stages(model):
        captured: list[Tensor] = []
        hook = router.register_forward_pre_hook(
            lambda m, args, captured=captured: captured.append(args[0]))
        model(ids)
        hook.remove()
        hidden = captured[0]
        d = hidden.shape[-1]
        v = torch.nn.functional.normalize(hidden.reshape(-1, d).float().mean(0), dim=0)
        eye = torch.eye(d, device=hidden.device)
        router.k_proj_layer.weight.copy_(eye)

        def fraction(lam: float, router=router, hidden=hidden, v=v, eye=eye) -> float:
            router.q_proj_layer.weight.copy_(eye + lam * torch.outer(v, v))
            p = router._prob(hidden[:, :-1], hidden[:, 1:])
            return float((p > 0.5).float().mean())

        lo, hi = -20.0, 12.0  # lambda = -1 + exp(u)
        want = 1.0 / target
        for _ in range(iters):
            mid = (lo + hi) / 2
            if fraction(-1 + math.exp(mid)) > want:
                lo = mid
            else:
                hi = mid
        fraction(-1 + math.exp((lo + hi) / 2))
    return realised_compression(model, ids)


@torch.no_grad()
def realised_compression(model: HNetForCausalLM, ids: Tensor) -> list[float]:
    """Tokens per chunk at each stage on ``ids`` (stage-s tokens / stage-(s+1) tokens)."""
    out = model(ids)
    return [r.tokens_per_chunk() for r in out.routing]


def flops_report(model: HNetForCausalLM, context: int, compression: list[float]) -> dict:
    report = count_flops(model, context, compression)
    return {"train_flops_per_base": report.train_per_base,
            "forward_flops_per_base": report.forward_per_base,
            "params": report.params, "non_embedding_params": report.non_embedding_params}
