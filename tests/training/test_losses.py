"""BOS shift, weighted cross-entropy normalisation and the ratio-loss term."""

from __future__ import annotations

import math

import pytest
import torch
from training_helpers import tiny_model

from hnet_dna.genomics.alphabet import BOS, PAD
from hnet_dna.genomics.framing import shift_right
from hnet_dna.model.chunking import ratio_loss
from hnet_dna.training.losses import bits_per_token, pretraining_loss, token_nll


def test_shift_right_feeds_bos_and_masks_padding():
    tokens = torch.tensor([[0, 1, 2, 3], [2, 2, PAD, PAD]])
    inputs, mask = shift_right(tokens, BOS, PAD)
    assert inputs.tolist() == [[BOS, 0, 1, 2], [BOS, 2, 2, PAD]]
    # Input i is valid exactly when target i is a real token (right padding).
    assert mask.tolist() == [[True] * 4, [True, True, False, False]]
    _, no_mask = shift_right(tokens[:1], BOS, PAD)
    assert no_mask is None


def test_weighted_nll_matches_manual_sum():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 16)
    targets = torch.randint(0, 4, (2, 5))
    weight = torch.rand(2, 5)
    weight[0, 1] = 0.0
    parts = pretraining_loss(logits, [], targets, weight, weight_norm=weight.sum(),
                             ratio_alpha=0.03, target_ratios=[])
    log_probs = logits.log_softmax(-1)
    manual = -(log_probs.gather(-1, targets[..., None])[..., 0] * weight).sum() / weight.sum()
    assert parts.loss.item() == pytest.approx(manual.item(), rel=1e-6)
    assert parts.weight_sum.item() == pytest.approx(weight.sum().item())


def test_zero_weight_position_cannot_poison_the_sum():
    logits = torch.zeros(1, 3, 16)
    logits[0, 2] = float("nan")  # e.g. garbage at a padded position
    targets = torch.tensor([[0, 1, PAD]])
    weight = torch.tensor([[1.0, 1.0, 0.0]])
    parts = pretraining_loss(logits, [], targets, weight, weight_norm=2.0, ratio_alpha=0.0,
                             target_ratios=[])
    assert parts.loss.item() == pytest.approx(math.log(16))


def test_split_batches_give_the_global_weighted_mean():
    """Micro-batches normalised by the step's total weight sum to the whole-batch loss."""
    torch.manual_seed(1)
    logits = torch.randn(4, 6, 16, requires_grad=True)
    targets = torch.randint(0, 4, (4, 6))
    weight = torch.rand(4, 6)
    whole = pretraining_loss(logits, [], targets, weight, weight_norm=weight.sum(),
                             ratio_alpha=0.0, target_ratios=[]).loss
    parts = sum(
        pretraining_loss(logits[i : i + 2], [], targets[i : i + 2], weight[i : i + 2],
                         weight_norm=weight.sum(), ratio_alpha=0.0, target_ratios=[]).loss
        for i in (0, 2)
    )
    assert parts.item() == pytest.approx(whole.item(), rel=1e-6)


def test_ratio_term_is_alpha_times_sum_over_stages():
    model = tiny_model(two_stage=True)
    tokens = torch.randint(0, 4, (2, 48))
    inputs, mask = shift_right(tokens, BOS, PAD)
    out = model(inputs, mask=mask)
    weight = torch.ones_like(tokens, dtype=torch.float32)
    base = pretraining_loss(out.logits, out.routing, tokens, weight, weight_norm=weight.sum(),
                            ratio_alpha=0.0, target_ratios=[3.0, 2.0])
    full = pretraining_loss(out.logits, out.routing, tokens, weight, weight_norm=weight.sum(),
                            ratio_alpha=0.03, target_ratios=[3.0, 2.0], ratio_scale=0.5)
    expected_ratio = ratio_loss(out.routing[0], 3.0) + ratio_loss(out.routing[1], 2.0)
    assert (full.loss - base.loss).item() == pytest.approx(
        0.5 * 0.03 * expected_ratio.item(), abs=1e-6  # float32 difference of two losses
    )
    assert [r.item() for r in full.ratio_losses] == pytest.approx(
        [ratio_loss(out.routing[0], 3.0).item(), ratio_loss(out.routing[1], 2.0).item()]
    )
    # Stage 0 sees every base; inner stages only the chunks selected by the stage outside.
    (valid0, chunks0), (valid1, _) = full.routing_counts
    assert valid0.item() == tokens.numel()
    assert valid1.item() == chunks0.item()


def test_target_ratio_count_must_match_stages():
    model = tiny_model()
    out = model(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="2 target ratios for 1 routing stages"):
        pretraining_loss(out.logits, out.routing, torch.zeros(1, 8, dtype=torch.long),
                         torch.ones(1, 8), weight_norm=8.0, ratio_alpha=0.03,
                         target_ratios=[3.0, 3.0])


def test_token_nll_and_bits():
    logits = torch.zeros(1, 2, 4)
    nll = token_nll(logits, torch.tensor([[0, 3]]))
    assert nll[0].tolist() == pytest.approx([math.log(4)] * 2)
    assert bits_per_token(nll.sum().item(), 2) == pytest.approx(2.0)
