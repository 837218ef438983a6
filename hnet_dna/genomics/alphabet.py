"""Nucleotide alphabet: token ids, vectorised encode/decode, reverse complement.

Ids are fixed by docs/architecture.md: A=0, C=1, G=2, T=3, N=4, PAD=5, BOS=6, EOS=7, MASK=8,
``VOCAB_SIZE = 16``. Encoding is a 256-entry lookup table applied to the raw bytes, so a window
of any length costs two numpy gathers and no per-base Python work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hnet_dna.errors import InputError

A, C, G, T, N, PAD, BOS, EOS, MASK = range(9)
VOCAB_SIZE = 16  # 9 used ids, rounded up so embedding tables stay aligned
BASES = "ACGTN"
# IUPAC ambiguity codes: the model only distinguishes ACGT, so any ambiguity becomes N (and
# gets loss weight 0 downstream), which is how HyenaDNA/Caduceus treat non-ACGT symbols.
AMBIGUITY_CODES = "NRYKMSWBDHV"
# the codes other than N: a FASTA using them carries information the model cannot see, so they
# are counted (``count_ambiguity``) and reported by ``Genome.ambiguity_counts``
PARTIAL_CODES = AMBIGUITY_CODES[1:]

_INVALID = 255


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    encode = np.full(256, _INVALID, dtype=np.uint8)
    for i, base in enumerate("ACGT"):
        encode[ord(base)] = encode[ord(base.lower())] = i
    for code in AMBIGUITY_CODES:
        encode[ord(code)] = encode[ord(code.lower())] = N
    lower = np.zeros(256, dtype=bool)
    lower[np.frombuffer(b"acgtn" + AMBIGUITY_CODES.lower().encode(), dtype=np.uint8)] = True
    return encode, lower


ENCODE_TABLE, SOFTMASK_TABLE = _build_tables()
ENCODE_TABLE.flags.writeable = False
SOFTMASK_TABLE.flags.writeable = False

# Complement of an ACGT id is 3 - id; every other id is its own complement.
COMPLEMENT = np.arange(VOCAB_SIZE, dtype=np.int64)
COMPLEMENT[:4] = 3 - COMPLEMENT[:4]
COMPLEMENT.flags.writeable = False
_COMPLEMENT_TORCH = torch.from_numpy(COMPLEMENT.copy())

_DECODE = np.frombuffer(BASES.encode(), dtype=np.uint8)


class InvalidBaseError(InputError):
    """A character that is neither a base nor an IUPAC code; ``position`` is 0-based."""

    def __init__(self, char: str, position: int) -> None:
        super().__init__(f"invalid base {char!r} at position {position}")
        self.char = char
        self.position = position


@dataclass(frozen=True)
class Vocabulary:
    """The token ids every layer agrees on: windows (padding, unscored ids, complement), the
    framing ``[BOS, ids, PAD]``, the trainer and scorer (unscored ids), and the model folder
    (``name`` and ``tokens``, recorded in each checkpoint's config.json)."""

    size: int
    pad_id: int
    bos_id: int
    eos_id: int | None = None
    unscored_ids: tuple[int, ...] = ()  # never scored, besides padding (N for DNA)
    complement: np.ndarray | None = field(default=None, compare=False)  # None: no reverse strand
    name: str = ""
    tokens: Mapping[str, int] = field(default_factory=dict, compare=False)

    def for_model_folder(self) -> dict[str, Any] | None:
        """What a model folder records about its vocabulary (None when tokens are unnamed)."""
        return {"name": self.name, "tokens": dict(self.tokens)} if self.tokens else None


DNA_VOCAB = Vocabulary(
    VOCAB_SIZE, PAD, BOS, EOS, unscored_ids=(N,), complement=COMPLEMENT, name="dna",
    tokens={"A": A, "C": C, "G": G, "T": T, "N": N, "PAD": PAD, "BOS": BOS, "EOS": EOS,
            "MASK": MASK},
)


def as_bytes(seq: str | bytes | np.ndarray) -> np.ndarray:
    """View ``seq`` as a uint8 array of ASCII codes (no copy for bytes/uint8 input)."""
    if isinstance(seq, np.ndarray):
        if seq.dtype != np.uint8:
            raise TypeError(f"expected a uint8 array of ASCII codes, got dtype {seq.dtype}")
        return seq
    if isinstance(seq, str):
        try:
            seq = seq.encode("ascii")
        except UnicodeEncodeError as err:
            raise InvalidBaseError(seq[err.start], err.start) from None
    return np.frombuffer(seq, dtype=np.uint8)


def encode(seq: str | bytes | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encode a nucleotide string to ``(ids uint8, softmasked bool)``.

    Lowercase letters are soft-masked (repeats in RefSeq/UCSC assemblies). Raises
    :class:`InvalidBaseError` at the first character that is not ACGT or an IUPAC code.
    """
    raw = as_bytes(seq)
    ids = ENCODE_TABLE[raw]
    bad = np.flatnonzero(ids == _INVALID)
    if bad.size:
        pos = int(bad[0])
        raise InvalidBaseError(chr(raw[pos]), pos)
    return ids, SOFTMASK_TABLE[raw]


def count_ambiguity(seq: str | bytes | np.ndarray) -> dict[str, int]:
    """``{code: count}`` of the IUPAC codes other than N (case folded) in ``seq``; zeros left out.

    One ``bincount`` over the raw bytes, so counting a chromosome costs one pass.
    """
    counts = np.bincount(as_bytes(seq), minlength=256)
    out = {code: int(counts[ord(code)] + counts[ord(code.lower())]) for code in PARTIAL_CODES}
    return {code: n for code, n in out.items() if n}


def decode(ids: np.ndarray | torch.Tensor | list[int]) -> str:
    """Decode base ids (0-4) to an uppercase string; any special id is an error."""
    arr = np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids, dtype=np.int64)
    bad = np.flatnonzero((arr < 0) | (arr > N))
    if bad.size:
        pos = int(bad[0])
        raise ValueError(f"id {int(arr[pos])} at position {pos} is not a base (0-{N})")
    return _DECODE[arr].tobytes().decode("ascii")


_COMPLEMENT_TEXT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def reverse_complement_text(seq: str) -> str:
    """Reverse complement of a nucleotide string, case kept (other letters kept as they are)."""
    return seq[::-1].translate(_COMPLEMENT_TEXT)


def reverse_complement(ids: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Reverse complement along the last axis; works on numpy arrays and torch tensors."""
    if isinstance(ids, torch.Tensor):
        table = _COMPLEMENT_TORCH.to(ids.device)
        return table[ids.long().flip(-1)].to(ids.dtype)
    return COMPLEMENT[ids[..., ::-1]].astype(ids.dtype, copy=False)
