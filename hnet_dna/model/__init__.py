"""Modality-agnostic H-Net core (pure PyTorch; kernels used when present)."""

from hnet_dna.model.config import AttnConfig, HNetConfig, SSMConfig

__all__ = ["AttnConfig", "HNetConfig", "SSMConfig"]
