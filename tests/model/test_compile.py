"""The optional torch.compile path (hnet_dna.model.compile): compiled == eager, fallbacks.

Tiny shapes: each compiled chain costs seconds to build on a small CPU.
"""

from __future__ import annotations

import logging

import pytest
import torch

from hnet_dna.model import compile as mc
from hnet_dna.model.mamba2 import Mamba2
from hnet_dna.model.norm import RMSNorm, RMSNormGated, fused_rms_norm, gated_rms_norm


@pytest.fixture(autouse=True)
def _reset_compile(monkeypatch):
    # Tiny shapes (compiling is slow here): let them take the compiled path.
    monkeypatch.setattr(gated_rms_norm, "min_numel", 0)
    monkeypatch.setattr(fused_rms_norm, "min_numel", 0)
    yield
    mc.set_compile(None)


def _raise(*args, **kwargs):
    raise RuntimeError("simulated compiler failure")


def _mamba_grads(m: Mamba2, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x = x.clone().requires_grad_(True)
    m.zero_grad(set_to_none=True)
    y = m(x)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y.detach(), [x.grad] + [p.grad for p in m.parameters()]


def test_switch_follows_env_and_override(monkeypatch):
    monkeypatch.delenv(mc.COMPILE_ENV, raising=False)
    assert not mc.compile_enabled()  # off by default
    monkeypatch.setenv(mc.COMPILE_ENV, "1")
    assert mc.compile_enabled()
    mc.set_compile(False)
    assert not mc.compile_enabled()


@pytest.mark.slow
def test_compiled_mamba2_equals_eager_fp32():
    """Forward and every gradient of a Mamba-2 layer (its gated norm compiled) agree with
    eager fp32 to 1e-5 relative (fused loops reorder the fp32 sums)."""
    torch.manual_seed(0)
    m = Mamba2(32, d_state=8, headdim=16, chunk_size=8)
    x = torch.randn(2, 19, 32)
    mc.set_compile(False)
    y0, g0 = _mamba_grads(m, x)
    mc.set_compile(True)
    y1, g1 = _mamba_grads(m, x)
    assert not gated_rms_norm.failed and gated_rms_norm._compiled is not None
    torch.testing.assert_close(y1, y0, rtol=1e-5, atol=1e-6)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_compiled_grouped_norm_equals_eager_fp32():
    torch.manual_seed(1)
    norm = RMSNormGated(24, group_size=8, norm_before_gate=True)
    norm.weight.data.uniform_(0.5, 1.5)
    x, z = torch.randn(3, 5, 24, requires_grad=True), torch.randn(3, 5, 24, requires_grad=True)
    mc.set_compile(False)
    ref = norm(x, z)
    gref = torch.autograd.grad(ref.square().sum(), (x, z, norm.weight))
    mc.set_compile(True)
    out = norm(x, z)
    gout = torch.autograd.grad(out.square().sum(), (x, z, norm.weight))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(gout, gref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_compiled_block_norm_equals_eager_fp32():
    """The blocks' RMSNorm through inductor: output and gradients (input, weight) match eager
    fp32 to 1e-5 relative; float64 stays eager and bit-identical."""
    torch.manual_seed(2)
    norm = RMSNorm(24)
    norm.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, 7, 24, requires_grad=True)
    mc.set_compile(False)
    ref = norm(x)
    gref = torch.autograd.grad(ref.square().sum(), (x, norm.weight))
    mc.set_compile(True)
    out = norm(x)
    gout = torch.autograd.grad(out.square().sum(), (x, norm.weight))
    assert not fused_rms_norm.failed and fused_rms_norm._compiled is not None
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(gout, gref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    norm64, x64 = norm.double(), x.detach().double()
    mc.set_compile(False)
    eager64 = norm64(x64)
    mc.set_compile(True)
    assert torch.equal(norm64(x64), eager64)


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    """A compiler that raises: the result is the eager one, a warning is logged once, and the
    function is not tried again."""
    monkeypatch.setattr(torch, "compile", _raise)
    fn = mc.Fusable(gated_rms_norm.fn, min_numel=0)
    x, z, w = torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.rand(8)
    mc.set_compile(True)
    with caplog.at_level(logging.WARNING, logger=mc.__name__):
        out = fn(x, z, w, 1e-5, 8, False)
    assert fn.failed
    assert "simulated compiler failure" in caplog.text
    assert torch.equal(out, gated_rms_norm.fn(x, z, w, 1e-5, 8, False))
    caplog.clear()
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled again"))
    assert torch.equal(fn(x, z, w, 1e-5, 8, False), out)
    assert caplog.text == ""


def test_runtime_failure_of_compiled_fn_falls_back(monkeypatch):
    """Inductor errors surface at the first call of the compiled function, not at
    torch.compile: those fall back too."""
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: _raise)
    fn = mc.Fusable(gated_rms_norm.fn, min_numel=0)
    args = (torch.randn(2, 5, 12), torch.randn(2, 5, 12), torch.rand(12), 1e-5, 6, True)
    mc.set_compile(True)
    out = fn(*args)
    assert fn.failed
    assert torch.equal(out, gated_rms_norm.fn(*args))


def test_float64_and_disabled_stay_eager(monkeypatch):
    """float64 (the oracle checks) never compiles, nor does anything while compile is off:
    both give bit-identical eager results."""
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("torch.compile called"))
    fn = mc.Fusable(gated_rms_norm.fn, min_numel=0)
    x, z = torch.randn(2, 4, 8, dtype=torch.float64), torch.randn(2, 4, 8, dtype=torch.float64)
    w = torch.rand(8, dtype=torch.float64)
    mc.set_compile(True)
    assert torch.equal(fn(x, z, w, 1e-5, 8, False), gated_rms_norm.fn(x, z, w, 1e-5, 8, False))
    mc.set_compile(False)
    xf, zf, wf = x.float(), z.float(), w.float()
    assert torch.equal(fn(xf, zf, wf, 1e-5, 8, False),
                       gated_rms_norm.fn(xf, zf, wf, 1e-5, 8, False))
    assert not fn.failed


def test_small_inputs_stay_eager(monkeypatch):
    """Below ``min_numel`` elements (decoding: one token per row) the call is eager and
    bit-identical; from ``min_numel`` on the compiled function runs."""
    compiled_calls = []

    def fake_compile(fn, **kw):
        def run(*args):
            compiled_calls.append(args[0].shape)
            return fn(*args)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    fn = mc.Fusable(gated_rms_norm.fn)
    assert fn.min_numel == mc.MIN_COMPILED_NUMEL
    mc.set_compile(True)
    w = torch.rand(256)
    step = torch.randn(4, 1, 256), torch.randn(4, 1, 256)  # a decoding step
    eager = gated_rms_norm.fn(*step, w, 1e-5, 256, False)
    assert torch.equal(fn(*step, w, 1e-5, 256, False), eager)
    assert compiled_calls == []
    rows = -(-mc.MIN_COMPILED_NUMEL // 256)
    big = torch.randn(1, rows, 256), torch.randn(1, rows, 256)
    fn(*big, w, 1e-5, 256, False)
    assert compiled_calls == [torch.Size([1, rows, 256])]
