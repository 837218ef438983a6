"""EMA dechunk kernel call (``ema_scan`` -> ``mamba_chunk_scan_combined`` with d_state = 1).

``kernel_inputs="fp32"`` runs through the real kernel under the interpreter and is compared
with the float64 recurrence. ``kernel_inputs="official"`` hands bf16 tensors to the kernel,
which Triton 3.9's interpreter mishandles (raw bf16 bits reach its arithmetic), so that mode is
checked in two parts: the exact tensors our code hands to the kernel equal the official
DeChunkLayer's recipe (bit for bit), and the real kernel run on those same values (upcast to
float32, exactly representable) agrees with a float64 evaluation of the rounded recurrence.
"""

from __future__ import annotations

import pytest
import torch
from _compare import compare

from hnet_dna.model.ops import ema as ema_mod
from hnet_dna.model.ops.ema import ema_naive, ema_scan


def make(seed: int, b: int, m: int, d: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, m, d, generator=gen)
    p = torch.rand(b, m, generator=gen).clamp(1e-4, 1 - 1e-4)
    p[:, 0] = 1 - 1e-4  # as after the official clamp of the forced first boundary
    p[0, 3] = 1e-4  # extremes of the clamp: x / dt is 1e4 x here
    return x, p


def capture(monkeypatch, run_as_fp32: bool):
    """Record the kernel's arguments; call the real kernel (on float32 copies if asked)."""
    calls = []
    kernel = ema_mod.load_chunk_scan_kernel()

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        if run_as_fp32:
            args = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
        return kernel(*args, **kwargs)

    monkeypatch.setattr(ema_mod, "load_chunk_scan_kernel", lambda: spy)
    return calls


@pytest.mark.parametrize("packed", [False, True])
def test_fp32_kernel_inputs_match_float64(kernels, monkeypatch, packed):
    b, m, d = 2, 40, 64
    x, p = make(0, b, m, d)
    seq_idx = None
    if packed:
        seq_idx = torch.tensor([[0] * 15 + [1] * 25, [0] * 31 + [4] * 9])
    init = torch.randn(b, d, generator=torch.Generator().manual_seed(1))
    calls = capture(monkeypatch, run_as_fp32=False)
    z = ema_scan(x, p, seq_idx, init, chunk_size=16)
    (args, kwargs), = calls
    xk, dtk, A, Bk, Ck, chunk = args
    assert xk.shape == (b, m, 2, 32) and dtk.shape == (b, m, 2) and Bk.shape == (b, m, 1, 1)
    assert {t.dtype for t in (xk, dtk, A, Bk, Ck)} == {torch.float32} and chunk == 16
    assert torch.equal(A, -torch.ones(2)) and torch.equal(Ck, torch.ones_like(Ck))
    z_ref = ema_naive(x.double(), p.double(), seq_idx, init.double())
    compare(f"ema_scan fp32 kernel vs f64 recurrence (packed={packed})", z, z_ref,
            atol=2e-5, rtol=1e-5)


def test_official_kernel_inputs_follow_official_recipe(kernels, monkeypatch):
    b, m, d = 2, 40, 64
    x, p = make(2, b, m, d)
    calls = capture(monkeypatch, run_as_fp32=True)
    z = ema_scan(x, p, chunk_size=16, kernel_inputs="official")
    (args, kwargs), = calls
    xk, dtk, A, Bk, Ck, chunk = args

    # The official DeChunkLayer.forward, operation by operation (hnet/modules/dc.py).
    dt_o = torch.log(1 / (1 - p.float())).to(torch.bfloat16)
    x_o = (x / dt_o[..., None]).to(torch.bfloat16)
    b_o = p.float().to(torch.bfloat16)
    assert chunk == 256  # its block_size, whatever chunk_size says
    assert torch.equal(xk, x_o.reshape(b, m, 2, 32))
    assert torch.equal(dtk, dt_o[..., None].expand(b, m, 2))
    assert torch.equal(Bk, b_o.reshape(b, m, 1, 1)) and torch.equal(Ck, torch.ones_like(Ck))
    assert A.dtype == torch.float32 and torch.equal(A, -torch.ones(2))
    assert kwargs["seq_idx"] is None and kwargs["initial_states"] is None
    # dt rounded *before* dividing: not what rounding after dividing would hand over.
    assert not torch.equal(xk, (x / -torch.log1p(-p)[..., None]).to(torch.bfloat16)
                           .reshape(b, m, 2, 32))

    # The real kernel on those values vs the same rounded recurrence in float64.
    dt64, x64, b64 = dt_o.double(), x_o.double(), b_o.double()
    rounded = []
    h = torch.zeros(b, d, dtype=torch.float64)
    for t in range(m):
        h = torch.exp(-dt64[:, t, None]) * h + (dt64[:, t] * b64[:, t])[:, None] * x64[:, t]
        rounded.append(h)
    compare("ema_scan official inputs: kernel vs f64 of rounded recurrence", z,
            torch.stack(rounded, 1), atol=2e-5, rtol=1e-5)
    # The official rounding itself, against the exact EMA (reported, loosely bounded).
    z_exact = ema_naive(x.double(), p.double())
    compare("ema_scan official inputs vs exact f64 EMA (bf16 rounding)", z, z_exact,
            atol=1e-1, rtol=5e-2)


def test_kernel_inputs_validated():
    x, p = make(3, 1, 4, 32)
    with pytest.raises(ValueError, match="kernel_inputs must be one of"):
        ema_scan(x, p, kernel_inputs="bf16")
