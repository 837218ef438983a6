"""Optional ``torch.compile`` of the model's elementwise chains (off by default).

On CPU at the widths this project trains (d 128-192), a Mamba-2 layer is bound by passes over
memory, not by its matmuls: the gated norm alone makes ~10 passes forward and backward over
(B, L, d_inner), each block's RMSNorm ~6 over (B, L, d_model). Inductor fuses such chains
into a few loops. Compilation costs tens of seconds per chain and shape class on a small CPU,
so it is opt-in, for long runs (training, benchmarks): ``HNET_DNA_COMPILE=1`` or
``set_compile(True)``.

Only float32 / bfloat16 / float16 tensors take the compiled path: float64 (the reference checks
against the official H-Net) always runs eager, so the oracle numerics are untouched. If
compiling or running the compiled function raises (no C++ compiler, an unsupported op, an
inductor bug), a warning is logged once and that function runs eager from then on.

Small inputs also run eager: a compiled call pays tens of microseconds of guard checks, more
than the fusion saves below ~10^5 elements (the gated norm at width 256, CPU, fp32: compiled
1.1-1.4x slower up to 256 rows, 2-4x faster from 1024 rows, forward and backward). Decoding,
one token per row, therefore stays eager unless batch x width reaches 2^17.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["COMPILE_ENV", "MIN_COMPILED_NUMEL", "Fusable", "compile_enabled", "fusable",
           "set_compile"]

COMPILE_ENV = "HNET_DNA_COMPILE"
MIN_COMPILED_NUMEL = 1 << 17  # largest tensor argument below this: eager (see above)
_FAST_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_override: bool | None = None
log = logging.getLogger(__name__)


def compile_enabled() -> bool:
    """Whether fusable chains are compiled: ``set_compile``'s value, else ``$HNET_DNA_COMPILE``."""
    if _override is not None:
        return _override
    return os.environ.get(COMPILE_ENV, "0") not in ("", "0")


def set_compile(enabled: bool | None) -> None:
    """Force compilation on or off for this process; None defers to ``$HNET_DNA_COMPILE``."""
    global _override
    _override = enabled


class Fusable:
    """A pure tensor function that runs compiled when enabled and eligible, eager otherwise.

    Eligible: compilation enabled, every tensor argument in a fast dtype (never float64), the
    largest one with at least ``min_numel`` elements, not already inside a ``torch.compile``
    trace. The compiled function is built on first use with dynamic shapes (sequence lengths
    vary from batch to batch inside an H-Net).
    """

    def __init__(self, fn: Callable[..., Any], min_numel: int = MIN_COMPILED_NUMEL) -> None:
        self.fn = fn
        self.min_numel = min_numel
        self.failed = False
        self._compiled: Callable[..., Any] | None = None
        self.__name__ = getattr(fn, "__name__", "fusable")
        self.__doc__ = fn.__doc__

    def _eligible(self, args: tuple[Any, ...]) -> bool:
        if self.failed or not compile_enabled() or torch.compiler.is_compiling():
            return False
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        return (bool(tensors) and all(t.dtype in _FAST_DTYPES for t in tensors)
                and max(t.numel() for t in tensors) >= self.min_numel)

    def __call__(self, *args: Any) -> Any:
        if not self._eligible(args):
            return self.fn(*args)
        try:
            if self._compiled is None:
                self._compiled = torch.compile(self.fn, dynamic=True)
            return self._compiled(*args)
        except Exception as err:  # any compile or runtime failure: eager from now on
            self.failed = True
            log.warning("torch.compile of %s failed (%s: %s); running it eager",
                        self.__name__, type(err).__name__, err)
            return self.fn(*args)


def fusable(fn: Callable[..., Any]) -> Fusable:
    """Decorator form of :class:`Fusable`."""
    return Fusable(fn)
