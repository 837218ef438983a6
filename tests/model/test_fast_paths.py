"""CPU fast paths added for speed: blocked sliding-window attention and long chunked scans.

Each is checked against the plain path it replaces (explicit (L, L) mask / naive recurrence),
in float64, including gradients, packing and the block edges.
"""

from __future__ import annotations

import pytest
import torch

from hnet_dna.model import attention as attention_mod
from hnet_dna.model.attention import CausalMHA
from hnet_dna.model.ops import ssd as ssd_mod
from hnet_dna.model.ops.conv import causal_depthwise_conv
from hnet_dna.model.ops.ema import ema_naive, ema_scan
from hnet_dna.model.ops.ssd import ssd_chunked, ssd_naive

F64 = torch.float64


def make_mha(window_size: int) -> CausalMHA:
    torch.manual_seed(0)
    return CausalMHA(16, num_heads=2, rotary_emb_dim=4, window_size=window_size, dtype=F64)


@pytest.mark.parametrize("window_size", [0, 1, 3, 5, 8])
@pytest.mark.parametrize("length", [9, 16, 23, 40])
@pytest.mark.parametrize("packed", [False, True])
def test_blocked_window_matches_masked_path(monkeypatch, window_size, length, packed):
    mha = make_mha(window_size)
    x = torch.randn(2, length, 16, dtype=F64, requires_grad=True)
    seq_idx = None
    if packed:
        seq_idx = torch.zeros(2, length, dtype=torch.int32)
        seq_idx[0, length // 3 :] = 1
        seq_idx[1, length // 2 :] = 5
        seq_idx[1, length - 2 :] = 6
    calls = []
    local = CausalMHA._local_sdpa
    monkeypatch.setattr(attention_mod, "LOCAL_MIN_BLOCK", 2)
    monkeypatch.setattr(CausalMHA, "_local_sdpa", lambda *a: calls.append(1) or local(*a))
    got = mha(x, seq_idx=seq_idx)
    block = attention_mod.local_block_size(window_size)
    first = -(-window_size // block) * block
    assert bool(calls) == (length > first + block)
    monkeypatch.setattr(CausalMHA, "_sdpa", CausalMHA._masked_sdpa)
    want = mha(x, seq_idx=seq_idx)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    g_got = torch.autograd.grad(got.square().sum(), [x, mha.Wqkv.weight])
    g_want = torch.autograd.grad(want.square().sum(), [x, mha.Wqkv.weight])
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_window_covering_sequence_is_plain_causal(monkeypatch):
    mha = make_mha(window_size=50)
    x = torch.randn(1, 20, 16, dtype=F64)
    got = mha(x)
    monkeypatch.setattr(CausalMHA, "_sdpa", CausalMHA._masked_sdpa)
    torch.testing.assert_close(got, mha(x), rtol=1e-10, atol=1e-10)


def test_local_block_size_bounds():
    assert attention_mod.local_block_size(1023) == 256
    assert attention_mod.local_block_size(3) == attention_mod.LOCAL_MIN_BLOCK


@pytest.mark.parametrize("block_elements", [1, 64, 1 << 18])
def test_ssd_many_chunks_and_blocks_match_naive(monkeypatch, block_elements):
    # 60 chunks of 3 (state passing over many chunks), processed in blocks of various sizes.
    monkeypatch.setattr(ssd_mod, "_BLOCK_ELEMENTS", block_elements)
    gen = torch.Generator().manual_seed(3)
    b, L, h, p, g, n = 2, 179, 4, 3, 2, 5
    x = torch.randn(b, L, h, p, generator=gen, dtype=F64, requires_grad=True)
    dt = (torch.rand(b, L, h, generator=gen, dtype=F64) * 0.5 + 1e-3).requires_grad_(True)
    A = -(torch.rand(h, generator=gen, dtype=F64) * 4 + 0.1)
    B = torch.randn(b, L, g, n, generator=gen, dtype=F64, requires_grad=True)
    C = torch.randn(b, L, g, n, generator=gen, dtype=F64, requires_grad=True)
    init = torch.randn(b, h, p, n, generator=gen, dtype=F64, requires_grad=True)
    seq_idx = torch.zeros(b, L, dtype=torch.int32)
    seq_idx[0, 50:] = 1
    seq_idx[0, 51:] = 2
    seq_idx[1, 120:] = 3
    args = (x, dt, A, B, C)
    y, s = ssd_chunked(*args, 3, seq_idx=seq_idx, initial_state=init, return_final_state=True)
    y_ref, s_ref = ssd_naive(*args, seq_idx=seq_idx, initial_state=init)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(s, s_ref, atol=1e-10, rtol=1e-10)
    inputs = [x, dt, B, C, init]
    wy, ws = torch.randn_like(y), torch.randn_like(s)
    grads = torch.autograd.grad((y * wy).sum() + (s * ws).sum(), inputs)
    grads_ref = torch.autograd.grad((y_ref * wy).sum() + (s_ref * ws).sum(), inputs)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


def test_ema_exact_resets_over_many_chunks():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 97, 6, generator=gen, dtype=F64)
    p = torch.rand(2, 97, generator=gen, dtype=F64).clamp(1e-4, 1 - 1e-4)
    p[0, [4, 40, 41]] = 1.0  # exact resets become segment starts inside the scan
    torch.testing.assert_close(ema_scan(x, p, chunk_size=4), ema_naive(x, p), atol=1e-12,
                               rtol=1e-12)


@pytest.mark.parametrize("length", [1, 2, 3, 9])
@pytest.mark.parametrize("packed", [False, True])
def test_causal_depthwise_conv_matches_loop_and_gradcheck(length, packed):
    gen = torch.Generator().manual_seed(length)
    x = torch.randn(2, length, 5, generator=gen, dtype=F64, requires_grad=True)
    w = torch.randn(5, 4, generator=gen, dtype=F64, requires_grad=True)
    bias = torch.randn(5, generator=gen, dtype=F64, requires_grad=True)
    seq_idx = None
    if packed:
        seq_idx = torch.zeros(2, length, dtype=torch.int32)
        seq_idx[0, length // 2 :] = 1
        seq_idx[1, length - 1 :] = 3
    want = torch.zeros_like(x) + bias
    for t in range(length):
        for s in range(min(4, t + 1)):  # tap 3 - s sees token t - s if in the same sequence
            same = 1.0 if seq_idx is None else (seq_idx[:, t] == seq_idx[:, t - s]).to(F64)
            want[:, t] = want[:, t] + w[:, 3 - s] * x[:, t - s] * (
                same if seq_idx is None else same[:, None])
    torch.testing.assert_close(causal_depthwise_conv(x, w, bias, seq_idx), want)
    assert torch.autograd.gradcheck(
        lambda a, b, c: causal_depthwise_conv(a, b, c, seq_idx), (x, w, bias))
