"""Embedding extraction: sliding windows with stitching, strand averaging, pooling.

**Sliding windows.** A sequence longer than ``window`` bases is cut into windows of ``window``
bases starting every ``window - overlap`` bases (the last one shorter, ending at the sequence
end: windows overlap by exactly ``overlap`` bases, the context each needs, so a sequence of
``L`` bases costs ``L + (n - 1) * overlap`` bases of model work for ``n`` windows).
Stitching rule: every base is taken from exactly one window, the *earliest window
that contains it after that window's first* ``overlap`` *bases* (the first window owns its first
bases too). For a causal model the representation of a base depends only on bases to its left,
so this gives every base at least ``overlap`` bases of left context (all of it when the sequence
fits in one window), and no base is averaged across windows.

**Strands.** With ``strand_average`` the reverse complement is embedded too (windows planned and
stitched on the reverse strand in its own reading direction), flipped back so that row ``t``
describes forward base ``t`` in both, and averaged per base. Pooled vectors are pooled per
strand and then averaged: ``mean`` is then exactly the mean of the per-base average, ``last``
averages each strand's last base in its reading direction (the forward strand's last base and
the reverse strand's last = forward base 0), each of which has seen the whole sequence.

**Pools.** ``mean``: mean over bases; ``chunk_mean``: mean over the chunks at the depth's
resolution (each chunk once, whatever its length; = ``mean`` at base-level depths); ``last``:
the last base.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pysam

from hnet_dna.errors import InputError
from hnet_dna.genomics.alphabet import reverse_complement
from hnet_dna.genomics.intervals import bed_data_lines
from hnet_dna.outputs import atomic_output
from hnet_dna.progress import progress as progress_bar

from .runner import PerBaseForward, WindowOutput, depth_level

log = logging.getLogger(__name__)

Pool = Literal["mean", "chunk_mean", "last"]
POOLS: tuple[str, ...] = ("mean", "chunk_mean", "last")


# ---------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class WindowPlan:
    """Window ``[start, end)``; it contributes the bases ``[own_start, end)``."""

    start: int
    end: int
    own_start: int


def plan_windows(length: int, window: int, overlap: int) -> list[WindowPlan]:
    """Windows covering ``length`` bases with the stitching rule of the module docstring."""
    if window < 1 or not 0 <= overlap < window:
        raise InputError(f"need --window >= 1 and 0 <= --overlap < --window, got window "
                         f"{window}, overlap {overlap}")
    if length <= window:
        return [WindowPlan(0, length, 0)]
    plans: list[WindowPlan] = []
    start, owned_to = 0, 0
    while owned_to < length:
        end = min(start + window, length)
        plans.append(WindowPlan(start, end, owned_to))
        owned_to = end
        start += window - overlap
    return plans


def stitch(parts: Sequence[WindowOutput], plans: Sequence[WindowPlan]) -> WindowOutput:
    """Concatenate the owned bases of each window's per-base outputs."""
    def cat(get):
        return np.concatenate([get(o)[p.own_start - p.start:] for o, p in zip(parts, plans,
                                                                                strict=True)])
    out = WindowOutput()
    for depth in parts[0].features:
        out.features[depth] = cat(lambda o, d=depth: o.features[d])
    if parts[0].logp is not None:
        out.logp = cat(lambda o: o.logp)
    for k in range(len(parts[0].chunk_start)):
        out.chunk_start.append(cat(lambda o, k=k: o.chunk_start[k]))
        out.boundary_prob.append(cat(lambda o, k=k: o.boundary_prob[k]))
    return out


def owning(plans: Sequence[WindowPlan], start: int, end: int) -> list[WindowPlan]:
    """The windows of ``plans`` that own a base of ``[start, end)``."""
    return [p for p in plans if p.own_start < end and p.end > start]


def cut(out: WindowOutput, start: int, end: int) -> WindowOutput:
    """Bases ``[start, end)`` of per-base outputs."""
    return WindowOutput(
        {d: f[start:end] for d, f in out.features.items()},
        None if out.logp is None else out.logp[start:end],
        [s[start:end] for s in out.chunk_start],
        [p[start:end] for p in out.boundary_prob],
    )


