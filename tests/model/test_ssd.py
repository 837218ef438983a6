"""Chunked SSD scan vs the sequential recurrence (float64), packed resets, dispatch plumbing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hnet_dna.model.ops import ssd as ssd_mod
from hnet_dna.model.ops.ssd import segment_ids, ssd_chunked, ssd_naive, ssd_scan

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make_inputs(seed, b, seqlen, h, p, g, n, dtype=F64, dt_scale=0.5):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    x = rnd(b, seqlen, h, p)
    dt = torch.rand(b, seqlen, h, generator=gen, dtype=dtype) * dt_scale + 1e-3
    A = -(torch.rand(h, generator=gen, dtype=dtype) * 4 + 0.1)
    B, C = rnd(b, seqlen, g, n), rnd(b, seqlen, g, n)
    return x, dt, A, B, C


def random_seq_idx(seed, b, seqlen, nseq):
    """Non-decreasing ids with up to ``nseq`` sequences per row (random cut points)."""
    gen = torch.Generator().manual_seed(seed + 1)
    out = torch.zeros(b, seqlen, dtype=torch.int32)
    for row in range(b):
        if seqlen > 1 and nseq > 1:
            cuts = torch.randperm(seqlen - 1, generator=gen)[: nseq - 1] + 1
            for c in cuts.tolist():
                out[row, c:] += 1
    return out


@pytest.mark.parametrize(
    "seqlen,chunk", [(1, 4), (7, 4), (16, 4), (37, 8), (64, 64), (50, 16), (20, 1)]
)
@pytest.mark.parametrize("ngroups", [1, 2])
@pytest.mark.parametrize("with_init", [False, True])
@pytest.mark.parametrize("with_seq_idx", [False, True])
def test_chunked_matches_naive_grid(seqlen, chunk, ngroups, with_init, with_seq_idx):
    b, h, p, n = 2, 4, 3, 5
    x, dt, A, B, C = make_inputs(seqlen * 31 + chunk, b, seqlen, h, p, ngroups, n)
    D = torch.randn(h, dtype=F64)
    init = torch.randn(b, h, p, n, dtype=F64) if with_init else None
    seq_idx = random_seq_idx(seqlen, b, seqlen, 4) if with_seq_idx else None
    y_ref, s_ref = ssd_naive(x, dt, A, B, C, D, seq_idx, init)
    y, s = ssd_chunked(x, dt, A, B, C, chunk, D, seq_idx, init, return_final_state=True)
    assert y.shape == (b, seqlen, h, p) and s.shape == (b, h, p, n)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(s, s_ref, atol=1e-10, rtol=1e-10)


@settings(max_examples=30, deadline=None)
@given(
    seqlen=st.integers(1, 70),
    chunk=st.sampled_from([1, 3, 8, 16, 32]),
    heads_groups=st.sampled_from([(1, 1), (2, 1), (4, 2), (6, 3), (4, 4)]),
    p=st.integers(1, 4),
    n=st.integers(1, 6),
    nseq=st.integers(1, 5),
    with_init=st.booleans(),
    d_per_channel=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_chunked_matches_naive_random(
    seqlen, chunk, heads_groups, p, n, nseq, with_init, d_per_channel, seed
):
    h, g = heads_groups
    b = 2
    x, dt, A, B, C = make_inputs(seed, b, seqlen, h, p, g, n)
    D = torch.randn(h, p, dtype=F64) if d_per_channel else torch.randn(h, dtype=F64)
    init = torch.randn(b, h, p, n, dtype=F64) if with_init else None
    seq_idx = random_seq_idx(seed, b, seqlen, nseq)
    y_ref, s_ref = ssd_naive(x, dt, A, B, C, D, seq_idx, init)
    y, s = ssd_chunked(x, dt, A, B, C, chunk, D, seq_idx, init, return_final_state=True)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(s, s_ref, atol=1e-10, rtol=1e-10)


def test_naive_recurrence_by_hand():
    # One head, p = n = 1: h_t = exp(dt A) h + dt B x, y = C h + D x.
    x = torch.tensor([1.0, 2.0, -1.0], dtype=F64).reshape(1, 3, 1, 1)
    dt = torch.tensor([0.5, 1.0, 0.25], dtype=F64).reshape(1, 3, 1)
    A = torch.tensor([-2.0], dtype=F64)
    B = torch.tensor([1.0, 3.0, 2.0], dtype=F64).reshape(1, 3, 1, 1)
    C = torch.tensor([2.0, 1.0, -1.0], dtype=F64).reshape(1, 3, 1, 1)
    D = torch.tensor([0.5], dtype=F64)
    hs, h_ = [], 0.0
    for t in range(3):
        h_ = torch.exp(dt[0, t, 0] * A[0]) * h_ + dt[0, t, 0] * B[0, t, 0, 0] * x[0, t, 0, 0]
        hs.append(C[0, t, 0, 0] * h_ + D[0] * x[0, t, 0, 0])
    y, s = ssd_naive(x, dt, A, B, C, D)
    torch.testing.assert_close(y.flatten(), torch.stack(hs))
    torch.testing.assert_close(s.flatten(), h_.reshape(1))


def test_reset_isolates_sequences():
    # Everything before a seq_idx change (inputs and the initial state) is invisible after it.
    b, seqlen, h, p, g, n = 1, 24, 2, 3, 1, 4
    x, dt, A, B, C = make_inputs(0, b, seqlen, h, p, g, n)
    seq_idx = torch.tensor([[0] * 8 + [1] * 16], dtype=torch.int32)  # change at a chunk start
    init = torch.randn(b, h, p, n, dtype=F64)
    y1 = ssd_chunked(x, dt, A, B, C, 8, seq_idx=seq_idx, initial_state=init)
    x2, B2 = x.clone(), B.clone()
    x2[:, :8] += 1.0
    B2[:, :8] *= -3.0
    y2 = ssd_chunked(x2, dt, A, B2, C, 8, seq_idx=seq_idx, initial_state=2 * init)
    assert torch.equal(y1[:, 8:], y2[:, 8:])
    assert not torch.allclose(y1[:, :8], y2[:, :8])
    # The second sequence alone, from a zero state, gives the same outputs.
    y_alone = ssd_chunked(x[:, 8:], dt[:, 8:], A, B[:, 8:], C[:, 8:], 8)
    torch.testing.assert_close(y1[:, 8:], y_alone, atol=1e-12, rtol=0)


def test_segment_ids_count_changes():
    seq_idx = torch.tensor([[0, 0, 1, 1, 0, 0, 5], [3, 3, 3, 3, 3, 3, 3]])
    expected = torch.tensor([[0, 0, 1, 1, 2, 2, 3], [0, 0, 0, 0, 0, 0, 0]])
    assert torch.equal(segment_ids(seq_idx), expected)


def test_non_monotone_seq_idx_resets_at_each_change():
    # A return to an earlier id is still a change: state must not leak across it.
    b, seqlen, h, p, g, n = 1, 12, 2, 2, 1, 3
    x, dt, A, B, C = make_inputs(3, b, seqlen, h, p, g, n)
    seq_idx = torch.tensor([[0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1]])
    y_ref, s_ref = ssd_naive(x, dt, A, B, C, seq_idx=seq_idx)
    y, s = ssd_chunked(x, dt, A, B, C, 16, seq_idx=seq_idx, return_final_state=True)
    torch.testing.assert_close(y, y_ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(s, s_ref, atol=1e-12, rtol=0)


def test_strong_decay_is_finite_and_exact():
    # dt * A down to -80 per step: decays underflow to 0 inside and across chunks, no NaN.
    b, seqlen, h, p, g, n = 2, 300, 2, 2, 1, 3
    x, dt, A, B, C = make_inputs(5, b, seqlen, h, p, g, n, dt_scale=5.0)
    A = torch.tensor([-16.0, -0.01], dtype=F64)
    y_ref, s_ref = ssd_naive(x, dt, A, B, C)
    y, s = ssd_chunked(x, dt, A, B, C, 128, return_final_state=True)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(s, s_ref, atol=1e-10, rtol=1e-10)


def test_float32_and_bf16_inputs_accumulate_in_float32():
    b, seqlen, h, p, g, n = 2, 200, 4, 8, 1, 16
    x, dt, A, B, C = make_inputs(7, b, seqlen, h, p, g, n)
    y_ref, s_ref = ssd_naive(x, dt, A, B, C)
    y, s = ssd_chunked(
        x.float(), dt.float(), A.float(), B.float(), C.float(), 64, return_final_state=True
    )
    assert y.dtype == torch.float32 and s.dtype == torch.float32
    torch.testing.assert_close(y.double(), y_ref, atol=2e-4, rtol=2e-4)
    # bf16 inputs: output in bf16, state in float32 and as accurate as the rounded inputs allow.
    args = [t.to(torch.bfloat16) for t in (x, dt, A, B, C)]
    yb, sb = ssd_chunked(*args, 64, return_final_state=True)
    assert yb.dtype == torch.bfloat16 and sb.dtype == torch.float32
    y_r, s_r = ssd_naive(*[t.double() for t in args])
    torch.testing.assert_close(sb.double(), s_r, atol=1e-4, rtol=1e-4)


def test_gradients_match_naive():
    b, seqlen, h, p, g, n = 1, 10, 2, 2, 1, 3
    inputs = make_inputs(11, b, seqlen, h, p, g, n)
    seq_idx = torch.tensor([[0] * 6 + [1] * 4])
    init = torch.randn(b, h, p, n, dtype=F64)

    def grads(fn):
        leaves = [t.clone().requires_grad_(True) for t in (*inputs, init)]
        x, dt, A, B, C, s0 = leaves
        y, s = fn(x, dt, A, B, C, s0)
        (y.sin().sum() + s.cos().sum()).backward()
        return [t.grad for t in leaves]

    ref = grads(lambda x, dt, A, B, C, s0: ssd_naive(x, dt, A, B, C, None, seq_idx, s0))
    got = grads(
        lambda x, dt, A, B, C, s0: ssd_chunked(
            x, dt, A, B, C, 4, None, seq_idx, s0, return_final_state=True
        )
    )
    for g_ref, g_got in zip(ref, got, strict=True):
        torch.testing.assert_close(g_got, g_ref, atol=1e-10, rtol=1e-10)


def test_errors():
    x, dt, A, B, C = make_inputs(0, 1, 5, 3, 2, 2, 4)
    with pytest.raises(ValueError, match=r"ngroups \(2\) must divide nheads \(3\)"):
        ssd_chunked(x, dt, A, B, C, 4)
    x, dt, A, B, C = make_inputs(0, 1, 5, 2, 2, 1, 4)
    with pytest.raises(ValueError, match="chunk_size must be positive, got 0"):
        ssd_chunked(x, dt, A, B, C, 0)


def test_scan_uses_torch_path_on_cpu():
    x, dt, A, B, C = make_inputs(2, 2, 30, 2, 2, 1, 3)
    seq_idx = random_seq_idx(2, 2, 30, 3)
    y_ref, s_ref = ssd_naive(x, dt, A, B, C, None, seq_idx)
    y, s = ssd_scan(x, dt, A, B, C, 8, seq_idx=seq_idx, return_final_state=True)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(s, s_ref, atol=1e-10, rtol=0)


def test_kernel_dispatch_and_disable_flag(monkeypatch):
    # Which path runs, and what it is handed. The kernel's numbers are checked against the real
    # mamba_ssm kernel in tests/kernels (`make test-kernels`), not against a stand-in here.
    calls = []

    def recorder(*args, **kwargs):
        calls.append(kwargs)
        return "kernel"

    monkeypatch.setattr(ssd_mod, "load_chunk_scan_kernel", lambda: recorder)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    x, dt, A, B, C = make_inputs(4, 1, 9, 2, 2, 1, 3)
    seq_idx = torch.tensor([[0] * 4 + [1] * 5])
    assert ssd_scan(x, dt, A, B, C, 4, seq_idx=seq_idx, return_final_state=True) == "kernel"
    assert len(calls) == 1 and calls[0]["seq_idx"].dtype == torch.int32
    assert calls[0]["return_final_states"] is True

    monkeypatch.setenv("HNET_DNA_DISABLE_KERNELS", "1")
    assert torch.is_tensor(ssd_scan(x, dt, A, B, C, 4))
    monkeypatch.delenv("HNET_DNA_DISABLE_KERNELS")
    monkeypatch.setattr(ssd_mod, "DISABLE_KERNELS", True)
    assert torch.is_tensor(ssd_scan(x, dt, A, B, C, 4))
    assert len(calls) == 1


def test_cpu_tensors_reach_kernels_only_in_the_interpreter_tier(monkeypatch):
    t = torch.zeros(1)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("HNET_DNA_KERNELS_ON_CPU", "1")
    assert not ssd_mod.kernel_device_ok(t)  # the switch alone does nothing
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert ssd_mod.kernel_device_ok(t)
    monkeypatch.setenv("HNET_DNA_KERNELS_ON_CPU", "0")
    assert not ssd_mod.kernel_device_ok(t)
