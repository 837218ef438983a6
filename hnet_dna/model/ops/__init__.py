"""Numeric kernels: pure-torch references and chunked scans, with optional mamba_ssm dispatch."""

from hnet_dna.model.ops.conv import causal_depthwise_conv
from hnet_dna.model.ops.ema import ema_chunked, ema_naive, ema_scan
from hnet_dna.model.ops.ssd import (
    chunked_linear_scan,
    kernels_available,
    kernels_disabled,
    segment_ids,
    ssd_chunked,
    ssd_naive,
    ssd_scan,
)

__all__ = [
    "causal_depthwise_conv",
    "chunked_linear_scan",
    "ema_chunked",
    "ema_naive",
    "ema_scan",
    "kernels_available",
    "kernels_disabled",
    "segment_ids",
    "ssd_chunked",
    "ssd_naive",
    "ssd_scan",
]
