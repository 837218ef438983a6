"""Fixtures for the evaluation tests: tiny random-init H-Nets and small real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hnet_dna.genomics.corpora import BUNDLED_DIR
from hnet_dna.genomics.fasta import Genome
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


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A saved model folder (one per test module: tests may add files beside it)."""
    path = tmp_path_factory.mktemp("model") / "m"
    tiny_model(1).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def fasta_copy(tmp_path_factory) -> Path:
    """The chr20 excerpt copied out of tests/data: its .fai is written next to the copy."""
    path = tmp_path_factory.mktemp("ref") / "chr20.fa"
    path.write_text(CHR20_FASTA.read_text())
    return path


@pytest.fixture(scope="session")
def model2_f64() -> HNetForCausalLM:
    """Two-stage tiny model in float64: outputs compared to 1e-9."""
    return tiny_model(2, dtype=torch.float64)


@pytest.fixture(scope="session")
def model1() -> HNetForCausalLM:
    return tiny_model(1)


@pytest.fixture(scope="session")
def yeast() -> Genome:
    return Genome(YEAST_FASTA)


@pytest.fixture(scope="session")
def chr20() -> Genome:
    return Genome(CHR20_FASTA, backend="memory")


def random_ids(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, n).astype(np.uint8)
