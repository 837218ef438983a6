"""Token batches from unit windows, and bits per base measured on the same bases for any model.

A unit window (bases or bytes, right-padded) is tokenized on its own; the token model reads
``[BOS, t0 .. t_{m-2}]`` and is scored on ``t0 .. t_{m-1}``. The window's bits per base are the
summed NLL (bits) of its scored tokens divided by the units they cover. With the unit tokenizer
this is exactly ``hnet_dna.training.heldout.heldout_bits`` (tested), so every model is scored on
the same bases: base-level N and padding are unscored, and N is a single unscored token in every
tokenizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from hnet_dna.baselines.tokenizers import WindowTokenizer, encode_windows
from hnet_dna.genomics.framing import shift_right
from hnet_dna.training.losses import LN2, routing_counts, token_nll


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


@torch.no_grad()
def window_bits(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    tokenizer: WindowTokenizer,
    unit_pad_id: int,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, float]:
    """Held-out bits per unit over tiled unit windows, plus the realised compression.

    Returns ``bpb`` (bits per scored base/byte), ``bases`` (scored units), ``bases_per_token``
    (all non-padding units / tokens at stage 0) and, for H-Nets, ``compression_s{s}`` (stage-s
    tokens per stage-(s+1) token) measured on these windows.
    """
    was_training = model.training
    model.eval()
    bits = units = all_units = tokens_seen = 0.0
    stage_counts: list[list[float]] = []
    for batch in batches:
        tb = tokenize_batch(batch, tokenizer, unit_pad_id)
        tokens = tb["tokens"].to(device)
        inputs, mask = shift_right(tokens, tokenizer.bos_id, tokenizer.pad_id)
        with autocast():
            output = model(inputs, mask=mask)
        token_bits = token_nll(output.logits, tokens).double() / LN2
        scored = tb["loss_weight"].to(device) > 0
        real = tokens != tokenizer.pad_id
        token_units = tb["units"].to(device).double()
        bits += float(token_bits[scored].sum())
        units += float(token_units[scored].sum())
        all_units += float(token_units[real].sum())
        tokens_seen += float(real.sum())
        for s, routing in enumerate(output.routing):
            valid, chunks = routing_counts(routing)
            if len(stage_counts) <= s:
                stage_counts.append([0.0, 0.0])
            stage_counts[s][0] += float(valid)
            stage_counts[s][1] += float(chunks)
    model.train(was_training)
    result = {
        "bpb": bits / units if units else float("nan"),
        "bases": units,
        "bases_per_token": all_units / tokens_seen if tokens_seen else float("nan"),
    }
    for s, (valid, chunks) in enumerate(stage_counts):
        result[f"compression_s{s}"] = valid / chunks if chunks else float("nan")
    return result
