"""The one framing of model inputs: ``[BOS, ids, PAD ...]`` and its next-token view."""

import numpy as np
import pytest
import torch

from hnet_dna.genomics.alphabet import BOS, PAD, N, encode
from hnet_dna.genomics.framing import frame, shift_right


def test_frame_of_ragged_rows_pads_after_bos():
    rows = [encode("ACGTN")[0], encode("GA")[0]]
    ids, valid = frame(rows, BOS, PAD)
    assert ids.tolist() == [[BOS, 0, 1, 2, 3, N], [BOS, 2, 0, PAD, PAD, PAD]]
    assert valid.tolist() == [[True] * 6, [True, True, True, False, False, False]]


def test_frame_of_a_padded_tensor_equals_the_ragged_form():
    rows = [np.array([3, 1, 4, 1]), np.array([2, 2])]
    tensor = torch.tensor([[3, 1, 4, 1], [2, 2, PAD, PAD]])
    for got, want in zip(frame(tensor, BOS, PAD), frame(rows, BOS, PAD), strict=True):
        assert torch.equal(got, want)


def test_shift_right_is_the_next_token_view_of_frame():
    tokens = torch.tensor([[0, 1, 2, 3], [2, N, PAD, PAD]])
    inputs, mask = shift_right(tokens, BOS, PAD)
    ids, valid = frame(tokens, BOS, PAD)
    assert torch.equal(inputs, ids[:, :-1]) and inputs[:, 0].eq(BOS).all()
    # input i is valid exactly when its target (token i) is a real token
    assert torch.equal(mask, tokens != PAD)
    assert shift_right(tokens[:1], BOS, PAD)[1] is None  # nothing padded: no mask


def test_frame_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="no window to frame"):
        frame([], BOS, PAD)
