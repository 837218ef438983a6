"""Opt-in kernel tier: the real mamba_ssm Triton kernels on CPU under ``TRITON_INTERPRET=1``.

Run with ``make test-kernels`` (own venv with triton + mamba-ssm, see README "Kernel tests").
In any other run every test here is skipped with the reason. What this conftest does:

- sets ``TRITON_INTERPRET=1`` (before anything imports triton) and
  ``HNET_DNA_KERNELS_ON_CPU=1``, which lets our dispatch hand CPU tensors to the kernels;
- registers stand-ins for the CUDA extensions that cannot exist here: ``selective_scan_cuda``
  (empty: only imported, never called by the paths under test) and ``causal_conv1d_cuda``
  (``causal_conv1d_fwd`` in torch, checked against causal_conv1d's own ``causal_conv1d_ref``
  in test_mamba2_fused.py; its other entry points raise);
- imports mamba_ssm's Triton modules without running ``mamba_ssm/__init__`` (which imports the
  CUDA selective scan, transformers and the Mamba-3 modules);
- makes ``torch.cuda.device(...)`` a no-op context for CPU tensors and keeps one config per
  Triton autotuner (the interpreter cannot benchmark).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

import pytest

OPT_IN = os.environ.get("HNET_KERNEL_TESTS", "0") == "1"
if OPT_IN:
    # Must precede the first triton import of the process.
    os.environ["TRITON_INTERPRET"] = "1"
    os.environ["HNET_DNA_KERNELS_ON_CPU"] = "1"


def _missing() -> str | None:
    if not OPT_IN:
        return "kernel tier is opt-in: run `make test-kernels`"
    for name in ("triton", "mamba_ssm", "causal_conv1d", "einops"):
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed: run `make test-kernels` (builds .venv-kernels)"
    return None


SKIP_REASON = _missing()


def pytest_collection_modifyitems(config, items):
    if SKIP_REASON is None:
        return
    here = os.path.dirname(__file__)
    marker = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(marker)


def _causal_conv1d_fwd(x, weight, bias, seq_idx, initial_states, out, final_states_out, silu):
    """Torch stand-in for causal_conv1d_cuda.causal_conv1d_fwd (writes ``out``).

    x (b, d, l), weight (d, w), seq_idx (b, l) int32: tap k (k steps back) is dropped where the
    token k steps back belongs to another sequence, as in the CUDA kernel.
    """
    import torch
    import torch.nn.functional as F

    if initial_states is not None or final_states_out is not None:
        raise NotImplementedError("stand-in: initial/final conv states are not needed here")
    width = weight.shape[1]
    xf, wf = x.float(), weight.float()
    y = torch.zeros_like(xf) if bias is None else bias.float()[None, :, None].expand_as(xf).clone()
    for k in range(width):  # weight[:, width - 1 - k] multiplies x[t - k]
        shifted = F.pad(xf, (k, 0))[..., : xf.shape[-1]]
        if seq_idx is not None and k > 0:
            same = seq_idx == F.pad(seq_idx, (k, 0), value=-1)[:, : seq_idx.shape[1]]
            shifted = shifted * same[:, None, :]
        y = y + wf[:, width - 1 - k, None] * shifted
    if silu:
        y = F.silu(y)
    out.copy_(y.to(out.dtype))


def _unavailable(*args, **kwargs):
    raise NotImplementedError("CUDA-only entry point: not available under the Triton interpreter")


def _install_stand_ins() -> None:
    import torch

    scan = types.ModuleType("selective_scan_cuda")
    scan.__doc__ = "empty stand-in: the CUDA selective scan is imported but not used here"
    conv = types.ModuleType("causal_conv1d_cuda")
    conv.causal_conv1d_fwd = _causal_conv1d_fwd
    conv.causal_conv1d_bwd = _unavailable
    conv.causal_conv1d_update = _unavailable
    sys.modules.setdefault("selective_scan_cuda", scan)
    sys.modules.setdefault("causal_conv1d_cuda", conv)

    # Package shell: submodules import from the installed folder, __init__ never runs.
    spec = importlib.util.find_spec("mamba_ssm")
    shell = types.ModuleType("mamba_ssm")
    shell.__path__ = list(spec.submodule_search_locations)
    shell.__spec__ = spec
    sys.modules["mamba_ssm"] = shell

    real_device = torch.cuda.device

    class _Device(real_device):
        """torch.cuda.device that is a no-op for CPU tensors (index None) or CPU devices."""

        def __init__(self, device):
            self.cpu = device is None or (
                isinstance(device, torch.device) and device.type == "cpu"
            )
            if not self.cpu:
                super().__init__(device)

        def __enter__(self):
            return None if self.cpu else super().__enter__()

        def __exit__(self, *exc):
            return False if self.cpu else super().__exit__(*exc)

    torch.cuda.device = _Device


def _one_config_per_autotuner() -> None:
    from triton.runtime.autotuner import Autotuner

    for name, module in list(sys.modules.items()):
        if not name.startswith("mamba_ssm.") or module is None:
            continue
        for obj in vars(module).values():
            if isinstance(obj, Autotuner) and len(obj.configs) > 1:
                obj.configs = obj.configs[:1]


@pytest.fixture(scope="session")
def kernels():
    """The real kernel modules, ready to run on CPU; our dispatch caches re-resolved."""
    if SKIP_REASON is not None:
        pytest.skip(SKIP_REASON)
    _install_stand_ins()
    import mamba_ssm.ops.triton.selective_state_update as ssu
    import mamba_ssm.ops.triton.ssd_combined as ssd_combined

    _one_config_per_autotuner()
    from hnet_dna.model import mamba2
    from hnet_dna.model.ops import ssd

    ssd.load_chunk_scan_kernel.cache_clear()
    mamba2._load_fused_kernel.cache_clear()
    assert ssd.load_chunk_scan_kernel() is ssd_combined.mamba_chunk_scan_combined
    assert mamba2._load_fused_kernel() is ssd_combined.mamba_split_conv1d_scan_combined
    return types.SimpleNamespace(ssd_combined=ssd_combined, selective_state_update=ssu)


def pytest_terminal_summary(terminalreporter):
    from _compare import RESULTS

    if not RESULTS:
        return
    terminalreporter.section("kernel tier: max errors (abs, abs / max|ref|; tolerances)")
    for name, max_abs, rel, atol, rtol in RESULTS:
        terminalreporter.write_line(
            f"{name:<58} abs {max_abs:.2e}  rel {rel:.2e}  (atol {atol:.0e}, rtol {rtol:.0e})"
        )
