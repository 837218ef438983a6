"""Corpora of the data-efficiency sweep, named by path: DNA FASTAs (or a data package) and text.

A corpus yields the same unit windows (bases or bytes, from ``hnet_dna.genomics``) to every
model; token models tokenize them afterwards. Held-out sets are contiguous blocks cut by position
(``split_by_fraction``), optionally capped to their first ``max_units`` units so that CPU runs can
evaluate often; every model is scored on exactly the same capped block.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hnet_dna.genomics.alphabet import DNA_VOCAB
from hnet_dna.genomics.corpora import (
    Corpus,
    corpus_from_fastas,
    data_package_dir,
    package_genomes,
)
from hnet_dna.genomics.intervals import Interval, split_by_fraction
from hnet_dna.genomics.text import BYTE_VOCAB, TextSource
from hnet_dna.genomics.windows import WindowDataset

Regions = list[tuple[object, list[Interval]]]


@dataclass
class SourceSpec:
    """Where sequences come from: DNA ``fasta`` paths or a data ``package`` (+ genome labels and
    contigs), or ``text`` file paths."""

    fasta: list[str] = field(default_factory=list)
    package: str | None = None
    genomes: list[str] = field(default_factory=list)  # package genome labels; [] = all
    contigs: list[str] = field(default_factory=list)  # restrict to these contigs; [] = all
    text: list[str] = field(default_factory=list)
    fractions: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "valid": 0.1, "test": 0.1}
    )


@dataclass
class EvalSpec:
    """An extra held-out set (e.g. another species), scored alongside the main one."""

    name: str
    source: SourceSpec
    split: str = "valid"


@dataclass
class CorpusSpec:
    name: str
    kind: str  # dna | text
    source: SourceSpec
    train_split: str = "train"
    eval_split: str = "valid"
    extra_eval: list[EvalSpec] = field(default_factory=list)


def _dna_regions(spec: SourceSpec) -> dict[str, Regions]:
    if spec.fasta:
        paths, names = [Path(p) for p in spec.fasta], None
    elif spec.package:
        found = dict(package_genomes(data_package_dir(spec.package)))
        wanted = spec.genomes or sorted(found)
        missing = [g for g in wanted if g not in found]
        if missing:
            raise KeyError(f"{spec.package} has no genome(s) {missing}; it has {sorted(found)}")
        paths, names = [found[g] for g in wanted], wanted
    else:
        raise ValueError("a DNA source needs `fasta` paths or a data `package`")
    corpus = corpus_from_fastas("sweep", paths, spec.fractions, names=names)
    out: dict[str, Regions] = {}
    for split, regions in corpus.splits.items():
        kept = []
        for genome, ivs in regions:
            if spec.contigs:
                unknown = set(spec.contigs) - set(genome.contigs)
                if unknown == set(spec.contigs):
                    continue  # none of the listed contigs is in this genome
                ivs = [iv for iv in ivs if iv.contig in spec.contigs]
            kept.append((genome, ivs))
        if not kept:
            raise ValueError(f"no contig of {spec.contigs} in {[str(p) for p in paths]}")
        out[split] = kept
    return out


def _text_regions(spec: SourceSpec) -> dict[str, Regions]:
    if not spec.text:
        raise ValueError("a text source needs `text` paths")
    out: dict[str, Regions] = {}
    for path in spec.text:
        source = TextSource(path, name=Path(path).name)
        for split, blocks in split_by_fraction(source.contigs, spec.fractions).items():
            out.setdefault(split, []).append((source, blocks))
    return out


def source_regions(spec: SourceSpec, kind: str) -> dict[str, Regions]:
    """``{split: [(source, intervals)]}`` for a DNA or text source."""
    if kind == "dna":
        return _dna_regions(spec)
    if kind == "text":
        return _text_regions(spec)
    raise ValueError(f"corpus kind must be 'dna' or 'text', got {kind!r}")


def cap_regions(regions: Regions, max_units: int | None) -> Regions:
    """The first ``max_units`` units of the split, shared equally between its sources, each
    taken from the start of its (contiguous) held-out block."""
    if max_units is None:
        return regions
    per_source = max_units // len(regions)
    out: Regions = []
    for source, ivs in regions:
        left, kept = per_source, []
        for iv in ivs:
            if left <= 0:
                break
            end = min(iv.end, iv.start + left)
            kept.append(Interval(iv.contig, iv.start, end))
            left -= end - iv.start
        out.append((source, kept))
    return out


class SweepCorpus(Corpus):
    """A :class:`~hnet_dna.genomics.corpora.Corpus` named by a :class:`CorpusSpec`, with the
    sweep's training windows and held-out tilings (see the module docstring)."""

    def __init__(self, spec: CorpusSpec) -> None:
        super().__init__(spec.name, source_regions(spec.source, spec.kind),
                         DNA_VOCAB if spec.kind == "dna" else BYTE_VOCAB)
        self.spec = spec
        self.extra = {e.name: source_regions(e.source, spec.kind)[e.split] for e in spec.extra_eval}

    def train_windows(self, window: int, seed: int, samples_per_epoch: int) -> WindowDataset:
        """Random windows of the training split (reverse complement with p=0.5 for DNA). Every
        base weighs 1 (soft-masked too): the training objective is the evaluated one."""
        dna = self.spec.kind == "dna"
        return self.windows(
            self.spec.train_split, window, mode="random", samples_per_epoch=samples_per_epoch,
            rc_prob=0.5 if dna else 0.0, softmask_weight=1.0,
            max_n_fraction=0.1 if dna else 1.0, seed=seed,
        )

    def eval_windows(self, window: int, max_units: int | None) -> dict[str, WindowDataset]:
        """Tiled held-out windows: the main held-out block first, then the extra sets."""
        sets = {"heldout": self.regions(self.spec.eval_split), **self.extra}
        return {
            name: WindowDataset(cap_regions(regions, max_units), window, mode="tile",
                                softmask_weight=1.0, vocab=self.vocab, rank=0, world_size=1)
            for name, regions in sets.items()
        }

    def train_units(self, window: int, max_units: int | None) -> Iterator[np.ndarray]:
        """Training-split windows (tiled, evenly thinned to about ``max_units``) for tokenizer
        training; unit ids without padding."""
        data = self.windows(self.spec.train_split, window, mode="tile", rank=0, world_size=1)
        every = 1
        if max_units is not None:
            every = max(1, -(-data.num_positions * window // max_units))
        for index, item in enumerate(data):
            if index % every == 0:
                tokens = item["tokens"].numpy()
                yield tokens[tokens != self.vocab.pad_id]

    def train_text(self) -> Iterator[bytes]:
        """Raw bytes of each text source's training split (for byte-level BPE)."""
        for source, ivs in self.regions(self.spec.train_split):
            for iv in ivs:
                ids, _ = source.fetch_encoded(iv.contig, iv.start, iv.end)
                yield np.asarray(ids, dtype=np.uint8).tobytes()

