"""Token batches from unit windows: how a tokenizer plugs into training and the scorer.

A unit window (bases or bytes, right-padded) is tokenized on its own; each token records the
units it covers, which is what ``hnet_dna.training.heldout.heldout_bits`` divides its bits by
(``tokenize=``), so every model is scored on the same bases: base-level N and padding are
unscored, and N is a single unscored token in every tokenizer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hnet_dna.baselines.tokenizers import WindowTokenizer, encode_windows


def tokenize_batch(
    batch: dict[str, Any], tokenizer: WindowTokenizer, unit_pad_id: int
) -> dict[str, torch.Tensor]:
    """Tokenize each row of a unit batch; returns ``tokens``, ``loss_weight`` (1 for scored
    tokens, 0 for N and padding), ``units`` (bases/bytes per token) and ``softmasked``."""
    rows = [row[row != unit_pad_id] for row in batch["tokens"].numpy()]
    encoded = encode_windows(tokenizer, rows)
    length = max(1, max(len(t) for t in encoded))
    tokens = np.full((len(rows), length), tokenizer.pad_id, dtype=np.int64)
    for i, ids in enumerate(encoded):
        tokens[i, : len(ids)] = ids
    units = tokenizer.token_units[tokens]
    scored = (tokens != tokenizer.pad_id) & ~np.isin(tokens, tokenizer.unscored_ids)
    return {
        "tokens": torch.from_numpy(tokens),
        "loss_weight": torch.from_numpy(scored.astype(np.float32)),
        "units": torch.from_numpy(units),
        "softmasked": torch.zeros(tokens.shape, dtype=torch.bool),
    }


class TokenizedStream:
    """Wraps a resumable unit-batch stream (``WindowLoader``) and tokenizes each batch."""

    def __init__(self, stream: Any, tokenizer: WindowTokenizer, unit_pad_id: int) -> None:
        self.stream, self.tokenizer, self.unit_pad_id = stream, tokenizer, unit_pad_id

    def __iter__(self) -> TokenizedStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        return tokenize_batch(next(self.stream), self.tokenizer, self.unit_pad_id)

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)
