"""RMSNorm, gated RMSNorm and SwiGLU against explicit formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hnet_dna.model.mlp import SwiGLU
from hnet_dna.model.norm import RMSNorm, RMSNormGated

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def rms(x, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def test_rmsnorm_formula_and_init():
    norm = RMSNorm(6, eps=1e-5).double()
    assert [n for n, _ in norm.named_parameters()] == ["weight"]
    assert torch.equal(norm.weight, torch.ones(6, dtype=F64))
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
    x = torch.randn(2, 3, 6, dtype=F64) * 3
    torch.testing.assert_close(norm(x), rms(x, 1e-5) * norm.weight, atol=1e-14, rtol=1e-14)


def test_rmsnorm_eps_matters_for_small_inputs():
    x = torch.full((1, 4), 1e-3, dtype=F64)
    out = RMSNorm(4, eps=1e-5).double()(x)
    # rms(x) = 1e-3, so the output is 1e-3 / sqrt(1e-6 + 1e-5), not 1.
    torch.testing.assert_close(out, torch.full_like(x, 1e-3 / (1.1e-5) ** 0.5))


def test_rmsnorm_bf16_computes_in_float32():
    norm = RMSNorm(64).to(torch.bfloat16)
    x = (torch.randn(4, 64) * 100).to(torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    # Within one bf16 rounding of the float32 result.
    torch.testing.assert_close(out.float(), rms(x.float(), 1e-5), rtol=2**-8, atol=0)


@pytest.mark.parametrize("group_size", [8, 4, 2])
def test_gated_norm_after_gate(group_size):
    d = 8
    norm = RMSNormGated(d, eps=1e-5, group_size=group_size).double()
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, d + 1))
    y, z = torch.randn(3, 5, d, dtype=F64), torch.randn(3, 5, d, dtype=F64)
    g = y * z * torch.sigmoid(z)
    groups = g.reshape(3, 5, d // group_size, group_size)
    expected = rms(groups, 1e-5).reshape(3, 5, d) * norm.weight
    torch.testing.assert_close(norm(y, z), expected, atol=1e-13, rtol=1e-13)


def test_gated_norm_before_gate_and_no_gate():
    d = 6
    y, z = torch.randn(4, d, dtype=F64), torch.randn(4, d, dtype=F64)
    before = RMSNormGated(d, norm_before_gate=True).double()
    torch.testing.assert_close(before(y, z), rms(y, 1e-5) * F.silu(z), atol=1e-14, rtol=1e-14)
    plain = RMSNormGated(d).double()
    torch.testing.assert_close(plain(y), rms(y, 1e-5), atol=1e-14, rtol=1e-14)
    # The two gate placements differ (so the flag is honoured).
    after = RMSNormGated(d).double()
    assert not torch.allclose(after(y, z), before(y, z))


def test_gated_norm_rejects_bad_group():
    with pytest.raises(ValueError, match=r"group_size \(4\) must divide d \(6\)"):
        RMSNormGated(6, group_size=4)


def test_swiglu_chunk_order_and_names():
    mlp = SwiGLU(4, 128, multiple_of=128).double()
    assert [n for n, _ in mlp.named_parameters()] == ["fc1.weight", "fc2.weight"]
    assert mlp.fc1.weight.shape == (256, 4) and mlp.fc2.weight.shape == (4, 128)
    assert mlp.fc1.bias is None and mlp.fc2.bias is None
    x = torch.randn(3, 4, dtype=F64)
    value = x @ mlp.fc1.weight[:128].T  # first half = value
    gate = x @ mlp.fc1.weight[128:].T  # second half = gate
    expected = (F.silu(gate) * value) @ mlp.fc2.weight.T
    torch.testing.assert_close(mlp(x), expected, atol=1e-13, rtol=1e-13)
    swapped = (F.silu(value) * gate) @ mlp.fc2.weight.T
    assert not torch.allclose(mlp(x), swapped)


@pytest.mark.parametrize(
    "d_int,multiple_of,expected", [(200, 128, 256), (256, 128, 256), (1, 128, 128), (300, 64, 320)]
)
def test_swiglu_rounds_intermediate_width(d_int, multiple_of, expected):
    mlp = SwiGLU(8, d_int, multiple_of=multiple_of)
    assert mlp.d_intermediate == expected
    assert mlp.fc1.out_features == 2 * expected and mlp.fc2.in_features == expected
