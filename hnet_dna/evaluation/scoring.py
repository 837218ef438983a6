"""Zero-shot variant scores from a causal H-Net: log-likelihood ratios and embedding distances.

For a REF window and an ALT window with the same flanks (``variants.variant_windows``), on each
strand read in its own direction, let ``k`` be where the variant starts: the length of the flank
before it on that strand (given by the caller; by default the first position where the two
windows differ, which can lie past the variant for an indel inside a repeat). Then

* ``llr`` = sum_{i >= k} log p(alt_i | alt_<i) - sum_{i >= k} log p(ref_i | ref_<i), in nats. In a
  causal model the shared bases before ``k`` get identical predictions, so this equals the
  log-likelihood ratio of the whole windows; it covers the variant and every base after it.
* ``llr_mean``: the same with means instead of sums (per-base, length-normalised: an indel
  changes the number of bases summed);
* ``cos_dist`` = 1 - cos(e_ref, e_alt) and ``l2_dist`` = ||e_ref - e_alt||, with ``e`` the mean
  over bases of the chosen depth's per-base embedding.

Scores are averaged over the forward and reverse-complement strands (``llr_fwd`` / ``llr_rev``
keep the two LLRs; ``llr_rev`` is None on the forward strand only). N bases (contig-edge
padding) are never scored: they are found from the window itself, so "unscored" stays separate
from "not a number": a NaN or inf log-probability (or embedding) of a scored base makes the
variant's scores non-finite, and :attr:`VariantScores.finite` false; callers report such a
variant as a status, never as a number. **Sign convention**: a
negative ``llr`` means the model finds the ALT sequence less likely than the reference, the
direction expected of deleterious alleles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hnet_dna.genomics.alphabet import N, reverse_complement

from .runner import PerBaseForward

SCORE_COLUMNS: tuple[str, ...] = ("llr", "llr_fwd", "llr_rev", "llr_mean", "cos_dist", "l2_dist")


@dataclass
class VariantScores:
    llr: float
    llr_fwd: float
    llr_rev: float | None
    llr_mean: float
    cos_dist: float
    l2_dist: float

    @property
    def finite(self) -> bool:
        return all(np.isfinite(x) for x in vars(self).values() if x is not None)


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def _ll(logp: np.ndarray, ids: np.ndarray, k: int) -> tuple[float, float]:
    """(sum, mean) of the log-probabilities of the non-N bases from position ``k`` on.

    N bases are left out by their identity, not by a NaN test: a NaN from the model itself
    stays in the sum and makes the score non-finite.
    """
    tail = logp[k:][np.asarray(ids[k:]) != N]
    if tail.size == 0:
        return 0.0, 0.0
    return float(tail.sum()), float(tail.mean())


class VariantScorer:
    """Score ``(ref window, alt window)`` pairs in batches (see the module docstring)."""

    def __init__(self, runner: PerBaseForward, depth: str = "final",
                 strand_average: bool = True, share_prefix: bool = True) -> None:
        """``share_prefix``: run what the REF and ALT windows (on each strand) share before
        the variant once (:meth:`PerBaseForward.run_shared`); False runs every window whole
        (the reference the shared path is tested against, and the benchmark's baseline)."""
        self.runner, self.depth, self.strand_average = runner, depth, strand_average
        self.share_prefix = share_prefix

    def score(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
              flanks: Sequence[tuple[int, int]] | None = None) -> list[VariantScores]:
        """Scores of ``(ref window, alt window)`` pairs; ``flanks[i]`` = (bases before, bases
        after) the variant in pair ``i`` (both windows share them)."""
        strands = (False, True) if self.strand_average else (False,)
        if flanks is not None and len(flanks) != len(pairs):
            raise ValueError(f"{len(flanks)} flanks for {len(pairs)} pairs")
        jobs: list[np.ndarray] = []
        seen: dict[bytes, int] = {}  # REF windows shared by the ALTs of one site run once

        shared: list[int] = []  # per job: the bases it shares with its pairs' other windows

        def add(ids: np.ndarray, k: int) -> int:
            key = ids.tobytes()
            if key not in seen:
                seen[key] = len(jobs)
                jobs.append(ids)
                shared.append(k)
            job = seen[key]
            shared[job] = min(shared[job], k)  # a REF window of several ALTs
            return job

        index = []
        for i, (ref, alt) in enumerate(pairs):
            for rev in strands:
                r, a = (reverse_complement(ref), reverse_complement(alt)) if rev else (ref, alt)
                k = common_prefix(r, a) if flanks is None else flanks[i][int(rev)]
                index.append((add(r, k), add(a, k), k))
        if self.share_prefix:
            outputs = self.runner.run_shared(jobs, shared, [self.depth])
        else:
            outputs = self.runner.run(jobs, [self.depth], logp=True)
        results = []
        for v in range(len(pairs)):
            llrs, means, e_ref, e_alt = [], [], [], []
            for s in range(len(strands)):
                ir, ia, k = index[v * len(strands) + s]
                ref_sum, ref_mean = _ll(outputs[ir].logp, jobs[ir], k)
                alt_sum, alt_mean = _ll(outputs[ia].logp, jobs[ia], k)
                llrs.append(alt_sum - ref_sum)
                means.append(alt_mean - ref_mean)
                e_ref.append(outputs[ir].features[self.depth].astype(np.float64).mean(0))
                e_alt.append(outputs[ia].features[self.depth].astype(np.float64).mean(0))
            er, ea = np.mean(e_ref, 0), np.mean(e_alt, 0)
            cos = float(er @ ea / max(np.linalg.norm(er) * np.linalg.norm(ea), 1e-30))
            results.append(VariantScores(
                llr=float(np.mean(llrs)), llr_fwd=llrs[0],
                llr_rev=llrs[1] if len(llrs) > 1 else None,
                llr_mean=float(np.mean(means)), cos_dist=1.0 - cos,
                l2_dist=float(np.linalg.norm(er - ea)),
            ))
        return results
