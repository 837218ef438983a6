"""Genome-browser tracks of a causal H-Net: per-base surprise and learned chunk boundaries.

``hnet-dna track`` runs the model over whole contigs or BED regions with the sliding windows,
stitching and strand handling of :mod:`embeddings` (one implementation) and writes, for an
output prefix ``P``:

* ``P.logp.fwd.{bedGraph,bw}``: log p(base | bases to its left) in nats on the forward strand;
* ``P.logp.mean.{bedGraph,bw}``: the mean of that and the reverse-strand log p (the complement
  base given the bases to its right), per base (both strands; not with ``--forward-only``);
* ``P.boundary_prob.s<k>.{fwd,rev}.{bedGraph,bw}``: the stage-``k`` router's boundary
  probability, at the bases that are stage-``k`` tokens (every base at stage 0; the stage-0
  chunk starts at stage 1, ...), per strand;
* ``P.boundaries.s<k>.{plus,minus}.bed.gz`` (+ ``.tbi``): the stage-``k`` chunk boundaries per
  strand as BED6 (name ``s<k>:<p>``, score ``round(1000 p)``), bgzip-compressed, sorted and
  tabix-indexed.

Validity (what ``bedGraphToBigWig`` demands): contigs in lexicographic order (``sort -k1,1``),
starts ascending within a contig, intervals non-overlapping and inside the contig; bases
without a value (N, which is never scored; non-token bases of inner stages) have no line.
Adjacent bases with the same printed value are merged into one line. bedGraph values are
printed with 6 significant digits and the bigWig holds exactly those values (as float32).
Regions must not overlap (refused, naming both); each region is run as one sequence, so its
per-base outputs are held in memory (about 50 bytes per base): split chromosomes of hundreds
of megabases into BED regions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hnet_dna.errors import InputError, OutputError
from hnet_dna.genomics.fasta import Genome
from hnet_dna.genomics.intervals import Interval, intersect, read_bed
from hnet_dna.outputs import atomic_output
from hnet_dna.progress import progress as progress_bar

from .embeddings import Boundary, Embedder, Embedding, boundaries, write_boundaries_bed
from .regions import DEFAULT_BLOCK_SIZE, Block, plan_blocks

log = logging.getLogger(__name__)

#: rough bytes per base and signal of a bedGraph line plus its bigWig share (free-space check)
BYTES_PER_BASE = 40


@dataclass(frozen=True)
class Region:
    contig: str
    start: int
    end: int


def track_regions(genome: Genome, bed: str | os.PathLike | None = None) -> list[Region]:
    """Whole contigs, or the BED regions (checked against the genome), sorted as browsers
    need; overlapping regions are refused (a track has one value per base)."""
    if bed is None:
        regions = [Region(c, 0, n) for c, n in genome.contigs.items()]
    else:
        regions = [Region(iv.contig, iv.start, iv.end) for iv in read_bed(bed, genome.contigs)]
    if not regions:
        raise InputError(f"{bed}: no regions")
    regions.sort(key=lambda r: (r.contig, r.start))
    for a, b in zip(regions, regions[1:], strict=False):
        if a.contig == b.contig and b.start < a.end:
            raise InputError(f"{bed}: regions {a.contig}:{a.start}-{a.end} and "
                             f"{b.contig}:{b.start}-{b.end} overlap; a track needs disjoint "
                             "regions (merge them, e.g. bedtools merge)")
    return regions


def signal_names(stages: int, both_strands: bool) -> list[str]:
    names = ["logp.fwd"] + (["logp.mean"] if both_strands else [])
    for k in range(stages):
        names += [f"boundary_prob.s{k}.fwd"] + ([f"boundary_prob.s{k}.rev"] if both_strands
                                                else [])
    return names


def bed_names(stages: int, both_strands: bool) -> list[str]:
    return [f"boundaries.s{k}.{s}" for k in range(stages)
            for s in (("plus", "minus") if both_strands else ("plus",))]


def track_outputs(prefix: str | os.PathLike, stages: int, both_strands: bool = True,
                  bigwig: bool = True) -> list[Path]:
    """Every file :func:`write_tracks` writes for ``prefix`` (checked before any work).

    A prefix that is a folder (or ends in ``/``) is refused: its files would be hidden
    dot-files (``DIR/.logp.fwd.bedGraph``) or land beside the folder."""
    prefix = os.fspath(prefix)
    if prefix.endswith(("/", os.sep)) or Path(prefix).is_dir():
        folder = prefix.rstrip("/" + os.sep) or prefix
        raise OutputError(f"output prefix {prefix} is a folder; give an output prefix such as "
                          f"{os.path.join(folder, 'NAME')} (files NAME.logp.fwd.bedGraph, ...)")
    out = []
    for name in signal_names(stages, both_strands):
        out.append(Path(f"{prefix}.{name}.bedGraph"))
        if bigwig:
            out.append(Path(f"{prefix}.{name}.bw"))
    for name in bed_names(stages, both_strands):
        out += [Path(f"{prefix}.{name}.bed.gz"), Path(f"{prefix}.{name}.bed.gz.tbi")]
    return out


def signals(emb: Embedding) -> dict[str, np.ndarray]:
    """Per-base float arrays (NaN = no value) of one region, named as in :func:`signal_names`."""
    fwd = emb.strands[0]
    out = {"logp.fwd": fwd.logp}
    if len(emb.strands) > 1:
        rev = emb.strands[1]
        out["logp.mean"] = (fwd.logp + rev.logp) / 2  # N (NaN) on either strand: no value
    for k, prob in enumerate(fwd.boundary_prob):
        out[f"boundary_prob.s{k}.fwd"] = prob
        if len(emb.strands) > 1:
            out[f"boundary_prob.s{k}.rev"] = emb.strands[1].boundary_prob[k]
    return out


def runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(starts, ends, values, printed)`` of the runs of equal printed value (6 significant
    digits), NaN bases left out; ``values`` are the printed numbers read back."""
    pos = np.flatnonzero(np.isfinite(values))
    if pos.size == 0:
        return pos, pos, np.zeros(0), []
    text = np.char.mod("%.6g", values[pos].astype(np.float64))
    new = np.r_[True, (np.diff(pos) != 1) | (text[1:] != text[:-1])]
    first = np.flatnonzero(new)
    last = np.r_[first[1:], len(pos)] - 1
    printed = text[first].tolist()
    return pos[first], pos[last] + 1, text[first].astype(np.float64), printed


