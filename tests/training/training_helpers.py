"""Tiny models and configs that keep every training test at a few seconds on CPU."""

from __future__ import annotations

import torch

from hnet_dna.model.config import HNetConfig
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.training.config import DataConfig, PretrainConfig, TrainerConfig


def tiny_model_config(two_stage: bool = False) -> HNetConfig:
    layout = ["m1", ["m1", ["t1"], "m1"], "m1"] if two_stage else ["m1", ["t1"], "m1"]
    n = 3 if two_stage else 2
    return HNetConfig(
        arch_layout=layout,
        d_model=[32] * (n - 1) + [64],
        d_intermediate=[0] * n,
        ssm_cfg={"d_state": 16, "headdim": 16, "chunk_size": 32},
        attn_cfg={"num_heads": [2] * n, "rotary_emb_dim": [8] * n, "window_size": [-1] * n},
    )


def tiny_model(seed: int = 0, two_stage: bool = False) -> HNetForCausalLM:
    torch.manual_seed(seed)
    model = HNetForCausalLM(tiny_model_config(two_stage))
    model.init_weights()
    return model


def tiny_pretrain_config(**trainer_overrides) -> PretrainConfig:
    """Yeast corpus, 64-base windows, a handful of steps, no progress bar or baselines."""
    trainer = TrainerConfig(
        max_steps=4,
        log_every=1,
        progress_bar=False,
        baselines=False,
        eval_max_batches=2,
    )
    for key, value in trainer_overrides.items():
        setattr(trainer, key, value)
    data = DataConfig(corpus="yeast_chrI", context_length=64, batch_size=4, eval_batch_size=8)
    return PretrainConfig(model=tiny_model_config().to_dict(), data=data, trainer=trainer)
