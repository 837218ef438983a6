"""k-mer count features: the classical baseline every DNA LM probe is compared against.

Features are sparse (``scipy.sparse`` CSR): a 200-base window has at most ~600 distinct 4-6-mers
among the 5,376 columns. The probe scales them per column without centring (which keeps them
sparse and, with an unpenalised intercept, fits the same model as standardising), so a
logistic regression on them takes seconds where the dense standardised matrix took many minutes
(issue 12 §4).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from hnet_dna.errors import InputError
from hnet_dna.genomics.alphabet import encode

#: k beyond this gives 4**k columns that no task has the data to fit (k=14: 268 M columns)
MAX_K = 8


def kmer_dim(ks: Sequence[int]) -> int:
    return sum(4**k for k in ks)


def check_ks(ks: Sequence[int]) -> list[int]:
    """Validate k values (1..MAX_K, no repeats)."""
    ks = list(ks)
    bad = [k for k in ks if not 1 <= k <= MAX_K]
    if not ks or bad or len(set(ks)) != len(ks):
        raise InputError(f"--kmer-k must be distinct values in 1..{MAX_K}, got {ks}")
    return ks


def _codes(ids: np.ndarray, k: int) -> np.ndarray:
    """Lexicographic codes (A < C < G < T) of the k-mers of ``ids`` without N."""
    if len(ids) < k:
        return np.zeros(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(ids.astype(np.int64), k)
    valid = (windows < 4).all(1)
    return windows[valid] @ (4 ** np.arange(k - 1, -1, -1))


def kmer_counts(seq: str | np.ndarray, k: int) -> np.ndarray:
    """Counts of the ``4**k`` k-mers (lexicographic, A < C < G < T) of one sequence; k-mers
    containing N (or any ambiguity code) are not counted."""
    ids = encode(seq)[0] if isinstance(seq, str) else np.asarray(seq)
    return np.bincount(_codes(ids, k), minlength=4**k).astype(np.float64)


def kmer_features(sequences: Sequence[str], ks: Sequence[int] = (4, 5, 6),
                  normalize: bool = True) -> sparse.csr_matrix:
    """``(n, sum 4**k)`` sparse float64 k-mer counts, blocks concatenated in ``ks`` order.

    ``normalize``: each k block divided by its total count (frequencies), so sequences of
    different lengths are comparable (a block without any k-mer stays zero).
    """
    ks = check_ks(ks)
    # one pass over all sequences joined by N: no k-mer spans two of them
    ids = encode("N".join(sequences))[0] if len(sequences) else np.zeros(0, np.uint8)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]) if len(sequences) else lengths
    rows, cols, weights = [], [], []
    offset = 0
    for k in ks:
        if len(ids) >= k:
            windows = np.lib.stride_tricks.sliding_window_view(ids, k)
            valid = np.flatnonzero((windows < 4).all(1))
            codes = windows[valid].astype(np.int64) @ (4 ** np.arange(k - 1, -1, -1))
            row = np.searchsorted(starts, valid, side="right") - 1
            per_row = np.bincount(row, minlength=len(sequences)).astype(np.float64)
            rows.append(row)
            cols.append(codes + offset)
            weights.append(1.0 / per_row[row] if normalize else np.ones(len(row)))
        offset += 4**k
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    data = np.concatenate(weights) if weights else np.zeros(0)
    out = sparse.csr_matrix((data, (row, col)), shape=(len(sequences), offset))
    out.sum_duplicates()
    return out
