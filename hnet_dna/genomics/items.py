"""From packed base codes to window items (tokens, loss weights, soft-mask flags), in bulk.

A base is packed as ``code = id + P * softmasked``, ``P`` the vocabulary size rounded up to a
power of two (16 for DNA, so one byte per base). Tokens of either strand, loss weights and flags
are then gathers from small tables. Windows are built a group at a time: their codes are copied
into one ``(k, L)`` index array (reversed, and shifted to the minus-strand half of the tables,
for reverse-complemented windows), and each table is gathered once for the whole group, so the
per-window Python work is a slice copy and a dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .alphabet import Vocab


class CodeTables:
    """Lookup tables from packed codes to tokens, loss weights and flags.

    Table index ``code`` is the plus strand, ``code + minus_offset`` the complement.
    """

    def __init__(self, vocab: Vocab, softmask_weight: float) -> None:
        self.period = 1 << max(int(vocab.size - 1).bit_length(), 1)
        size = 2 * self.period
        self.dtype = np.uint8 if size <= 256 else np.uint16
        self.minus_offset = size
        self.pad_code = vocab.pad_id
        base = np.arange(size) % self.period
        soft = np.arange(size) >= self.period
        weight = np.ones(self.period, dtype=np.float32)
        weight[list(vocab.zero_weight_ids) + [vocab.pad_id]] = 0.0
        minus = base.copy()
        if vocab.complement is not None:
            comp = np.asarray(vocab.complement, dtype=np.int64)
            known = base < len(comp)
            minus[known] = comp[base[known]]
        w = weight[base]
        # soft-masked bases with a positive weight get softmask_weight (N stays 0)
        w_soft = np.where(soft & (w > 0), np.float32(softmask_weight), w).astype(np.float32)
        self.tokens = np.concatenate((base, minus)).astype(np.int64)
        self.weight = np.concatenate((w_soft, w_soft))
        self.soft = np.concatenate((soft, soft))
        self.zero = w == 0  # what max_n_fraction counts (indexed by plain codes)

    def pack(self, ids: np.ndarray, softmasked: np.ndarray) -> np.ndarray:
        """Codes of ``(ids, softmasked)`` as returned by ``fetch_encoded``."""
        code = ids.astype(self.dtype)
        code[softmasked] += self.dtype(self.period)
        return code


def build(codes: Sequence[np.ndarray], minus: Sequence[bool], window: int, tables: CodeTables
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(tokens, loss_weight, softmasked)``, each ``(k, window)``, for ``k`` windows with these
    codes and strands. A window shorter than ``window`` (the last tile of an interval) is
    right-padded with PAD (weight 0)."""
    if all(len(code) == window for code in codes):  # random windows: no per-row work
        index = np.stack(codes).astype(np.intp)
        flip = np.flatnonzero(minus)
        if flip.size:
            index[flip] = index[flip, ::-1] + tables.minus_offset
    else:
        index = np.empty((len(codes), window), dtype=np.intp)
        for row, code, m in zip(index, codes, minus, strict=True):
            n = len(code)
            if m:
                np.add(code[::-1], tables.minus_offset, out=row[:n], dtype=np.intp)
            else:
                row[:n] = code
            row[n:] = tables.pad_code
    tokens, weight, soft = (torch.from_numpy(table.take(index))
                            for table in (tables.tokens, tables.weight, tables.soft))
    return tokens, weight, soft


__all__ = ["CodeTables", "build"]
