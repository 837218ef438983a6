"""Paths of the test data (tests/data excerpts and the bundled yeast genomes)."""

from pathlib import Path

from hnet_dna.genomics.corpora import BUNDLED_DIR

DATA = Path(__file__).resolve().parents[1] / "data"
SCER = BUNDLED_DIR / "ScerR64_I_GCF_000146045.2_R64_genomic.fna.gz"
SCER_CONTIG = "NC_001133.9"
FLY = DATA / "drosophila_chr4_gaps.fa"
FLY_BED = DATA / "drosophila_chr4_gaps.bed"
