"""How token windows are given to a model: ``[BOS, ids, PAD ...]`` (docs/architecture.md).

One function frames every batch the package feeds a model. ``frame`` gives the full view used
for scoring and features (position 0 is BOS, position ``i + 1`` holds token ``i``, so the output
at position ``i`` predicts token ``i``); ``shift_right`` is its next-token view for training and
held-out bits, which drops the last column so that inputs and targets have the same length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def frame(rows: Tensor | Sequence[np.ndarray | Tensor], bos_id: int, pad_id: int
          ) -> tuple[Tensor, Tensor]:
    """``(ids, valid)``, both ``(B, W + 1)``: ``ids[b] = [BOS, row_b, PAD ...]`` and ``valid``
    True over BOS and each row's tokens.

    ``rows``: a ``(B, W)`` tensor of right-padded windows (``pad_id`` marks padding), or
    sequences of token ids of any lengths (padded here to the longest, ``W``).
    """
    if isinstance(rows, Tensor):
        tokens = rows.long()
        real = tokens != pad_id
    else:
        if not len(rows):
            raise ValueError("no window to frame")
        width = max(len(r) for r in rows)
        tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
        real = torch.zeros((len(rows), width), dtype=torch.bool)
        for b, row in enumerate(rows):
            tokens[b, :len(row)] = torch.as_tensor(np.asarray(row, dtype=np.int64))
            real[b, :len(row)] = True
    first = torch.ones_like(real[:, :1])
    ids = torch.cat([torch.full_like(tokens[:, :1], bos_id), tokens], dim=1)
    return ids, torch.cat([first, real], dim=1)


def shift_right(tokens: Tensor, bos_id: int, pad_id: int) -> tuple[Tensor, Tensor | None]:
    """Next-token view of ``frame``: inputs ``[BOS, t0 .. t_{L-2}]`` for targets ``tokens``
    ``(B, L)``, and the inputs' validity mask (None when nothing is padded).

    Windows are right-padded, so input position i is valid exactly when target i is not padding.
    """
    ids, valid = frame(tokens, bos_id, pad_id)
    valid = valid[:, 1:]
    return ids[:, :-1], (None if bool(valid.all()) else valid)


__all__ = ["frame", "shift_right"]
