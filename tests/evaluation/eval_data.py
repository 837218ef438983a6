"""Data paths and tiny random-init H-Nets of the evaluation tests (imported by the tests and by
conftest.py; a module of its own because `from conftest import` is ambiguous when several test
folders run together)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hnet_dna.genomics.corpora import BUNDLED_DIR
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.lm import HNetForCausalLM

DATA = Path(__file__).parents[1] / "data" / "evaluation"
YEAST_FASTA = BUNDLED_DIR / "ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz"
YEAST_GFF = DATA / "ScerR64_I.gff.gz"
YEAST_PROTEINS = DATA / "ScerR64_I_protein.faa.gz"
CHR20_FASTA = DATA / "chr20_excerpt.fa"
CHR20_VCF = DATA / "chr20_excerpt.vcf"


def tiny_config(stages: int = 1) -> HNetConfig:
    layouts = {0: ["m1t1"], 1: ["m1", ["t1"], "m1"], 2: ["m1", ["m1", ["t1"], "m1"], "m1"]}
    n = stages + 1
    return HNetConfig(
        arch_layout=layouts[stages],
        d_model=[32] * stages + [64],
        d_intermediate=[0] * n,
        ssm_cfg={"d_state": 8, "headdim": 16, "chunk_size": 32},
        attn_cfg={"num_heads": [2] * n, "rotary_emb_dim": [8] * n, "window_size": [-1] * n},
    )


def tiny_model(stages: int = 1, seed: int = 0, dtype: torch.dtype = torch.float32
               ) -> HNetForCausalLM:
    torch.manual_seed(seed)
    model = HNetForCausalLM(tiny_config(stages), dtype=dtype)
    model.init_weights()
    return model.eval()


def random_ids(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, n).astype(np.uint8)