class TrackWriter:
    """bedGraph (and bigWig) files of the signals, written block by block in sorted order.

    A block that continues the previous one (``join``) extends the previous block's last run
    when it starts with the same printed value, so a region done in blocks gives the lines of
    the region done at once; the last run of each signal waits for the next block (written by
    :meth:`finish`).
    """

    def __init__(self, stack: ExitStack, prefix: str, names: Sequence[str],
                 contigs: dict[str, int], bigwig: bool = True) -> None:
        self.graphs, self.wigs = {}, {}
        for name in names:
            tmp = stack.enter_context(atomic_output(f"{prefix}.{name}.bedGraph"))
            self.graphs[name] = stack.enter_context(open(tmp, "w"))
            # quoted: a name may hold spaces (a browser splits unquoted values at them)
            title = f"{Path(prefix).name}.{name}".replace('"', "'")
            self.graphs[name].write(f'track type=bedGraph name="{title}"\n')
            if bigwig:
                try:
                    import pyBigWig
                except ImportError:  # pragma: no cover - a declared dependency
                    raise InputError("bigWig output needs pyBigWig (pip install pyBigWig); "
                                     "or pass --no-bigwig") from None
                tmp = stack.enter_context(atomic_output(f"{prefix}.{name}.bw"))
                bw = pyBigWig.open(str(tmp), "w")
                bw.addHeader(sorted(contigs.items()), maxZooms=10)
                self.wigs[name] = bw
                stack.callback(bw.close)  # before the rename of atomic_output
        self.lines = dict.fromkeys(names, 0)
        self.pending: dict[str, tuple[str, int, int, str] | None] = dict.fromkeys(names)

    def add(self, contig: str, offset: int, values: dict[str, np.ndarray],
            join: bool = False) -> None:
        """Per-base ``values`` (NaN: no value) of the bases from ``offset`` on ``contig``."""
        for name in self.graphs:
            starts, ends, _, printed = runs(values[name])
            self.add_runs(name, contig, (starts + offset).tolist(), (ends + offset).tolist(),
                          printed, join)

    def add_runs(self, name: str, contig: str, starts: list[int], ends: list[int],
                 printed: list[str], join: bool = False) -> None:
        """Runs ``[start, end)`` of one signal with their printed values (see :func:`runs`)."""
        items = list(zip(starts, ends, printed, strict=True))
        pending = self.pending[name]
        if pending is not None:
            if join and items and pending[0] == contig and pending[2] == items[0][0] and \
                    pending[3] == items[0][2]:
                items[0] = (pending[1], items[0][1], items[0][2])
            else:
                self._write(name, pending[0], [pending[1:]])
            self.pending[name] = None
        if items:
            self._write(name, contig, items[:-1])
            self.pending[name] = (contig, *items[-1])

    def finish(self) -> None:
        """Write the runs still waiting for a next block."""
        for name, pending in self.pending.items():
            if pending is not None:
                self._write(name, pending[0], [pending[1:]])
                self.pending[name] = None

    def _write(self, name: str, contig: str, items: Sequence[tuple[int, int, str]]) -> None:
        if not items:
            return
        self.graphs[name].writelines(f"{contig}\t{s}\t{e}\t{t}\n" for s, e, t in items)
        self.lines[name] += len(items)
        if name in self.wigs:
            self.wigs[name].addEntries([contig] * len(items), [s for s, _, _ in items],
                                       ends=[e for _, e, _ in items],
                                       values=[float(t) for _, _, t in items])


