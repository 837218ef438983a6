"""EMA scan (dechunk smoothing) vs the sequential reference, stability, kernel-path plumbing."""

from __future__ import annotations

import pytest
import torch

from hnet_dna.model.ops import ema as ema_mod
from hnet_dna.model.ops.ema import ema_chunked, ema_naive, ema_scan
from hnet_dna.model.ops.ssd import ssd_naive

F64 = torch.float64
P_MIN = 1e-4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make(seed, b, m, d, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, m, d, generator=gen, dtype=dtype)
    p = torch.rand(b, m, generator=gen, dtype=dtype).clamp(P_MIN, 1 - P_MIN)
    return x, p


def test_naive_by_hand():
    x = torch.tensor([[[2.0], [4.0], [-1.0]]], dtype=F64)
    p = torch.tensor([[0.5, 0.25, 1.0]], dtype=F64)
    z = ema_naive(x, p, initial_state=torch.tensor([[8.0]], dtype=F64))
    # 0.5*2 + 0.5*8 = 5; 0.25*4 + 0.75*5 = 4.75; p = 1 keeps only x.
    assert z.flatten().tolist() == [5.0, 4.75, -1.0]


@pytest.mark.parametrize("m,chunk", [(1, 4), (9, 4), (32, 8), (77, 16), (40, 256), (13, 1)])
@pytest.mark.parametrize("with_init", [False, True])
@pytest.mark.parametrize("with_seq_idx", [False, True])
def test_chunked_matches_naive(m, chunk, with_init, with_seq_idx):
    b, d = 3, 5
    x, p = make(m * 7 + chunk, b, m, d)
    if m > 4:
        p[1, 3] = 1.0  # an exact reset inside a row must also be exact
    init = torch.randn(b, d, dtype=F64) if with_init else None
    seq_idx = None
    if with_seq_idx:
        seq_idx = torch.zeros(b, m, dtype=torch.int32)
        seq_idx[0, m // 3 :] = 1
        seq_idx[2, m // 2 :] = 4
        seq_idx[2, (3 * m) // 4 :] = 5
    z_ref = ema_naive(x, p, seq_idx, init)
    z = ema_scan(x, p, seq_idx, init, chunk_size=chunk)
    assert z.shape == (b, m, d) and z.dtype == F64
    torch.testing.assert_close(z, z_ref, atol=1e-12, rtol=1e-12)


def test_reset_drops_previous_state():
    x, p = make(1, 1, 20, 4)
    seq_idx = torch.tensor([[0] * 12 + [1] * 8])
    init = torch.randn(1, 4, dtype=F64)
    z = ema_scan(x, p, seq_idx, init, chunk_size=8)
    z_alone = ema_scan(x[:, 12:], p[:, 12:], chunk_size=8)
    torch.testing.assert_close(z[:, 12:], z_alone, atol=1e-14, rtol=0)
    # Without the reset the tail depends on the first sequence.
    z_joined = ema_scan(x, p, None, init, chunk_size=8)
    assert not torch.allclose(z_joined[:, 12:], z_alone)


def test_equals_ssd_with_official_parameterisation():
    # EMA == SSD with A = -1, dt = -log(1 - P), B = P, C = 1, x / dt (what the kernel path runs).
    b, m, d = 2, 25, 6
    x, p = make(2, b, m, d)
    dt = -torch.log1p(-p)
    y, _ = ssd_naive(
        (x / dt[..., None]).reshape(b, m, 3, 2),
        dt[..., None].expand(b, m, 3),
        -torch.ones(3, dtype=F64),
        p.reshape(b, m, 1, 1),
        torch.ones(b, m, 1, 1, dtype=F64),
    )
    torch.testing.assert_close(ema_scan(x, p, chunk_size=8), y.reshape(b, m, d))


def test_long_sequence_float32_is_stable():
    # 4096 steps in float32 with P at both clamp bounds: no overflow, accurate vs float64.
    b, m, d = 2, 4096, 8
    x, p = make(3, b, m, d, dtype=torch.float32)
    p[0, ::3] = P_MIN
    p[1, 1::5] = 1 - P_MIN
    p[0, 1000:1600] = P_MIN  # a long stretch of near-total memory
    p.requires_grad_(True)
    z = ema_scan(x, p, chunk_size=256)
    assert z.dtype == torch.float32
    z_ref = ema_naive(x.double(), p.detach().double())
    torch.testing.assert_close(z.double(), z_ref, atol=2e-5, rtol=1e-4)
    z.square().sum().backward()
    assert torch.isfinite(p.grad).all()


def test_gradients_match_naive():
    x, p = make(4, 2, 19, 3)
    seq_idx = torch.tensor([[0] * 10 + [1] * 9, [0] * 19])
    init = torch.randn(2, 3, dtype=F64)

    def grads(fn):
        leaves = [t.clone().requires_grad_(True) for t in (x, p, init)]
        fn(*leaves).sin().sum().backward()
        return [t.grad for t in leaves]

    ref = grads(lambda a, q, s: ema_naive(a, q, seq_idx, s))
    got = grads(lambda a, q, s: ema_scan(a, q, seq_idx, s, chunk_size=4))
    for g_ref, g_got in zip(ref, got, strict=True):
        torch.testing.assert_close(g_got, g_ref, atol=1e-11, rtol=1e-11)


def test_half_inputs_return_input_dtype():
    x, p = make(5, 1, 30, 4, dtype=torch.float32)
    z = ema_chunked(x.to(torch.bfloat16), p, chunk_size=8)
    assert z.dtype == torch.bfloat16
    z_ref = ema_naive(x.to(torch.bfloat16).double(), p.double())
    torch.testing.assert_close(z.double(), z_ref, atol=2e-2, rtol=1e-2)


def test_kernel_dispatch_needs_width_multiple_of_32(monkeypatch):
    # Which path runs. What the kernel is handed (fp32 and official bf16 inputs) and its numbers
    # are checked against the real mamba_ssm kernel in tests/kernels (`make test-kernels`).
    calls = []

    def recorder(x, *args, **kwargs):
        calls.append(x.shape)
        return torch.zeros_like(x)

    monkeypatch.setattr(ema_mod, "kernels_available", lambda t: True)
    monkeypatch.setattr(ema_mod, "load_chunk_scan_kernel", lambda: recorder)
    x, p = make(6, 2, 40, 64, dtype=torch.float32)
    ema_scan(x, p, chunk_size=16)
    assert calls == [(2, 40, 2, 32)]  # headdim 32
    ema_scan(x[..., :40], p, chunk_size=16)  # width not a multiple of 32: torch path
    assert len(calls) == 1
    with pytest.raises(ValueError, match="kernel_inputs must be one of"):
        ema_scan(x, p, kernel_inputs="bf16")
