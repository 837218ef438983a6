"""Mamba2 mixer: parameters, forward == recurrence, padding, packing, causality, caches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hnet_dna.model.mamba2 import Mamba2, Mamba2Cache

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small(chunk_size=5, ngroups=2, d_conv=4):
    """float64 Mamba2 with 4 heads of 8, 2 groups, non-trivial D/dt_bias/conv bias."""
    m = Mamba2(
        16,
        d_state=6,
        d_conv=d_conv,
        expand=2,
        headdim=8,
        ngroups=ngroups,
        chunk_size=chunk_size,
        dtype=F64,
    )
    with torch.no_grad():
        m.D.uniform_(-1, 1)
        m.norm.weight.uniform_(0.5, 1.5)
        m.conv1d.bias.uniform_(-0.5, 0.5)
    return m


def run_steps(m, x, cache, active=None):
    return torch.cat([m.step(x[:, t : t + 1], cache, active) for t in range(x.shape[1])], 1)


# ------------------------------------------------------------------ parameters and init
def test_parameter_names_and_shapes():
    m = Mamba2(32, d_state=16, headdim=16, ngroups=2)
    d_inner, nheads, conv_dim = 64, 4, 64 + 2 * 2 * 16
    shapes = {n: tuple(p.shape) for n, p in m.named_parameters()}
    assert shapes == {
        "dt_bias": (nheads,),
        "A_log": (nheads,),
        "D": (nheads,),
        "in_proj.weight": (2 * d_inner + 2 * 2 * 16 + nheads, 32),
        "conv1d.weight": (conv_dim, 1, 4),
        "conv1d.bias": (conv_dim,),
        "norm.weight": (d_inner,),
        "out_proj.weight": (32, d_inner),
    }
    assert m.norm.group_size == d_inner // 2 and not m.norm.norm_before_gate
    for name in ("A_log", "D", "dt_bias"):
        assert getattr(m, name)._no_weight_decay is True
    assert not hasattr(m.in_proj.weight, "_no_weight_decay")


def test_parameter_count_d512():
    d = 512
    m = Mamba2(d)  # defaults: d_state 128, d_conv 4, expand 2, headdim 64, ngroups 1
    d_inner, nheads = 2 * d, 2 * d // 64
    conv_dim = d_inner + 2 * 128
    expected = (
        d * (d_inner + conv_dim + nheads)  # in_proj: [z, xBC, dt]
        + conv_dim * 4
        + conv_dim  # depthwise conv weight + bias
        + 3 * nheads  # dt_bias, A_log, D
        + d_inner  # gated norm
        + d_inner * d  # out_proj
    )
    assert expected == 1_719_600  # = 6.56 d^2
    assert sum(p.numel() for p in m.parameters()) == expected


def test_init_ranges():
    m = Mamba2(256, d_state=16)  # 8 heads
    A = torch.exp(m.A_log.detach())
    assert ((A >= 1) & (A <= 16)).all()
    dt = F.softplus(m.dt_bias.detach())
    assert ((dt >= 1e-3 - 1e-9) & (dt <= 1e-1 + 1e-9)).all()
    assert torch.equal(m.D.detach(), torch.ones(8))
    assert torch.equal(m.norm.weight.detach(), torch.ones(512))


def test_bad_shapes_rejected():
    with pytest.raises(ValueError, match="must be divisible by headdim=64"):
        Mamba2(48)
    with pytest.raises(ValueError, match=r"ngroups \(3\) must divide nheads \(4\)"):
        Mamba2(32, headdim=16, ngroups=3)


# ------------------------------------------------------------------ semantics
def test_forward_equals_step_recurrence():
    m = small()
    x = torch.randn(3, 13, 16, dtype=F64)
    y = m(x)
    y_steps = run_steps(m, x, m.allocate_cache(3, 13, dtype=F64))
    torch.testing.assert_close(y, y_steps, atol=1e-12, rtol=1e-12)


def test_conv_taps_are_causal_and_ordered():
    # d_conv = 4 with a single nonzero tap: the conv must read exactly that lag.
    m = small()
    with torch.no_grad():
        m.conv1d.weight.zero_()
        m.conv1d.weight[:, 0, 1] = 1.0  # tap 1 of 4 = lag 2 (tap 3 is the current token)
        m.conv1d.bias.zero_()
    xBC = torch.randn(1, 7, m.conv_dim, dtype=F64)
    out = m._conv(xBC, None)
    torch.testing.assert_close(out[:, 2:], xBC[:, :-2])
    assert torch.equal(out[:, :2], torch.zeros_like(out[:, :2]))
    packed = m._conv(xBC, torch.zeros(1, 7, dtype=torch.int32))
    torch.testing.assert_close(packed, out)


def test_causality():
    m = small()
    x = torch.randn(2, 17, 16, dtype=F64)
    y = m(x)
    x2 = x.clone()
    x2[:, 9:] = torch.randn(2, 8, 16, dtype=F64)
    y2 = m(x2)
    assert torch.equal(y[:, :9], y2[:, :9])
    assert not torch.allclose(y[:, 9:], y2[:, 9:])


def test_padded_row_equals_sequence_alone():
    m = small()
    lengths = [11, 4, 1]
    x = torch.randn(3, 11, 16, dtype=F64)
    mask = torch.arange(11)[None] < torch.tensor(lengths)[:, None]
    x_pad = torch.where(mask[..., None], x, 100.0)  # junk in the padding must not matter
    cache = m.allocate_cache(3, 11, dtype=F64)
    y = m(x_pad, mask=mask, cache=cache)
    for row, n in enumerate(lengths):
        alone_cache = m.allocate_cache(1, n, dtype=F64)
        y_alone = m(x[row : row + 1, :n], cache=alone_cache)
        torch.testing.assert_close(y[row : row + 1, :n], y_alone, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(
            cache.ssm_state[row], alone_cache.ssm_state[0], atol=1e-12, rtol=1e-12
        )
        torch.testing.assert_close(
            cache.conv_state[row], alone_cache.conv_state[0], atol=1e-14, rtol=1e-14
        )


def test_packed_equals_separate_sequences():
    # Three sequences in one row (one shorter than the conv window, one change on a chunk
    # boundary): no state or conv tap may cross a change of seq_idx.
    m = small(chunk_size=5)
    lens = [5, 2, 9]
    seqs = [torch.randn(1, n, 16, dtype=F64) for n in lens]
    x = torch.cat(seqs, 1)
    seq_idx = torch.cat([torch.full((1, n), i, dtype=torch.int32) for i, n in enumerate(lens)], 1)
    y = m(x, seq_idx=seq_idx)
    y_sep = torch.cat([m(s) for s in seqs], 1)
    torch.testing.assert_close(y, y_sep, atol=1e-12, rtol=1e-12)
    assert not torch.allclose(m(x), y_sep)  # without seq_idx the sequences do interact


def test_prefill_then_step_equals_full_forward():
    # Rows of different prompt lengths (right-padded) continue token by token; each row must
    # match the full forward of its own prompt + continuation.
    m = small()
    prompt_lens, total = [6, 2, 9], 13
    full = torch.randn(3, total, 16, dtype=F64)
    plen = max(prompt_lens)
    mask = torch.arange(plen)[None] < torch.tensor(prompt_lens)[:, None]
    cache = m.allocate_cache(3, total, dtype=F64)
    m(full[:, :plen], mask=mask, cache=cache)
    outs = [[] for _ in range(3)]
    for k in range(total - min(prompt_lens)):
        pos = torch.tensor(prompt_lens) + k
        active = pos < total
        tok = full[torch.arange(3), pos.clamp(max=total - 1)].unsqueeze(1)
        y = m.step(tok, cache, active)
        for row in range(3):
            if active[row]:
                outs[row].append(y[row, 0])
    for row, n in enumerate(prompt_lens):
        expected = m(full[row : row + 1])[0, n:]
        torch.testing.assert_close(torch.stack(outs[row]), expected, atol=1e-12, rtol=1e-12)


def test_inactive_rows_keep_cache():
    m = small()
    cache = m.allocate_cache(3, 8, dtype=F64)
    m(torch.randn(3, 5, 16, dtype=F64), cache=cache)
    conv0, ssm0 = cache.conv_state.clone(), cache.ssm_state.clone()
    conv_ref, ssm_ref = cache.conv_state, cache.ssm_state
    active = torch.tensor([True, False, True])
    m.step(torch.randn(3, 1, 16, dtype=F64), cache, active)
    assert torch.equal(cache.conv_state[1], conv0[1]) and torch.equal(cache.ssm_state[1], ssm0[1])
    assert not torch.equal(cache.conv_state[0], conv0[0])
    assert not torch.equal(cache.ssm_state[2], ssm0[2])
    # The previous tensors were replaced, not written in place.
    assert torch.equal(conv_ref, conv0) and torch.equal(ssm_ref, ssm0)


def test_allocate_cache_shapes_and_dtypes():
    m = Mamba2(32, d_state=16, headdim=16, ngroups=2)
    cache = m.allocate_cache(5, 100)
    assert isinstance(cache, Mamba2Cache)
    assert cache.conv_state.shape == (5, 64 + 64, 4) and cache.conv_state.dtype == torch.float32
    assert cache.ssm_state.shape == (5, 4, 16, 16) and cache.ssm_state.dtype == torch.float32
    assert not cache.conv_state.any() and not cache.ssm_state.any()
    bf = m.allocate_cache(2, 10, dtype=torch.bfloat16)
    assert bf.conv_state.dtype == torch.bfloat16 and bf.ssm_state.dtype == torch.float32


def test_cache_errors():
    m = small()
    cache = m.allocate_cache(1, 4, dtype=F64)
    x = torch.randn(1, 4, 16, dtype=F64)
    with pytest.raises(ValueError, match="prefill with a cache does not support seq_idx"):
        m(x, seq_idx=torch.zeros(1, 4, dtype=torch.int32), cache=cache)
    with pytest.raises(ValueError, match=r"step expects one token per row, got shape \(1, 4, 16\)"):
        m.step(x, cache)


def test_float32_module_matches_float64():
    m64 = small()
    m32 = small()
    m32.load_state_dict(m64.state_dict())
    m32 = m32.float()
    x = torch.randn(2, 40, 16, dtype=F64)
    torch.testing.assert_close(m32(x.float()).double(), m64(x), atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_parameter():
    m = small()
    x = torch.randn(2, 12, 16, dtype=F64, requires_grad=True)
    m(x).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all()


def test_prefill_shorter_than_conv_width_pads_conv_state_with_zeros():
    m = small()
    cache = m.allocate_cache(1, 2, dtype=F64)
    x = torch.randn(1, 2, 16, dtype=F64)
    m(x, cache=cache)
    xBC = m.in_proj(x)[..., m.d_inner : m.d_inner + m.conv_dim]  # raw conv inputs
    assert torch.equal(cache.conv_state[0, :, :2], torch.zeros(m.conv_dim, 2, dtype=F64))
    torch.testing.assert_close(cache.conv_state[0, :, 2:], xBC[0].T)


def test_fused_kernel_dispatch(monkeypatch):
    # Which path runs and what it is handed. The fused kernel's numbers (vs this torch path) are
    # checked against the real mamba_ssm kernel in tests/kernels (`make test-kernels`).
    from hnet_dna.model import mamba2 as mamba2_mod

    m = small()
    x = torch.randn(2, 11, 16, dtype=F64)
    expected = m(x)
    calls = []

    def recorder(zxbcdt, conv_w, *args, **kwargs):
        calls.append(kwargs)
        return "kernel"

    monkeypatch.setattr(mamba2_mod, "_load_fused_kernel", lambda: recorder)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    assert m(x, seq_idx=torch.zeros(2, 11, dtype=torch.long)) == "kernel"
    kw = calls[0]
    assert kw["seq_idx"].dtype == torch.int32 and kw["activation"] == "silu"
    assert kw["headdim"] == m.headdim and kw["ngroups"] == m.ngroups
    assert kw["norm_before_gate"] is False and kw["rmsnorm_weight"] is m.norm.weight
    cache = m.allocate_cache(2, 11, dtype=F64)
    m(x, cache=cache)  # prefill needs the final state: torch path
    assert len(calls) == 1
    monkeypatch.setattr(mamba2_mod, "kernels_disabled", lambda: True)
    torch.testing.assert_close(m(x), expected, atol=1e-12, rtol=1e-12)  # is_cuda: F.conv1d
    assert len(calls) == 1  # disabled kernels: the torch path ran
