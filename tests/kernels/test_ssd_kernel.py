"""``ssd_scan`` dispatch against the real ``mamba_chunk_scan_combined`` (Triton interpreter).

Float32 inputs (the interpreter mishandles bf16); reference: ``ssd_naive`` in float64 on the
same values, and the pure-torch path of ``ssd_scan``.
"""

from __future__ import annotations

import pytest
import torch
from _compare import compare

from hnet_dna.model.ops import ssd as ssd_mod
from hnet_dna.model.ops.ssd import ssd_naive, ssd_scan


def inputs(seed: int, b: int, L: int, h: int, p: int, g: int, n: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, L, h, p, generator=gen)
    dt = torch.rand(b, L, h, generator=gen) * 0.5 + 1e-3
    A = -(torch.rand(h, generator=gen) * 4 + 0.5)
    B = torch.randn(b, L, g, n, generator=gen)
    C = torch.randn(b, L, g, n, generator=gen)
    D = torch.randn(h, generator=gen)
    init = torch.randn(b, h, p, n, generator=gen)
    return x, dt, A, B, C, D, init


def spy(monkeypatch, module, name):
    """Wrap ``module.name`` (a loader returning the kernel) so calls are recorded."""
    calls = []
    kernel = getattr(module, name)()
    assert kernel is not None

    def counted(*args, **kwargs):
        calls.append((args, kwargs))
        return kernel(*args, **kwargs)

    monkeypatch.setattr(module, name, lambda: counted)
    return calls


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("with_init", [False, True])
def test_ssd_scan_kernel_matches_reference(kernels, monkeypatch, packed, with_init):
    b, L, h, p, g, n, chunk = 2, 40, 4, 8, 2, 16, 16
    x, dt, A, B, C, D, init = inputs(1, b, L, h, p, g, n)
    init = init if with_init else None
    seq_idx = None
    if packed:  # resets inside a chunk, on a chunk edge, and two in a row
        seq_idx = torch.zeros(b, L, dtype=torch.long)
        seq_idx[0, 5:] = 1
        seq_idx[0, 16:] = 2
        seq_idx[0, 17:] = 3
        seq_idx[1, 30:] = 7
    calls = spy(monkeypatch, ssd_mod, "load_chunk_scan_kernel")
    y, s = ssd_scan(x, dt, A, B, C, chunk, D=D, seq_idx=seq_idx, initial_state=init,
                    return_final_state=True)
    assert len(calls) == 1  # the kernel ran, on CPU tensors
    kw = calls[0][1]
    assert kw["seq_idx"] is None if seq_idx is None else kw["seq_idx"].dtype == torch.int32
    assert y.dtype == torch.float32 and s.shape == (b, h, p, n)

    f64 = [t.double() for t in (x, dt, A, B, C, D)]
    y_ref, s_ref = ssd_naive(*f64, seq_idx=seq_idx,
                             initial_state=None if init is None else init.double())
    tag = f"ssd_scan kernel vs f64 naive (packed={packed}, init={with_init})"
    compare(tag + " y", y, y_ref, atol=2e-5, rtol=1e-5)
    compare(tag + " state", s, s_ref, atol=2e-5, rtol=1e-5)

    monkeypatch.setenv("HNET_DNA_DISABLE_KERNELS", "1")
    y_torch, s_torch = ssd_scan(x, dt, A, B, C, chunk, D=D, seq_idx=seq_idx, initial_state=init,
                                return_final_state=True)
    assert len(calls) == 1  # disabled: the torch path ran
    tag = f"ssd_scan kernel vs torch path (packed={packed}, init={with_init})"
    compare(tag + " y", y, y_torch, atol=2e-5, rtol=1e-5)
    compare(tag + " state", s, s_torch, atol=2e-5, rtol=1e-5)
