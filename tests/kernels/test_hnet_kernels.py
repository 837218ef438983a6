"""Whole model with every Triton fast path on (interpreter, float32): fused Mamba-2 layers and
the EMA dechunk kernel, against the same model on the torch paths and in float64."""

from __future__ import annotations

import copy

import torch
from _compare import compare

from hnet_dna.model import mamba2 as mamba2_mod
from hnet_dna.model.config import AttnConfig, HNetConfig, SSMConfig
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.model.ops import ema as ema_mod

CONFIG = HNetConfig(
    arch_layout=["m1", ["T1m1"], "m1"],
    d_model=[32, 64],
    d_intermediate=[0, 128],
    vocab_size=12,
    ssm_cfg=SSMConfig(d_state=8, headdim=16, chunk_size=8),
    attn_cfg=AttnConfig(num_heads=[2, 4], rotary_emb_dim=[8, 8], window_size=[-1, 5]),
)


def count_calls(monkeypatch, module, loader):
    calls = []
    kernel = getattr(module, loader)()
    monkeypatch.setattr(module, loader, lambda: lambda *a, **k: calls.append(1) or kernel(*a, **k))
    return calls


def test_hnet_forward_with_kernels_matches_torch(kernels, monkeypatch):
    # Packed rows only (the interpreter is slow): seq_idx reaches every kernel; the unpacked
    # calls are covered layer by layer in the other files.
    packed = True
    torch.manual_seed(0)
    model = HNetForCausalLM(CONFIG)
    model.init_weights()
    with torch.no_grad():  # irregular boundaries and a live residual path
        for module in model.modules():
            if hasattr(module, "q_proj_layer"):
                module.q_proj_layer.weight.normal_(std=0.5)
                module.k_proj_layer.weight.normal_(std=0.5)
            if hasattr(module, "residual_proj"):
                module.residual_proj.weight.normal_(std=0.1)
    model.eval()
    ids = torch.randint(0, 12, (2, 24), generator=torch.Generator().manual_seed(1))
    seq_idx = None
    if packed:
        seq_idx = torch.zeros(2, 24, dtype=torch.long)
        seq_idx[0, 9:] = 1
        seq_idx[1, 17:] = 2
    fused = count_calls(monkeypatch, mamba2_mod, "_load_fused_kernel")
    ema = count_calls(monkeypatch, ema_mod, "load_chunk_scan_kernel")
    with torch.no_grad():
        out = model(ids, seq_idx=seq_idx)
        assert len(fused) == 3 and len(ema) == 1  # every Mamba-2 layer and the dechunk
        monkeypatch.setenv("HNET_DNA_DISABLE_KERNELS", "1")
        out_torch = model(ids, seq_idx=seq_idx)
        out_f64 = copy.deepcopy(model).double()(ids, seq_idx=seq_idx)
    assert len(fused) == 3 and len(ema) == 1
    for r, r_ref in zip(out.routing, out_f64.routing, strict=True):
        assert torch.equal(r.boundary_mask, r_ref.boundary_mask)
    tag = f"HNet logits, all kernels (packed={packed})"
    compare(tag + " vs torch path", out.logits, out_torch.logits, atol=1e-5, rtol=1e-4)
    compare(tag + " vs f64", out.logits, out_f64.logits, atol=1e-5, rtol=1e-4)
