"""From packed base codes to window items (tokens, loss weights, soft-mask flags), in bulk.

A base is packed as ``code = id + P * softmasked``, ``P`` the vocabulary size rounded up to a
power of two (16 for DNA, so one byte per base). Tokens of either strand, loss weights and flags
are then gathers from small tables. Windows are built a group at a time: their codes are copied
into one ``(k, L)`` index array (reversed, and shifted to the minus-strand half of the tables,
for reverse-complemented windows), and each table is gathered once for the whole group, so the
per-window Python work is a slice copy and a dict.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import get_worker_info

from .alphabet import DNA_VOCAB, ENCODE_TABLE, SOFTMASK_TABLE, Vocabulary

INVALID_CODE = 255  # what ``CodeTables.raw`` gives a byte that is not a base (no code is 255)


class CodeTables:
    """Lookup tables from packed codes to tokens, loss weights and flags.

    Table index ``code`` is the plus strand, ``code + minus_offset`` the complement.
    """

    def __init__(self, vocab: Vocabulary, softmask_weight: float) -> None:
        self.period = 1 << max(int(vocab.size - 1).bit_length(), 1)
        size = 2 * self.period
        self.dtype = np.uint8 if size <= 256 else np.uint16
        self.minus_offset = size
        self.pad_code = vocab.pad_id
        base = np.arange(size) % self.period
        soft = np.arange(size) >= self.period
        weight = np.ones(self.period, dtype=np.float32)
        weight[list(vocab.unscored_ids) + [vocab.pad_id]] = 0.0
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
        # DNA: ASCII byte -> code in one gather (a window read from a file is packed without
        # the two gathers and the mask arithmetic of encode + pack)
        self.raw: np.ndarray | None = None
        if vocab == DNA_VOCAB:
            valid = ENCODE_TABLE != INVALID_CODE
            raw = ENCODE_TABLE.astype(np.int64) + self.period * SOFTMASK_TABLE
            self.raw = np.where(valid, raw, INVALID_CODE).astype(self.dtype)

    def read(self, source, contig: str, start: int, end: int) -> np.ndarray:
        """Codes of ``source``'s ``contig[start:end]``: from its ASCII bytes through ``raw``
        when it has them (a ``Genome``), else ``pack(*source.fetch_encoded(...))``; a byte
        that is no base raises the source's own error (file, record, position)."""
        if self.raw is not None and hasattr(source, "fetch_bytes"):
            code = self.raw.take(source.fetch_bytes(contig, start, end))
            if code.size == 0 or code.max() != INVALID_CODE:
                return code
        return self.pack(*source.fetch_encoded(contig, start, end))

    def pack(self, ids: np.ndarray, softmasked: np.ndarray) -> np.ndarray:
        """Codes of ``(ids, softmasked)`` as returned by ``fetch_encoded``."""
        code = ids.astype(self.dtype)
        code[softmasked] += self.dtype(self.period)
        return code


def batch_from_codes(codes: Sequence[np.ndarray], minus: np.ndarray, starts: np.ndarray,
                     window: int, tables: CodeTables) -> dict[str, torch.Tensor]:
    """Batch tensors for ``k`` windows with these codes, strands and genomic starts:
    ``tokens``, ``loss_weight``, ``softmasked`` ``(k, window)`` and ``start``, ``strand``
    ``(k,)`` int64. A window shorter than ``window`` (the last tile of an interval) is
    right-padded with PAD (weight 0).

    All five are views of one storage, allocated in shared memory inside a DataLoader worker:
    the batch then crosses to the main process as one handle, without the copy (and the four
    extra shared-memory segments) that separate tensors would cost.
    """
    k = len(codes)
    fields = _views(k, window)
    if all(len(code) == window for code in codes):  # random windows: no per-row work
        index = np.stack(codes).astype(np.intp)
        flip = np.flatnonzero(minus)
        if flip.size:
            index[flip] = index[flip, ::-1] + tables.minus_offset
    else:
        index = np.empty((k, window), dtype=np.intp)
        for row, code, m in zip(index, codes, minus, strict=True):
            n = len(code)
            if m:
                np.add(code[::-1], tables.minus_offset, out=row[:n], dtype=np.intp)
            else:
                row[:n] = code
            row[n:] = tables.pad_code
    # mode="clip" writes straight into ``out`` (the default mode buffers it); indices are valid
    for name, table in (("tokens", tables.tokens), ("loss_weight", tables.weight),
                        ("softmasked", tables.soft)):
        table.take(index, out=fields[name].numpy(), mode="clip")
    fields["start"].numpy()[:] = starts
    fields["strand"].numpy()[:] = np.where(minus, -1, 1)
    return fields


# field layout in the shared storage: 8-byte fields first, so every view is aligned
_LAYOUT = (("start", torch.int64, False), ("strand", torch.int64, False),
           ("tokens", torch.int64, True), ("loss_weight", torch.float32, True),
           ("softmasked", torch.bool, True))


@functools.lru_cache(maxsize=16)
def _layout(k: int, window: int) -> tuple[int, tuple[tuple[str, torch.dtype, tuple, int, int],
                                                     ...]]:
    """Total bytes and ``(name, dtype, shape, first byte, end byte)`` of each field."""
    fields, at = [], 0
    for name, dtype, per_base in _LAYOUT:
        shape = (k, window) if per_base else (k,)
        size = k * (window if per_base else 1) * dtype.itemsize
        fields.append((name, dtype, shape, at, at + size))
        at += size
    return at, tuple(fields)


def _views(k: int, window: int) -> dict[str, torch.Tensor]:
    nbytes, fields = _layout(k, window)
    if get_worker_info() is None:
        # numpy views + from_numpy: cheaper than slicing and viewing a torch storage per field
        base = np.empty(nbytes, dtype=np.uint8)
        return {name: torch.from_numpy(base[a:b].view(_NUMPY[dtype]).reshape(shape))
                for name, dtype, shape, a, b in fields}
    # in a worker the storage must be torch's own, in shared memory, for one-handle transfer
    shared = torch.empty(nbytes, dtype=torch.uint8).share_memory_()
    return {name: shared[a:b].view(dtype).view(shape) for name, dtype, shape, a, b in fields}


_NUMPY = {torch.int64: np.int64, torch.float32: np.float32, torch.bool: np.bool_}


__all__ = ["CodeTables", "batch_from_codes"]
