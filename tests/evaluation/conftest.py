"""Fixtures for the evaluation tests: tiny random-init H-Nets and small real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from eval_data import CHR20_FASTA, YEAST_FASTA, tiny_model

from hnet_dna.genomics.fasta import Genome
from hnet_dna.model.lm import HNetForCausalLM


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
