"""Build an ``HNetForCausalLM`` for a config: freshly initialised (optionally from its own seed) or
read from a saved model folder that must hold that same architecture.

Every command that needs a model for a config comes here: pretraining and the data-efficiency
sweep (new run or resume), the evaluation's random-init control, the benchmark zoo.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hnet_dna.errors import InputError
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.lm import HNetForCausalLM


def build_model(
    config: HNetConfig,
    checkpoint: str | Path | None = None,
    *,
    seed: int | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> HNetForCausalLM:
    """The model of ``config``: the weights of ``checkpoint``, or a fresh initialisation.

    A fresh model draws from the global torch RNG, or, with ``seed``, from that seed alone (the
    global RNG is left as it was). A checkpoint holding another architecture is refused
    (``InputError``): resuming it under this config would silently train something else.
    """
    if checkpoint is not None:
        model = HNetForCausalLM.from_pretrained(Path(checkpoint), device=device)
        if model.config.to_dict() != config.to_dict():
            raise InputError(
                f"{checkpoint} holds a different model than the config asks for; resume with "
                "the same model settings or start a new run folder"
            )
        return model if dtype is None else model.to(dtype)
    saved = torch.random.get_rng_state() if seed is not None else None
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = HNetForCausalLM(config, device=device, dtype=dtype)
        model.init_weights()
    finally:
        if saved is not None:
            torch.random.set_rng_state(saved)
    return model
