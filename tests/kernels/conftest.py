"""Opt-in kernel tier: the real mamba_ssm Triton kernels on CPU under ``TRITON_INTERPRET=1``.

Run with ``make test-kernels`` (own venv with triton + mamba-ssm, see README "Kernel tests").
In any other run every test here is skipped with the reason. What this conftest does:

- sets ``TRITON_INTERPRET=1`` (before anything imports triton) and
  ``HNET_DNA_KERNELS_ON_CPU=1``, which lets our dispatch hand CPU tensors to the kernels;
- registers stand-ins for the CUDA extensions that cannot exist here: ``selective_scan_cuda``
  (empty: only imported, never called by the paths under test) and ``causal_conv1d_cuda``
  (``causal_conv1d_fwd`` in torch, checked against causal_conv1d's own ``causal_conv1d_ref``
  in test_mamba2_kernels.py; its other entry points raise) and ``flash_attn_2_cuda``
  (``fwd`` / ``varlen_fwd`` in torch, written from flash_attn_func's documented semantics and
  checked against flash-attn's own reference in test_flash_attn_conventions.py); flash-attn's
  forward custom ops (registered for CUDA only) get the same Python bodies as CPU kernels, so
  our calls go through flash-attn's real Python interface down to the extension boundary;
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
    for name in ("triton", "mamba_ssm", "causal_conv1d", "flash_attn", "einops"):
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


def _flash_visible(sq: int, sk: int, causal: bool, left: int, right: int, device):
    """flash_attn_func docstring: query i sees keys in [i + sk - sq - left, i + sk - sq + right]
    (-1: unlimited side); causal = bottom-right aligned, i.e. right = 0."""
    import torch

    if causal:
        right = 0
    diff = torch.arange(sk, device=device)[None, :] - torch.arange(sq, device=device)[:, None]
    diff = diff - (sk - sq)  # key j minus aligned query position
    visible = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if left >= 0:
        visible &= diff >= -left
    if right >= 0:
        visible &= diff <= right
    return visible


def _flash_core(q, k, v, scale, causal, left, right):
    """One sequence: q (sq, h, d), k/v (sk, h, d) -> out (sq, h, d), lse (h, sq), in float32."""
    import torch

    s = torch.einsum("qhd,khd->hqk", q.float(), k.float()) * scale
    visible = _flash_visible(q.shape[0], k.shape[0], causal, left, right, q.device)
    s = s.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)  # -inf on empty rows: output 0, as documented
    probs = torch.exp(s - lse[..., None]).nan_to_num(0.0)
    return torch.einsum("hqk,khd->qhd", probs, v.float()), lse


def _check_flash_inputs(q, k, v, dropout_p, softcap, return_softmax):
    import torch

    # What the CUDA extension rejects (flash_api.cpp), so a bad call fails here too.
    assert q.dtype in (torch.float16, torch.bfloat16), "FlashAttention only supports fp16/bf16"
    assert q.dtype == k.dtype == v.dtype
    assert q.stride(-1) == k.stride(-1) == v.stride(-1) == 1, "last dimension must be contiguous"
    assert q.shape[-1] % 8 == 0 and q.shape[-1] <= 256
    assert dropout_p == 0.0 and softcap == 0.0 and not return_softmax, "not modelled"


def _flash_fwd(q, k, v, out, alibi, dropout_p, scale, causal, left, right, softcap, ret, gen):
    import torch

    _check_flash_inputs(q, k, v, dropout_p, softcap, ret)
    assert alibi is None and out is None
    outs, lses = zip(*(_flash_core(q[b], k[b], v[b], scale, causal, left, right)
                       for b in range(q.shape[0])), strict=True)
    empty = torch.empty(0, dtype=q.dtype)
    rng = torch.zeros(2, dtype=torch.int64)
    return torch.stack(outs).to(q.dtype), torch.stack(lses), empty, rng


def _flash_varlen_fwd(q, k, v, out, cu_q, cu_k, seqused_k, leftpad_k, block_table, alibi,
                      max_q, max_k, dropout_p, scale, zero_tensors, causal, left, right, softcap,
                      ret, gen):
    import torch

    _check_flash_inputs(q, k, v, dropout_p, softcap, ret)
    assert out is None and alibi is None and block_table is None and seqused_k is None
    assert leftpad_k is None
    for cu, total, max_len in ((cu_q, q.shape[0], max_q), (cu_k, k.shape[0], max_k)):
        assert cu.dtype == torch.int32 and cu.dim() == 1, "cu_seqlens: (batch + 1,) int32"
        assert int(cu[0]) == 0 and int(cu[-1]) == total and bool((cu[1:] >= cu[:-1]).all())
        assert isinstance(max_len, int) and max_len == int((cu[1:] - cu[:-1]).max())
    res = torch.empty(q.shape, dtype=torch.float32)
    lse = torch.empty(q.shape[1], q.shape[0], dtype=torch.float32)
    for i in range(cu_q.numel() - 1):
        sq, eq, sk, ek = (int(t) for t in (cu_q[i], cu_q[i + 1], cu_k[i], cu_k[i + 1]))
        res[sq:eq], lse[:, sq:eq] = _flash_core(q[sq:eq], k[sk:ek], v[sk:ek], scale, causal,
                                                left, right)
    return res.to(q.dtype), lse, torch.empty(0, dtype=q.dtype), torch.zeros(2, dtype=torch.int64)


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
    fa = types.ModuleType("flash_attn_2_cuda")
    fa.fwd = _flash_fwd
    fa.varlen_fwd = _flash_varlen_fwd
    fa.bwd = fa.varlen_bwd = fa.fwd_kvcache = _unavailable
    sys.modules.setdefault("selective_scan_cuda", scan)
    sys.modules.setdefault("causal_conv1d_cuda", conv)
    sys.modules.setdefault("flash_attn_2_cuda", fa)
    import flash_attn.flash_attn_interface as fai

    for op in (fai._flash_attn_forward, fai._flash_attn_varlen_forward):
        op.register_kernel("cpu", op._init_fn)

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
    import flash_attn

    return types.SimpleNamespace(
        ssd_combined=ssd_combined, selective_state_update=ssu, flash_attn=flash_attn
    )


def pytest_terminal_summary(terminalreporter):
    from _compare import RESULTS

    if not RESULTS:
        return
    terminalreporter.section("kernel tier: max errors (abs, abs / max|ref|; tolerances)")
    for name, max_abs, rel, atol, rtol in RESULTS:
        terminalreporter.write_line(
            f"{name:<58} abs {max_abs:.2e}  rel {rel:.2e}  (atol {atol:.0e}, rtol {rtol:.0e})"
        )
