"""Shared fixtures: the bundled yeast genomes and the small real excerpts in tests/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pysam
import pytest
from gtestdata import FLY, SCER, SCER_CONTIG


@pytest.fixture(scope="session")
def scer_seq() -> str:
    """S. cerevisiae chr I as read by pysam directly (the oracle for our readers)."""
    with pysam.FastaFile(str(SCER)) as fa:
        return fa.fetch(SCER_CONTIG)


@pytest.fixture(scope="session")
def fly_seqs() -> dict[str, str]:
    with pysam.FastaFile(str(FLY)) as fa:
        return {name: fa.fetch(name) for name in fa.references}


@pytest.fixture
def fly_copy(tmp_path: Path) -> Path:
    """The fly excerpt copied into tmp_path (for tests that index or rewrite it)."""
    dst = tmp_path / FLY.name
    shutil.copy(FLY, dst)
    return dst
