"""Variant scores: LLR sign and antisymmetry, causal equivalence, shared REF windows."""

from __future__ import annotations

import numpy as np
import pytest
from eval_data import random_ids

from hnet_dna.evaluation.runner import PerBaseForward, WindowOutput
from hnet_dna.evaluation.scoring import VariantScorer, common_prefix
from hnet_dna.genomics.alphabet import N, encode


class MarkovRunner:
    """A known language model: after base b the next is (b + 1) mod 4 with p = 0.97.

    ACGT repeats are their own reverse complement, so both strands see the same pattern.
    """

    def __init__(self) -> None:
        self.calls: list[int] = []

    def run(self, windows, depths=(), logp=True):
        self.calls.append(len(windows))
        out = []
        for w in windows:
            w = np.asarray(w, dtype=np.int64)
            lp = np.full(len(w), np.log(0.25))
            for t in range(1, len(w)):
                if w[t] == N or w[t - 1] == N:
                    continue
                lp[t] = np.log(0.97 if w[t] == (w[t - 1] + 1) % 4 else 0.01)
            lp[w == N] = np.nan
            feats = {d: np.eye(5)[w].astype(np.float32) for d in depths}
            out.append(WindowOutput(feats, lp))
        return out

    def run_shared(self, windows, shared, depths=()):
        return self.run(windows, depths)  # a causal model: sharing prefixes changes nothing


def _scorer(**kw) -> VariantScorer:
    return VariantScorer(MarkovRunner(), depth="final", **kw)  # type: ignore[arg-type]


def test_llr_sign_on_a_constructed_case():
    ref = encode("ACGT" * 16)[0]
    alt = ref.copy()
    alt[32] = (alt[32] + 2) % 4  # breaks the repeat: two unlikely transitions
    broken, restored = _scorer().score([(ref, alt), (alt, ref)])
    expected = 2 * (np.log(0.01) - np.log(0.97))
    assert broken.llr == pytest.approx(expected)
    assert broken.llr_fwd == pytest.approx(expected) and broken.llr_rev == pytest.approx(expected)
    assert restored.llr == pytest.approx(-broken.llr)
    # one-hot embeddings: A->G on the forward strand, T->C on the reverse one; averaged, the
    # mean-embedding difference has four entries of +-0.5/64
    assert broken.cos_dist > 0 and broken.l2_dist == pytest.approx(1 / 64)


def test_n_padding_is_not_scored():
    ref = encode("NNNNNNNN" + "ACGT" * 14)[0]
    alt = ref.copy()
    alt[40] = (alt[40] + 2) % 4
    s = _scorer().score([(ref, alt)])[0]
    assert s.llr == pytest.approx(2 * (np.log(0.01) - np.log(0.97)))
    assert np.isfinite(s.llr_mean)


def test_indel_llr_mean_is_length_normalised():
    ref = encode("ACGT" * 16)[0]
    alt = np.r_[ref[:32], ref[32:36], ref[32:]]  # in-frame duplication: still a perfect repeat
    s = _scorer(strand_average=False).score([(ref, alt)], flanks=[(32, 32)])[0]
    assert s.llr == pytest.approx(4 * np.log(0.97))  # four more likely bases
    assert s.llr_mean == pytest.approx(0.0, abs=1e-12)  # same per-base likelihood
    assert s.llr_rev is None
    # without flanks the windows first differ at their end: the LLR is the same (causal)
    assert _scorer(strand_average=False).score([(ref, alt)])[0].llr == pytest.approx(s.llr)


def test_shared_ref_window_runs_once():
    runner = MarkovRunner()
    ref = random_ids(32, seed=3)  # not its own reverse complement
    a1, a2 = ref.copy(), ref.copy()
    a1[16], a2[16] = (ref[16] + 1) % 4, (ref[16] + 2) % 4
    VariantScorer(runner).score([(ref, a1), (ref, a2)])  # type: ignore[arg-type]
    assert runner.calls == [6]  # ref and 2 alts, on two strands


def test_common_prefix():
    assert common_prefix(np.array([1, 2, 3]), np.array([1, 2, 0, 5])) == 2
    assert common_prefix(np.array([1, 2]), np.array([1, 2, 3])) == 2