def flip(out: WindowOutput) -> WindowOutput:
    """Per-base outputs of a reverse-strand pass re-ordered to forward coordinates."""
    return WindowOutput(
        {d: f[::-1] for d, f in out.features.items()},
        None if out.logp is None else out.logp[::-1],
        [s[::-1] for s in out.chunk_start],
        [p[::-1] for p in out.boundary_prob],
    )


# ---------------------------------------------------------------------------- pooling
def pool_strand(features: np.ndarray, chunk_starts: np.ndarray | None, how: str,
                reverse: bool = False) -> np.ndarray:
    """Pool ``(L, D)`` per-base features of one strand.

    ``chunk_starts``: ``(L,)`` bool, a base starting a chunk at the depth's resolution (None at
    base level). ``reverse``: the arrays are in forward order but came from the reverse strand,
    whose reading direction (chunks, "last") runs from the end.
    """
    if how == "mean":
        return features.mean(0)
    if how == "last":
        return features[0] if reverse else features[-1]
    if how == "chunk_mean":
        if chunk_starts is None:
            return features.mean(0)
        feats, starts = (features[::-1], chunk_starts[::-1]) if reverse else (features,
                                                                               chunk_starts)
        starts = starts.copy()
        starts[0] = True  # the chunk holding BOS covers the first bases
        first = np.flatnonzero(starts)
        # all bases of a chunk inside one window carry the same vector; at window seams a
        # chunk's bases may come from two windows, and their mean is taken first
        sums = np.add.reduceat(feats, first, axis=0)
        counts = np.diff(np.append(first, len(feats)))[:, None]
        return (sums / counts).mean(0)
    raise InputError(f"unknown pool {how!r}; choose from {POOLS}")


# ---------------------------------------------------------------------------- results
@dataclass
class Embedding:
    """Embeddings of one sequence: ``pooled[depth]`` ``(D,)``, optional ``per_base[depth]``
    ``(L, D)`` (strand-averaged when asked), and the stitched per-strand outputs
    (``strands[0]`` forward, ``strands[1]`` reverse flipped to forward order) for boundaries."""

    name: str
    length: int
    pooled: dict[str, np.ndarray]
    per_base: dict[str, np.ndarray] = field(default_factory=dict)
    strands: list[WindowOutput] = field(default_factory=list)


