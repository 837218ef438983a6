"""k-mer count features: the classical baseline every DNA LM probe is compared against."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hnet_dna.genomics.alphabet import encode


def kmer_dim(ks: Sequence[int]) -> int:
    return sum(4**k for k in ks)


def kmer_counts(seq: str | np.ndarray, k: int) -> np.ndarray:
    """Counts of the ``4**k`` k-mers (lexicographic, A < C < G < T) of one sequence; k-mers
    containing N (or any ambiguity code) are not counted."""
    ids = encode(seq)[0] if isinstance(seq, str) else np.asarray(seq)
    if len(ids) < k:
        return np.zeros(4**k, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(ids.astype(np.int64), k)
    valid = (windows < 4).all(1)
    codes = windows[valid] @ (4 ** np.arange(k - 1, -1, -1))
    return np.bincount(codes, minlength=4**k).astype(np.float64)


def kmer_features(sequences: Sequence[str], ks: Sequence[int] = (4, 5, 6),
                  normalize: bool = True) -> np.ndarray:
    """``(n, sum 4**k)`` float32 features, k-mer blocks concatenated in ``ks`` order.

    ``normalize``: each block divided by its total count (frequencies), so sequences of
    different lengths are comparable.
    """
    out = np.zeros((len(sequences), kmer_dim(ks)), dtype=np.float32)
    for i, seq in enumerate(sequences):
        ids = encode(seq)[0]
        col = 0
        for k in ks:
            c = kmer_counts(ids, k)
            if normalize and c.sum() > 0:
                c = c / c.sum()
            out[i, col:col + 4**k] = c
            col += 4**k
    return out
