"""Mamba-2 fast paths against the real mamba_ssm Triton code (interpreter, float32).

- Fused forward: ``Mamba2._fused_forward`` -> ``mamba_split_conv1d_scan_combined`` (conv,
  chunk scan, gated RMSNorm kernels, out_proj), vs our torch path and a float64 copy.
  causal_conv1d's CUDA extension cannot run here: its ``causal_conv1d_fwd`` is the torch
  stand-in of conftest.py, itself checked against causal_conv1d's ``causal_conv1d_ref``.
- Step: we do not dispatch to ``selective_state_update`` (our step is torch); the test checks
  ``Mamba2.step`` against the official mamba_ssm step recipe run with the real
  ``selective_state_update`` kernel and causal_conv1d's ``causal_conv1d_update_ref``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _compare import compare

from hnet_dna.model import mamba2 as mamba2_mod
from hnet_dna.model.mamba2 import Mamba2

D_MODEL = 32


def make_model(ngroups: int) -> Mamba2:
    torch.manual_seed(ngroups)
    m = Mamba2(D_MODEL, d_state=16, d_conv=4, expand=2, headdim=16, ngroups=ngroups,
               chunk_size=16)
    with torch.no_grad():  # non-trivial norm weight and conv bias
        m.norm.weight.uniform_(0.5, 1.5)
        m.D.uniform_(-1, 1)
    return m


def test_conv_stand_in_matches_causal_conv1d_ref(kernels):
    from causal_conv1d.causal_conv1d_interface import causal_conv1d_ref
    from causal_conv1d.cpp_functions import causal_conv1d_fwd_function

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 23, generator=gen)
    w = torch.randn(6, 4, generator=gen)
    bias = torch.randn(6, generator=gen)
    got = causal_conv1d_fwd_function(x, w, bias, None, None, None, True)
    compare("causal_conv1d stand-in vs causal_conv1d_ref", got,
            causal_conv1d_ref(x, w, bias, activation="silu"), atol=1e-6, rtol=1e-6)
    # With seq_idx: the reference run on each packed sequence on its own.
    seq_idx = torch.tensor([[0] * 9 + [1] * 2 + [2] * 12, [3] * 23], dtype=torch.int32)
    got = causal_conv1d_fwd_function(x, w, bias, seq_idx, None, None, False)
    for row, bounds in ((0, [(0, 9), (9, 11), (11, 23)]), (1, [(0, 23)])):
        for s, e in bounds:
            want = causal_conv1d_ref(x[row : row + 1, :, s:e], w, bias)
            compare("causal_conv1d stand-in (seq_idx) vs ref per sequence",
                    got[row : row + 1, :, s:e], want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("ngroups", [1, 2])
@pytest.mark.parametrize("packed", [False, True])
def test_fused_forward_matches_torch_path(kernels, monkeypatch, ngroups, packed):
    m = make_model(ngroups)
    x = torch.randn(2, 37, D_MODEL, generator=torch.Generator().manual_seed(7))
    seq_idx = None
    if packed:
        seq_idx = torch.zeros(2, 37, dtype=torch.long)
        seq_idx[0, 10:] = 1
        seq_idx[0, 16:] = 2  # a reset on a chunk edge
        seq_idx[1, 33:] = 5
    calls = []
    kernel = mamba2_mod._load_fused_kernel()
    monkeypatch.setattr(mamba2_mod, "_load_fused_kernel",
                        lambda: lambda *a, **k: calls.append(k) or kernel(*a, **k))
    with torch.no_grad():
        y = m(x, seq_idx=seq_idx)
        assert len(calls) == 1 and calls[0]["ngroups"] == ngroups
        assert calls[0]["seq_idx"] is None or calls[0]["seq_idx"].dtype == torch.int32
        monkeypatch.setenv("HNET_DNA_DISABLE_KERNELS", "1")
        y_torch = m(x, seq_idx=seq_idx)
        y_f64 = copy.deepcopy(m).double()(x.double(), seq_idx=seq_idx)
    assert len(calls) == 1  # disabled: torch path
    tag = f"Mamba2 fused kernel (ngroups={ngroups}, packed={packed})"
    compare(tag + " vs torch path", y, y_torch, atol=1e-5, rtol=1e-4)
    compare(tag + " vs f64 torch path", y, y_f64, atol=1e-5, rtol=1e-4)


def test_fused_forward_with_right_padding(kernels):
    # The fused kernel ignores the mask: causality must keep padding out of valid outputs.
    m = make_model(1)
    x = torch.randn(2, 21, D_MODEL, generator=torch.Generator().manual_seed(8))
    mask = torch.ones(2, 21, dtype=torch.bool)
    mask[1, 13:] = False
    with torch.no_grad():
        y = m(x, mask=mask)
        y_f64 = copy.deepcopy(m).double()(x.double(), mask=mask)
    compare("Mamba2 fused kernel, right padding, valid positions vs f64", y[mask], y_f64[mask],
            atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("ngroups", [1, 2])
def test_step_matches_official_recipe_with_selective_state_update(kernels, ngroups):
    from causal_conv1d.causal_conv1d_interface import causal_conv1d_update_ref

    ssu = kernels.selective_state_update
    m = make_model(ngroups)
    gen = torch.Generator().manual_seed(9)
    bsz = 3
    cache = m.allocate_cache(bsz, 1)
    cache.conv_state = torch.randn(bsz, m.conv_dim, m.d_conv, generator=gen)
    cache.ssm_state = torch.randn(bsz, m.nheads, m.headdim, m.d_state, generator=gen)
    conv0, ssm0 = cache.conv_state.clone(), cache.ssm_state.clone()
    x = torch.randn(bsz, 1, D_MODEL, generator=gen)
    active = torch.tensor([True, False, True])
    with torch.no_grad():
        out = m.step(x, cache, active=active)

        # Official Mamba2.step (mamba_ssm/modules/mamba2.py), kernel branch.
        z, xBC, dt = torch.split(m.in_proj(x[:, 0]), [m.d_inner, m.conv_dim, m.nheads], dim=-1)
        conv_o = conv0.clone()
        xBC = causal_conv1d_update_ref(xBC, conv_o, m.conv1d.weight[:, 0], m.conv1d.bias, "silu")
        xs, B, C = torch.split(xBC, [m.d_inner, m.ngroups * m.d_state, m.ngroups * m.d_state], -1)
        p, n = m.headdim, m.d_state
        args = (
            xs.reshape(bsz, m.nheads, p),
            dt[:, :, None].expand(bsz, m.nheads, p),
            (-torch.exp(m.A_log.float()))[:, None, None].expand(m.nheads, p, n),
            B.reshape(bsz, m.ngroups, n),
            C.reshape(bsz, m.ngroups, n),
            m.D[:, None].expand(m.nheads, p),
        )
        kw = {"dt_bias": m.dt_bias[:, None].expand(m.nheads, p), "dt_softplus": True}
        ssm_o = ssm0.clone()
        y = ssu.selective_state_update(ssm_o, *args, **kw)
        ssm_ref = ssm0.clone()
        y_ref = ssu.selective_state_update_ref(ssm_ref, *args, **kw)
        out_o = m.out_proj(m.norm(y.reshape(bsz, m.d_inner), z))

    compare(f"selective_state_update kernel vs its _ref (ngroups={ngroups}) y", y, y_ref,
            atol=1e-5, rtol=1e-5)
    act = active
    tag = f"Mamba2.step vs official step w/ selective_state_update (ngroups={ngroups})"
    compare(tag + " out", out[act, 0], out_o[act], atol=1e-5, rtol=1e-5)
    compare(tag + " ssm_state", cache.ssm_state[act], ssm_o[act], atol=1e-5, rtol=1e-5)
    compare(tag + " conv_state", cache.conv_state[act], conv_o[act], atol=0, rtol=0)
    # The inactive row keeps its cache bit for bit.
    assert torch.equal(cache.ssm_state[~act], ssm0[~act])
    assert torch.equal(cache.conv_state[~act], conv0[~act])


@pytest.mark.parametrize("ngroups", [1, 2])
def test_extend_from_cache_with_the_chunk_scan_kernel(kernels, monkeypatch, ngroups):
    """``Mamba2.extend`` (REF/ALT suffixes after a shared prefix) scans its new tokens with
    ``mamba_chunk_scan_combined`` from the cached SSM state: equal to the forward over prefix +
    suffix (torch path and float64), with ragged right padding of the new tokens."""
    from hnet_dna.model.ops import ssd

    m = make_model(ngroups)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 41, D_MODEL, generator=gen)
    split = 19  # prefix length; suffix of row 1 padded after 15 of its 22 tokens
    mask = torch.ones(2, 41 - split, dtype=torch.bool)
    mask[1, 15:] = False
    calls = []
    scan = ssd.load_chunk_scan_kernel()
    monkeypatch.setattr(ssd, "load_chunk_scan_kernel",
                        lambda: lambda *a, **k: calls.append(k) or scan(*a, **k))
    with torch.no_grad():
        cache = m.allocate_cache(2, 41)
        m(x[:, :split], cache=cache)
        calls.clear()
        y = m.extend(x[:, split:], cache, mask)
        assert calls and calls[0].get("initial_states") is not None  # the kernel, from the cache
        monkeypatch.setenv("HNET_DNA_DISABLE_KERNELS", "1")
        y_full = m(x)[:, split:]
        y_f64 = copy.deepcopy(m).double()(x.double())[:, split:]
    tag = f"Mamba2.extend with mamba_chunk_scan_combined (ngroups={ngroups})"
    compare(tag + " vs torch forward", y[mask], y_full[mask], atol=1e-5, rtol=1e-4)
    compare(tag + " vs f64 forward", y[mask], y_f64[mask], atol=1e-5, rtol=1e-4)
