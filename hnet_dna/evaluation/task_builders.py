"""Classification tasks built from a genome FASTA + GFF3, split by genomic region.

Tasks (label 1 = the annotated class, 0 = the control):

* ``promoter``: the ``window`` bases upstream of each annotated gene start, in the gene's
  orientation, vs random windows elsewhere (random strand) that overlap no promoter window,
  matched to a positive's GC content (within ``gc_tolerance``, else the closest of 50 draws);
* ``splice_donor`` / ``splice_acceptor``: windows centred on the GT (AG) dinucleotide starting
  (ending) an annotated intron, in transcript orientation, vs decoy GT (AG) dinucleotides on the
  same strand inside the same genes that are not annotated splice sites;
* ``coding``: windows inside CDS segments vs windows touching no annotated exon or CDS, both
  on a random strand.

**Region-disjoint splits.** Each contig is cut into blocks of ``block`` bases; blocks are dealt
to train/dev/test at random (seeded) in proportion to ``fractions``. An example belongs to the
split of the block(s) holding its window; a window straddling blocks of two different splits is
dropped (counted in ``Task.dropped``), so train and test never share a base. Windows with more
than 10 % N are dropped too (counted). Classes are balanced per split by subsampling the larger
class, and at most ``max_per_class`` examples are kept per class and split.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hnet_dna.errors import InputError
from hnet_dna.genomics.alphabet import decode, reverse_complement
from hnet_dna.genomics.fasta import Genome

from .gff import iter_gff, parents
from .tasks import Task, TaskSplit

log = logging.getLogger(__name__)

TASK_KINDS: tuple[str, ...] = ("promoter", "splice_donor", "splice_acceptor", "coding")
DEFAULT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}


@dataclass(frozen=True)
class Example:
    contig: str
    start: int
    end: int
    strand: str
    label: int


class BlockSplits:
    """Random assignment of fixed-size genome blocks to splits (see the module docstring)."""

    def __init__(self, contigs: Mapping[str, int], block: int, fractions: Mapping[str, float],
                 seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.block, self.names = block, list(fractions)
        self.assign: dict[str, np.ndarray] = {}
        keys = [(c, i) for c, n in contigs.items() for i in range(-(-n // block))]
        counts = np.floor(np.array(list(fractions.values())) * len(keys)).astype(int)
        counts[0] += len(keys) - counts.sum()  # remainder to the first (train) split
        labels = np.repeat(np.arange(len(self.names)), counts)
        rng.shuffle(labels)
        for c, n in contigs.items():
            self.assign[c] = np.empty(-(-n // block), dtype=np.int64)
        for (c, i), lab in zip(keys, labels, strict=True):
            self.assign[c][i] = lab

    def split_of(self, contig: str, start: int, end: int) -> str | None:
        blocks = self.assign[contig][start // self.block:(end - 1) // self.block + 1]
        return self.names[blocks[0]] if (blocks == blocks[0]).all() else None


def _genes_and_introns(gff: str | os.PathLike, contigs: Mapping[str, int]):
    """Gene spans ``(contig, start, end, strand)``, CDS and exon spans, introns per strand."""
    genes, cds, exons = [], [], []
    tx_exons: dict[str, list[tuple[int, int]]] = defaultdict(list)
    tx_info: dict[str, tuple[str, str]] = {}
    for _, cols, attrs in iter_gff(gff):
        if cols[0] not in contigs:
            continue
        s, e, strand = int(cols[3]) - 1, int(cols[4]), cols[6]
        if cols[2] == "gene":
            genes.append((cols[0], s, e, strand))
        elif cols[2] == "CDS":
            cds.append((cols[0], s, e))
        elif cols[2] == "exon":
            exons.append((cols[0], s, e))
            for parent in parents(attrs):  # an exon shared by transcripts (Parent=a,b)
                tx_exons[parent].append((s, e))
                tx_info[parent] = (cols[0], strand)
    introns = set()
    for tid, ex in tx_exons.items():
        contig, strand = tx_info[tid]
        ex.sort()
        for (_, e1), (s2, _) in zip(ex, ex[1:], strict=False):
            if s2 > e1:
                introns.add((contig, e1, s2, strand))  # intron = [e1, s2)
    return genes, cds, exons, sorted(introns)


def _covered(spans, contigs: Mapping[str, int]) -> dict[str, np.ndarray]:
    mask = {c: np.zeros(n, dtype=bool) for c, n in contigs.items()}
    for c, s, e, *_ in spans:
        mask[c][s:e] = True
    return mask


class _Builder:
    def __init__(self, genome: Genome, window: int, rng: np.random.Generator) -> None:
        self.genome, self.window, self.rng = genome, window, rng
        self.seq = {c: genome.fetch_encoded(c, 0, n)[0] for c, n in genome.contigs.items()}

    def ids(self, ex: Example) -> np.ndarray:
        ids = self.seq[ex.contig][ex.start:ex.end]
        return reverse_complement(ids) if ex.strand == "-" else ids

    def fits(self, contig: str, start: int) -> bool:
        return 0 <= start and start + self.window <= len(self.seq[contig])

    def centred(self, contig: str, pos: int, strand: str, label: int) -> Example | None:
        start = pos - self.window // 2
        return Example(contig, start, start + self.window, strand, label) \
            if self.fits(contig, start) else None

    def gc(self, ex: Example) -> float:
        ids = self.seq[ex.contig][ex.start:ex.end]
        acgt = ids < 4
        return float(((ids == 1) | (ids == 2)).sum() / max(acgt.sum(), 1))

    def random_window(self, allowed: dict[str, np.ndarray]) -> Example:
        contigs = list(self.seq)
        weights = np.array([len(self.seq[c]) for c in contigs], dtype=float)
        for _ in range(1000):
            c = contigs[self.rng.choice(len(contigs), p=weights / weights.sum())]
            if len(self.seq[c]) <= self.window:
                continue
            s = int(self.rng.integers(0, len(self.seq[c]) - self.window))
            if allowed[c][s:s + self.window].all():
                return Example(c, s, s + self.window, "+-"[int(self.rng.integers(2))], 0)
        raise RuntimeError("could not place a control window in 1000 draws: too little "
                           "unannotated sequence for this window size")


def _promoters(b: _Builder, genes, gc_tolerance: float) -> list[Example]:
    pos = []
    for c, s, e, strand in genes:
        start = s - b.window if strand == "+" else e
        if strand in "+-" and b.fits(c, start):
            pos.append(Example(c, start, start + b.window, strand, 1))
    allowed = {c: np.ones(len(v), dtype=bool) for c, v in b.seq.items()}
    for ex in pos:
        allowed[ex.contig][ex.start:ex.end] = False
    neg = []
    for ex in pos:
        target = b.gc(ex)
        best = None
        for _ in range(50):
            cand = b.random_window(allowed)
            if best is None or abs(b.gc(cand) - target) < abs(b.gc(best) - target):
                best = cand
            if abs(b.gc(best) - target) <= gc_tolerance:
                break
        neg.append(best)
    return pos + neg


def _splice(b: _Builder, genes, introns, kind: str) -> list[Example]:
    sites = set()
    for c, s, e, strand in introns:
        if kind == "splice_donor":  # first intron base (transcript orientation)
            sites.add((c, s if strand == "+" else e - 2, strand))
        else:  # last two intron bases
            sites.add((c, e - 2 if strand == "+" else s, strand))
    motif = np.array([2, 3]) if kind == "splice_donor" else np.array([0, 2])  # GT / AG
    pos = [ex for c, p, strand in sorted(sites)
           if (ex := b.centred(c, p + 1, strand, 1)) is not None]
    neg = []
    for c, s, e, strand in genes:
        seq = b.seq[c][s:e]
        # on the forward strand a minus-strand GT reads AC (AG reads CT)
        fwd_motif = motif if strand == "+" else reverse_complement(motif)
        hits = np.flatnonzero((seq[:-1] == fwd_motif[0]) & (seq[1:] == fwd_motif[1])) + s
        for p in hits:
            if (c, int(p), strand) not in sites and \
                    (ex := b.centred(c, int(p) + 1, strand, 0)) is not None:
                neg.append(ex)
    return pos + neg


def _coding(b: _Builder, cds, exons) -> list[Example]:
    in_cds = _covered(cds, b.genome.contigs)
    annotated = _covered(cds + exons, b.genome.contigs)
    out = []
    for c, seq in b.seq.items():
        for start in range(0, len(seq) - b.window + 1, b.window):
            sl = slice(start, start + b.window)
            strand = "+-"[int(b.rng.integers(2))]
            if in_cds[c][sl].all():
                out.append(Example(c, start, start + b.window, strand, 1))
            elif not annotated[c][sl].any():
                out.append(Example(c, start, start + b.window, strand, 0))
    return out


def build_task(
    kind: str,
    genome: Genome,
    gff: str | os.PathLike,
    window: int = 200,
    seed: int = 0,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    block: int = 20_000,
    max_per_class: int | None = None,
    gc_tolerance: float = 0.02,
    name: str | None = None,
) -> Task:
    """Build one task (see the module docstring); ``Task.dropped`` counts what was left out."""
    if kind not in TASK_KINDS:
        raise InputError(f"unknown task {kind!r}; choose from {TASK_KINDS}")
    rng = np.random.default_rng(seed)
    b = _Builder(genome, window, rng)
    genes, cds, exons, introns = _genes_and_introns(gff, genome.contigs)
    if kind == "promoter":
        examples = _promoters(b, genes, gc_tolerance)
    elif kind == "coding":
        examples = _coding(b, cds, exons)
    else:
        if not introns:
            raise InputError(f"{gff}: no multi-exon transcripts, cannot build {kind}")
        examples = _splice(b, genes, introns, kind)
    splits = BlockSplits(genome.contigs, block, fractions, seed)
    dropped: Counter = Counter()
    per_split: dict[str, list[Example]] = defaultdict(list)
    for ex in dict.fromkeys(examples):  # dedupe, keep order
        split = splits.split_of(ex.contig, ex.start, ex.end)
        if split is None:
            dropped["straddles_split_boundary"] += 1
        elif (b.seq[ex.contig][ex.start:ex.end] == 4).mean() > 0.1:
            dropped["too_many_N"] += 1
        else:
            per_split[split].append(ex)
    task_splits = {}
    for split in fractions:
        chosen = _balance(per_split[split], rng, max_per_class)
        dropped["class_balance"] += len(per_split[split]) - len(chosen)
        task_splits[split] = TaskSplit(
            [decode(b.ids(ex)) for ex in chosen],
            np.array([ex.label for ex in chosen], dtype=np.int64),
            [f"{ex.contig}:{ex.start}-{ex.end}({ex.strand})" for ex in chosen],
        )
    task = Task(name or f"{genome.name}_{kind}", task_splits, ["control", kind])
    task.dropped = dict(dropped)  # type: ignore[attr-defined]
    log.info("%s: %s; dropped %s", task.name, task.summary(), dict(dropped))
    return task


def _balance(examples: list[Example], rng: np.random.Generator, cap: int | None
             ) -> list[Example]:
    by_label = defaultdict(list)
    for ex in examples:
        by_label[ex.label].append(ex)
    if len(by_label) < 2:
        return examples if cap is None else examples[:cap]
    n = min(len(v) for v in by_label.values())
    n = n if cap is None else min(n, cap)
    out = []
    for label in sorted(by_label):
        items = by_label[label]
        idx = np.sort(rng.choice(len(items), n, replace=False))
        out += [items[i] for i in idx]
    return out
