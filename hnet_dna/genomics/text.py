"""UTF-8 text as byte tokens, for the text side of the data-efficiency comparison.

Ids are raw bytes, with BOS=254 and EOS=255 as in the official H-Net ``ByteTokenizer`` (neither
byte occurs in valid UTF-8). Byte 0 pads windows: a NUL byte in the text would be
indistinguishable from padding, so it is rejected with its offset. Windows come from the same
:class:`~hnet_dna.genomics.windows.WindowDataset` as DNA and have the same keys (``softmasked``
all False, ``strand`` +1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from hnet_dna.errors import InputError

from .alphabet import Vocabulary
from .intervals import split_by_fraction
from .windows import WindowDataset

TEXT_VOCAB_SIZE = 256
TEXT_PAD, TEXT_BOS, TEXT_EOS = 0, 254, 255
BYTE_VOCAB = Vocabulary(TEXT_VOCAB_SIZE, TEXT_PAD, TEXT_BOS, TEXT_EOS, name="bytes",
                        tokens={"PAD": TEXT_PAD, "BOS": TEXT_BOS, "EOS": TEXT_EOS})
TEXT_FRACTIONS: dict[str, float] = {"train": 0.9, "valid": 0.05, "test": 0.05}


class TextSource:
    """A text file held in memory as one "contig" of bytes (``contig`` = file name)."""

    def __init__(self, path: str | os.PathLike, name: str | None = None) -> None:
        self.path = Path(path)
        data = self.path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{self.path}: not UTF-8 at byte offset {err.start}") from None
        nul = data.find(b"\0")
        if nul >= 0:
            raise InputError(f"{self.path}: NUL byte at offset {nul} (id 0 is reserved for "
                             "padding)")
        if not data:
            raise InputError(f"{self.path}: empty text file")
        self.name = name or self.path.stem
        self._bytes = np.frombuffer(data, dtype=np.uint8)
        self.contigs = {self.path.name: len(data)}

    def fetch_encoded(self, contig: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        if contig not in self.contigs or not 0 <= start <= end <= len(self._bytes):
            raise IndexError(f"{self.path}: range {contig}:{start}-{end} outside the file "
                             f"({self.path.name}, {len(self._bytes)} bytes)")
        ids = self._bytes[start:end]
        return ids, np.zeros(len(ids), dtype=bool)


def text_windows(
    source: TextSource,
    split: str,
    window: int,
    fractions: Mapping[str, float] = TEXT_FRACTIONS,
    **kwargs,
) -> WindowDataset:
    """Byte windows over one contiguous split of the file (first 90 % train by default)."""
    blocks = split_by_fraction(source.contigs, fractions)
    if split not in blocks:
        raise KeyError(f"no split {split!r}; splits: {sorted(blocks)}")
    return WindowDataset([(source, blocks[split])], window, vocab=BYTE_VOCAB, **kwargs)


def decode_text(ids: np.ndarray | torch.Tensor) -> str:
    """Bytes back to text (invalid UTF-8 from a truncated window becomes U+FFFD)."""
    arr = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids)
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError("byte ids must lie in 0..255")
    return arr.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
