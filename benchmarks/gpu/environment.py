"""Section ``environment``: torch / CUDA / the device, and which fast paths import (mamba_ssm's
Triton SSD kernels, the fused Mamba-2 kernel with causal_conv1d, flash-attn)."""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.gpu.context import Context
from benchmarks.gpu_kernels import MAMBA_TRITON, fast_paths, import_submodule
from benchmarks.timing import machine_info

NEEDS_S = 0.0  # seconds of the budget this section needs to start


def run(ctx: Context) -> dict[str, Any]:
    info: dict[str, Any] = machine_info(torch.get_num_threads())
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        info.update(gpu=props.name, gpu_memory_gib=props.total_memory / 2**30,
                    capability=list(torch.cuda.get_device_capability(ctx.device)))
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = None
    try:
        info["mamba_ssm_import"] = import_submodule(MAMBA_TRITON)
    except Exception as exc:
        info["mamba_ssm_import"] = f"failed: {type(exc).__name__}: {exc}"
    info["fast_paths"] = fast_paths(refresh=True)
    return info
