"""Error bookkeeping for the kernel tier: every comparison is asserted and its numbers kept
for the end-of-run table (the numbers quoted in the README's "Kernel tests")."""

from __future__ import annotations

import torch

RESULTS: list[tuple[str, float, float, float, float]] = []


def compare(name: str, got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> None:
    """Assert |got - want| <= atol + rtol |want| elementwise; record max abs error and max abs
    error relative to max |want|."""
    got64, want64 = got.detach().double(), want.detach().double()
    assert got64.shape == want64.shape, (name, got64.shape, want64.shape)
    err = (got64 - want64).abs()
    max_abs = float(err.max()) if err.numel() else 0.0
    scale = float(want64.abs().max()) if want64.numel() else 0.0
    RESULTS.append((name, max_abs, max_abs / max(scale, 1e-300), atol, rtol))
    torch.testing.assert_close(got64, want64, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")