def test_real_model_llr_is_the_whole_window_llr(model2_f64):
    """Causality: the shared left flank cancels, so the LLR from the variant onward equals the
    log-likelihood ratio of the two whole windows; swapping REF and ALT flips the sign."""
    runner = PerBaseForward(model2_f64)
    ref = random_ids(64, seed=21)
    alt = np.r_[ref[:30], [(ref[30] + 1) % 4], ref[31:40], ref[42:]].astype(np.uint8)  # SNV+del
    scorer = VariantScorer(runner, depth="main", strand_average=False)
    s, back = scorer.score([(ref, alt), (alt, ref)])
    lr, la = (o.logp for o in runner.run([ref, alt]))
    assert s.llr == pytest.approx(la.sum() - lr.sum(), abs=1e-9)
    assert back.llr == pytest.approx(-s.llr, abs=1e-9)
    assert back.cos_dist == pytest.approx(s.cos_dist, abs=1e-12)
    both = VariantScorer(runner, depth="main").score([(ref, alt)])[0]
    assert both.llr == pytest.approx((both.llr_fwd + both.llr_rev) / 2)
    assert both.llr_fwd == pytest.approx(s.llr, abs=1e-9)


class _NaNAt(MarkovRunner):
    """The Markov model, but NaN (a broken model) at one scored position of every window."""

    def run(self, windows, depths=(), logp=True):
        out = super().run(windows, depths, logp)
        for o in out:
            o.logp[40] = np.nan
        return out


def test_model_nan_is_not_mistaken_for_unscored_n():
    ref = encode("NNNNNNNN" + "ACGT" * 14)[0]
    alt = ref.copy()
    alt[30] = (alt[30] + 2) % 4
    fine = _scorer().score([(ref, alt)])[0]
    assert fine.finite  # the N padding is left out, not counted as a non-finite score
    broken = VariantScorer(_NaNAt(), depth="final").score([(ref, alt)])[0]
    assert not broken.finite and np.isnan(broken.llr)


# ------------------------------------------------------------------ shared prefixes
def test_shared_prefix_runs_equal_whole_windows_at_every_depth(model2_f64):
    """run_shared gives run's log-probabilities and per-base features at every depth of a
    2-stage H-Net (chunks after the split differ between windows), float64."""
    from hnet_dna.evaluation.runner import available_depths

    runner = PerBaseForward(model2_f64, batch_size=2)
    ref = random_ids(70, seed=5)
    ref[:6] = N  # contig-edge padding inside the shared prefix
    snv = ref.copy()
    snv[35] = (ref[35] + 1) % 4
    dele = np.r_[ref[:35], ref[38:]].astype(np.uint8)
    ins = np.r_[ref[:35], [0, 1, 2], ref[35:]].astype(np.uint8)
    other = random_ids(50, seed=6)
    windows = [ref, snv, dele, ins, other, ref[:1]]
    shared = [35, 35, 35, 35, 0, 5]  # a lone window, and one of a single base
    depths = available_depths(model2_f64.config)
    whole = runner.run(windows, depths)
    for got, want in zip(runner.run_shared(windows, shared, depths), whole, strict=True):
        np.testing.assert_allclose(got.logp, want.logp, rtol=0, atol=1e-10)
        for d in depths:
            np.testing.assert_allclose(got.features[d], want.features[d], rtol=0, atol=1e-10)


def test_prefix_shared_scores_equal_whole_window_scores_on_the_real_vcf(model1, chr20):
    """All score columns of the excerpt VCF (SNVs, indels, multi-ALT sites, both strands) with
    the shared-prefix path equal today's whole-window scores within 1e-5 (float32 model)."""
    from eval_data import CHR20_VCF

    from hnet_dna.evaluation.scoring import SCORE_COLUMNS
    from hnet_dna.evaluation.vcf_scoring import score_vcf

    tables = [score_vcf(CHR20_VCF, chr20, VariantScorer(PerBaseForward(model1, 8),
                                                        share_prefix=share), 128,
                        progress=False)[0] for share in (True, False)]
    shared, whole = tables
    assert shared["status"].to_list() == whole["status"].to_list()
    assert (shared["status"] == "ok").sum() > 700
    kinds = set(shared.filter(shared["status"] == "ok")["kind"].to_list())
    assert {"snv", "insertion", "deletion"} <= kinds, kinds
    for column in SCORE_COLUMNS:
        a, b = shared[column].to_numpy(), whole[column].to_numpy()
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=column)