class Embedder:
    """Embed many sequences with one model; see the module docstring for the rules."""

    def __init__(
        self,
        runner: PerBaseForward,
        depths: Sequence[str] = ("final",),
        pool: str = "mean",
        strand_average: bool = False,
        window: int = 1024,
        overlap: int = 256,
        per_base: bool = False,
        group_bases: int = 1 << 16,
        progress: bool = True,
        logp: bool = False,
    ) -> None:
        if pool not in POOLS:
            raise InputError(f"unknown pool {pool!r}; choose from {POOLS}")
        for d in depths:
            depth_level(d, runner.config)  # fail before any work
        plan_windows(window + 1, window, overlap)  # validates window/overlap
        self.runner, self.depths, self.pool = runner, list(depths), pool
        self.strand_average, self.window, self.overlap = strand_average, window, overlap
        self.per_base, self.group_bases, self.progress = per_base, group_bases, progress
        self.logp = logp  # keep log p(base | left context) per strand (for tracks)
        self.bases = 0
        self.seconds = 0.0

    def dim(self, depth: str) -> int:
        return self.runner.config.stage_cfg(depth_level(depth, self.runner.config))["d_model"]

    @property
    def bases_per_second(self) -> float:
        return self.bases / self.seconds if self.seconds > 0 else float("nan")

    def embed(self, sequences: Iterable[tuple[str, np.ndarray]],
              total: int | None = None, keys: Iterable | None = None) -> Iterator[Embedding]:
        """Yield one :class:`Embedding` per ``(name, base ids)`` in input order.

        Sequences are processed in groups of about ``group_bases`` bases so that batches stay
        full while per-base arrays of only one group are held in memory. ``keys`` (one per
        sequence): a group also ends where the key changes (the genomic block of a BED
        interval), so a run over blocks batches exactly as a run over everything.
        """
        bar = progress_bar(total=total, unit="seq", desc="embed", disable=not self.progress)
        group: list[tuple[str, np.ndarray]] = []
        size = 0
        keys = iter(keys) if keys is not None else None
        last = None
        for name, ids in sequences:
            if len(ids) == 0:
                raise InputError(f"sequence {name!r} is empty")
            if keys is not None:
                key = next(keys)
                if group and key != last:
                    yield from self._embed_group(group)
                    bar.update(len(group))
                    group, size = [], 0
                last = key
            group.append((name, np.asarray(ids)))
            size += len(ids) * (2 if self.strand_average else 1)
            if size >= self.group_bases:
                yield from self._embed_group(group)
                bar.update(len(group))
                group, size = [], 0
        if group:
            yield from self._embed_group(group)
            bar.update(len(group))
        bar.close()
        log.debug("embedded %d bases in %.1f s (%.0f bases/s)", self.bases, self.seconds,
                 self.bases_per_second)

    def _embed_group(self, group: list[tuple[str, np.ndarray]]) -> list[Embedding]:
        t0 = time.perf_counter()
        strands = (False, True) if self.strand_average else (False,)
        jobs, plans_of = [], []
        for _, ids in group:
            plans = plan_windows(len(ids), self.window, self.overlap)
            for rev in strands:
                seq = reverse_complement(ids) if rev else ids
                plans_of.append((len(jobs), plans))
                jobs.extend(seq[p.start:p.end] for p in plans)
        outputs = self.runner.run(jobs, self.depths, logp=self.logp)
        results = []
        for g, (name, ids) in enumerate(group):
            per_strand = []
            for s, rev in enumerate(strands):
                first, plans = plans_of[g * len(strands) + s]
                stitched = stitch(outputs[first:first + len(plans)], plans)
                per_strand.append(flip(stitched) if rev else stitched)
            results.append(self._finish(name, len(ids), per_strand))
        self.bases += sum(len(ids) for _, ids in group)
        self.seconds += time.perf_counter() - t0
        return results

    def embed_slice(self, name: str, fetch: Callable[[int, int], np.ndarray], length: int,
                    start: int, end: int) -> Embedding:
        """Bases ``[start, end)`` of a sequence of ``length`` bases, computed with the windows
        that :meth:`embed` would use for the whole sequence (those owning a base of the
        slice), so every value equals the whole run's; ``fetch(a, b)`` gives its base ids
        ``[a, b)``. Lets a long sequence (a chromosome) be done block by block: per-base
        memory is one block's, and blocks can go to different processes (``track``)."""
        t0 = time.perf_counter()
        plans = plan_windows(length, self.window, self.overlap)
        spans = [(False, start, end)] + ([(True, length - end, length - start)]
                                         if self.strand_average else [])
        jobs, chosen = [], []
        for rev, a, b in spans:
            sel = owning(plans, a, b)
            chosen.append(sel)
            for p in sel:
                ids = fetch(length - p.end, length - p.start) if rev else fetch(p.start, p.end)
                jobs.append(reverse_complement(ids) if rev else ids)
        outputs = self.runner.run(jobs, self.depths, logp=self.logp)
        per_strand, first = [], 0
        for (rev, a, b), sel in zip(spans, chosen, strict=True):
            stitched = stitch(outputs[first:first + len(sel)], sel)
            first += len(sel)
            piece = cut(stitched, a - sel[0].own_start, b - sel[0].own_start)
            per_strand.append(flip(piece) if rev else piece)
        self.bases += end - start
        self.seconds += time.perf_counter() - t0
        return self._finish(name, end - start, per_strand)

    def _finish(self, name: str, length: int, per_strand: list[WindowOutput]) -> Embedding:
        pooled, per_base = {}, {}
        for d in self.depths:
            level = depth_level(d, self.runner.config)
            vecs = [pool_strand(o.features[d], o.chunk_start[level - 1] if level else None,
                                self.pool, reverse=bool(s)) for s, o in enumerate(per_strand)]
            pooled[d] = np.mean(vecs, axis=0).astype(np.float32)
            if self.per_base:
                per_base[d] = np.mean([o.features[d] for o in per_strand], axis=0
                                      ).astype(np.float32)
        return Embedding(name, length, pooled, per_base, per_strand)


