"""Modality-agnostic H-Net core (pure PyTorch; kernels used when present)."""

from hnet_dna.model.config import AttnConfig, HNetConfig, SSMConfig
from hnet_dna.model.lm import CausalLMOutput, HNetForCausalLM

__all__ = ["AttnConfig", "CausalLMOutput", "HNetConfig", "HNetForCausalLM", "SSMConfig"]