def write_boundary_beds(prefix: str, bounds: Iterable[Boundary], stages: int,
                        both_strands: bool = True) -> dict[str, int]:
    """One sorted, bgzipped, tabix-indexed BED6 per stage and strand; returns line counts."""
    groups: dict[str, list[Boundary]] = {name: [] for name in bed_names(stages, both_strands)}
    for b in bounds:
        groups[f"boundaries.s{b.stage}.{'plus' if b.strand == '+' else 'minus'}"].append(b)
    return {name: write_boundaries_bed(f"{prefix}.{name}.bed.gz", items)
            for name, items in groups.items()}


def track_blocks(regions: Sequence[Region], selection: Sequence[Interval] | None = None,
                 block_size: int = DEFAULT_BLOCK_SIZE) -> list[tuple[Block, Region]]:
    """The blocks of the tracked ``regions`` (in their sorted order), each with the region it
    belongs to: the region's bases (those in ``selection`` only, if given) cut at multiples of
    ``block_size``. A block is computed with its region's windows, so its values are the
    whole region's."""
    pieces: list[tuple[str, int, int]] = []
    parents: list[Region] = []
    for r in regions:
        if selection is None:
            cuts = [(r.start, r.end)]
        else:
            cuts = [(iv.start, iv.end) for iv in
                    intersect([Interval(r.contig, r.start, r.end)],
                              [iv for iv in selection if iv.contig == r.contig])]
        for a, b in cuts:
            pieces.append((r.contig, a, b))
            parents.append(r)
    blocks = plan_blocks(pieces, block_size)
    owner = iter(parents)  # plan_blocks starts each piece with a region_start block
    out, parent = [], None
    for block in blocks:
        if block.region_start:
            parent = next(owner)
        out.append((block, parent))
    return out


def track_block(embedder: Embedder, genome: Genome, block: Block, region: Region
                ) -> Embedding:
    """The model's outputs on ``block``, equal to those of its whole ``region``."""
    def fetch(a: int, b: int) -> np.ndarray:
        return genome.fetch_encoded(region.contig, region.start + a, region.start + b)[0]

    return embedder.embed_slice(f"{block.contig}:{block.start}-{block.end}", fetch,
                                region.end - region.start, block.start - region.start,
                                block.end - region.start)


def write_tracks(embedder: Embedder, genome: Genome, regions: Sequence[Region], prefix: str,
                 bigwig: bool = True, block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, int]:
    """Run the model over ``regions`` block by block and write every track; returns lines per
    output name. Per-base memory is one block's (about 50 bytes per base)."""
    if not embedder.logp:
        raise ValueError("the embedder must keep log-probabilities (Embedder(logp=True))")
    stages = embedder.runner.config.num_stages
    both = embedder.strand_average
    track_outputs(prefix, stages, both, bigwig)  # a folder as prefix is refused
    blocks = track_blocks(regions, None, block_size)
    bounds: list[Boundary] = []
    bar = progress_bar(total=sum(b.end - b.start for b, _ in blocks), unit="base", unit_scale=True,
               desc="track", disable=not embedder.progress)
    with ExitStack() as stack:
        writer = TrackWriter(stack, prefix, signal_names(stages, both), genome.contigs, bigwig)
        for block, region in blocks:
            emb = track_block(embedder, genome, block, region)
            writer.add(block.contig, block.start, signals(emb), join=not block.region_start)
            bounds += boundaries(emb, block.contig, block.start)
            bar.update(block.end - block.start)
        writer.finish()
        lines = dict(writer.lines)
    bar.close()
    lines.update(write_boundary_beds(prefix, bounds, stages, both))
    return lines