# ---------------------------------------------------------------------------- boundaries
@dataclass(frozen=True)
class Boundary:
    """A learned chunk boundary: 0-based ``position`` on ``contig``, router ``stage``, ``prob``,
    ``strand`` ('+' forward pass, '-' reverse-complement pass)."""

    contig: str
    position: int
    stage: int
    prob: float
    strand: str = "+"


def boundaries(emb: Embedding, contig: str, offset: int = 0, region_strand: str = "+"
               ) -> list[Boundary]:
    """Boundaries of every stage and strand of ``emb``; base ``t`` is at ``offset + t``.

    ``region_strand='-'``: ``emb`` is of the reverse complement of ``contig[offset:offset+L]``
    (a minus-strand BED region), so base ``t`` is at ``offset + L - 1 - t`` and the strands swap.
    """
    out = []
    minus = region_strand == "-"
    for s, strand in enumerate(emb.strands):
        genomic = "-" if bool(s) != minus else "+"
        for stage, (starts, probs) in enumerate(zip(strand.chunk_start, strand.boundary_prob,
                                                    strict=True)):
            for t in np.flatnonzero(starts):
                pos = offset + emb.length - 1 - int(t) if minus else offset + int(t)
                out.append(Boundary(contig, pos, stage, float(probs[t]), genomic))
    return out


def boundary_line(b: Boundary) -> str:
    """BED6 line: ``contig, pos, pos + 1, s<stage>:<p>, round(1000 p), strand``."""
    return (f"{b.contig}\t{b.position}\t{b.position + 1}\ts{b.stage}:{b.prob:.4f}\t"
            f"{round(1000 * b.prob)}\t{b.strand}\n")


def boundaries_bed_outputs(path) -> list[Path]:
    """The files :func:`write_boundaries_bed` writes: ``path``, plus ``path.tbi`` for ``.gz``."""
    path = Path(path)
    return [path, Path(f"{path}.tbi")] if path.name.endswith(".gz") else [path]


def write_boundaries_bed(path, records: Iterable[Boundary], track_name: str = "hnet_boundaries"
                         ) -> int:
    """Write a BED6 track of :func:`boundary_line` lines, sorted, through temporary files.

    The name keeps p to 4 decimals and the score scales it to 0-1000 so browsers shade
    boundaries by confidence (``useScore=1``). A ``.gz`` path is bgzipped and tabix-indexed
    (``path.tbi``; no ``track`` line, which tabix would take for a record) so IGV and region
    queries work. Returns the number of lines written.
    """
    lines = [boundary_line(b) for b in
             sorted(records, key=lambda b: (b.contig, b.position, b.stage, b.strand))]
    if not str(path).endswith(".gz"):
        with atomic_output(path) as tmp, open(tmp, "w") as fh:
            fh.write(f'track name={track_name} description="H-Net chunk boundaries" '
                     "useScore=1\n")
            fh.writelines(lines)
        return len(lines)
    with atomic_output(path) as tmp_gz, atomic_output(f"{path}.tbi") as tmp_tbi:
        plain = tmp_gz.with_name(tmp_gz.name + ".txt")
        try:
            plain.write_text("".join(lines))
            pysam.tabix_compress(str(plain), str(tmp_gz), force=True)
        finally:
            plain.unlink(missing_ok=True)
        pysam.tabix_index(str(tmp_gz), preset="bed", index=str(tmp_tbi), force=True)
    return len(lines)


def read_boundaries_bed(path) -> list[Boundary]:
    """Read a track written by :func:`write_boundaries_bed` (errors name file and line)."""
    out = []
    for lineno, f in bed_data_lines(path):
        try:
            stage_s, prob_s = f[3].split(":")
            out.append(Boundary(f[0], int(f[1]), int(stage_s.lstrip("s")), float(prob_s), f[5]))
        except (IndexError, ValueError) as err:
            raise InputError(f"{path}:{lineno}: not an H-Net boundary line ({err})") from None
    return out
