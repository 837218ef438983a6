"""Window tokenizers for the token-level baselines: identity (base/byte), k-mer, BPE.

Every tokenizer maps the *unit ids* of one window (nucleotide ids A=0..N=4 of
``hnet_dna.genomics.alphabet``, or raw UTF-8 bytes for text) to LM token ids and back, and knows
how many units each token covers. That is what makes bits per base comparable: a token model's
NLL over a window, divided by the units its scored tokens cover, is measured on exactly the
units a base-level model scores in the same window.

* :class:`UnitTokenizer`: one token per base/byte (the H-Net and isotropic base-level models).
* :class:`KmerTokenizer`: non-overlapping k-mers (Nucleotide Transformer); N and the tail of an
  ACGT run that does not fill a k-mer are single-base tokens.
* :class:`BPETokenizer`: HF ``tokenizers`` BPE trained on the training split only; DNA BPE keeps
  every N a token of its own, text BPE is byte-level (GPT-2 style).

Tokens whose ids are in ``unscored_ids`` (N) are never scored, exactly like N bases at base
level, so both sides leave out the same bases.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from hnet_dna.genomics import alphabet
from hnet_dna.genomics.alphabet import BASES, N, Vocabulary

PAD_TOKEN, BOS_TOKEN = "[PAD]", "[BOS]"
TOKENIZER_FILE = "tokenizer.json"


class WindowTokenizer(ABC):
    """Unit ids of one window -> token ids (and back); see the module docstring."""

    name: str
    vocab_size: int  # LM vocabulary including PAD and BOS
    pad_id: int
    bos_id: int
    unscored_ids: tuple[int, ...] = ()

    @abstractmethod
    def encode(self, units: np.ndarray) -> np.ndarray:
        """Unit ids ``(n,)`` (no padding) -> token ids int64 ``(m,)``."""

    @abstractmethod
    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Token ids -> unit ids int64; ``decode(encode(u)) == u``."""

    @property
    @abstractmethod
    def token_units(self) -> np.ndarray:
        """Units (bases/bytes) covered by each token id, int64 ``(vocab_size,)``; 0 for PAD/BOS."""

    @property
    def vocabulary(self) -> Vocabulary:
        """The LM's token ids (what the trainer and the scorer need)."""
        return Vocabulary(self.vocab_size, self.pad_id, self.bos_id,
                          unscored_ids=tuple(self.unscored_ids), name=self.name)

    def config(self) -> dict:
        """Enough to rebuild the tokenizer (plus its saved files, for BPE)."""
        return {"name": self.name}

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer_config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        return folder


# --------------------------------------------------------------------------- unit level
class UnitTokenizer(WindowTokenizer):
    """Identity: one token per base (DNA ids) or byte; the vocabulary is the data layer's."""

    def __init__(self, vocab_size: int, pad_id: int, bos_id: int, unscored_ids=()) -> None:
        self.name = "unit"
        self.vocab_size, self.pad_id, self.bos_id = vocab_size, pad_id, bos_id
        self.unscored_ids = tuple(unscored_ids)
        units = np.ones(vocab_size, dtype=np.int64)
        units[[pad_id, bos_id]] = 0
        self._units = units

    def encode(self, units: np.ndarray) -> np.ndarray:
        return np.asarray(units, dtype=np.int64).copy()

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        return np.asarray(tokens, dtype=np.int64).copy()

    @property
    def token_units(self) -> np.ndarray:
        return self._units

    def config(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, "pad_id": self.pad_id,
                "bos_id": self.bos_id, "unscored_ids": list(self.unscored_ids)}


# --------------------------------------------------------------------------- k-mers
class KmerTokenizer(WindowTokenizer):
    """Non-overlapping k-mers over ACGT runs (Nucleotide Transformer tokenization).

    Ids: ``0 .. 4**k - 1`` are k-mers (base-4 number, first base most significant), then the five
    single bases A, C, G, T, N, then PAD and BOS. A run of ACGT of length r becomes ``r // k``
    k-mers followed by ``r % k`` single bases; every N is a single token (unscored).
    """

    def __init__(self, k: int = 6) -> None:
        if not 1 <= k <= 10:
            raise ValueError(f"k must be in 1..10 (vocabulary 4**k), got {k}")
        self.name = f"kmer{k}"
        self.k = k
        self.num_kmers = 4**k
        self.single_offset = self.num_kmers  # single base b has id num_kmers + b (b in 0..4)
        self.pad_id = self.num_kmers + 5
        self.bos_id = self.num_kmers + 6
        self.vocab_size = self.num_kmers + 7
        self.unscored_ids = (self.single_offset + N,)
        units = np.ones(self.vocab_size, dtype=np.int64)
        units[: self.num_kmers] = k
        units[[self.pad_id, self.bos_id]] = 0
        self._units = units
        # (vocab, k) table of the bases of each token, used by decode.
        digits = (np.arange(self.num_kmers)[:, None] // 4 ** np.arange(k - 1, -1, -1)) % 4
        table = np.zeros((self.vocab_size, k), dtype=np.int64)
        table[: self.num_kmers] = digits
        table[self.single_offset : self.single_offset + 5, 0] = np.arange(5)
        self._table = table

    def encode(self, units: np.ndarray) -> np.ndarray:
        ids = np.asarray(units, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() > N):
            raise ValueError(f"k-mer tokenizer expects base ids 0..{N} (A, C, G, T, N)")
        n, k = ids.size, self.k
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        acgt = ids < N
        # Offset of each base inside its ACGT run, and the length of that run (vectorised).
        idx = np.arange(n)
        run_start = np.maximum.accumulate(np.where(acgt & ~_shift_right(acgt), idx, 0))
        offset = idx - run_start
        run_id = np.cumsum(acgt & ~_shift_right(acgt)) - 1
        run_len = np.bincount(run_id[acgt], minlength=max(int(run_id.max()) + 1, 1))
        full = np.where(acgt, (run_len[np.maximum(run_id, 0)] // k) * k, 0)
        kmer_start = acgt & (offset < full) & (offset % k == 0)
        single = ~acgt | (offset >= full)  # N, or an ACGT base in the tail of its run
        starts = np.flatnonzero(kmer_start | single)
        padded = np.concatenate([ids, np.zeros(k - 1, dtype=np.int64)])
        windows = np.lib.stride_tricks.sliding_window_view(padded, k)[starts]
        kmer_value = windows @ (4 ** np.arange(k - 1, -1, -1))
        return np.where(kmer_start[starts], kmer_value, self.single_offset + ids[starts])

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        lengths = self._units[tokens]
        if (lengths == 0).any():
            raise ValueError("cannot decode PAD/BOS tokens")
        keep = np.arange(self.k)[None, :] < lengths[:, None]
        return self._table[tokens][keep]

    @property
    def token_units(self) -> np.ndarray:
        return self._units

    def config(self) -> dict:
        return {"name": self.name, "k": self.k}


def _shift_right(x: np.ndarray) -> np.ndarray:
    return np.concatenate([[False], x[:-1]])


# --------------------------------------------------------------------------- BPE
@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the ByteLevel alphabet)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def utf8_edges(data: bytes) -> tuple[int, int]:
    """``(head, tail)``: bytes at the start / end of ``data`` that belong to characters cut by
    the window edges (a window of a UTF-8 file may start or end inside a character)."""
    head = 0
    while head < min(3, len(data)) and 0x80 <= data[head] <= 0xBF:
        head += 1
    tail = 0
    # Walk back at most 3 bytes to the last lead byte; keep it only if its sequence is complete.
    for back in range(1, min(4, len(data) - head) + 1):
        byte = data[-back]
        if byte < 0x80:
            break
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            tail = back if back < need else 0
            break
    return head, tail


class BPETokenizer(WindowTokenizer):
    """A trained HF ``tokenizers`` BPE over DNA bases (``kind="dna"``) or bytes (``"text"``).

    DNA: characters ``ACGTN``, every N pre-split into its own token. Text: byte-level BPE (GPT-2
    pre-tokenization); bytes of a character cut by the window edge are single-byte tokens, so
    any byte window round-trips.
    """

    def __init__(self, tokenizer: Tokenizer, kind: str) -> None:
        if kind not in ("dna", "text"):
            raise ValueError(f"BPE kind must be 'dna' or 'text', got {kind!r}")
        self.name = f"bpe{tokenizer.get_vocab_size()}"
        self.kind = kind
        self.hf = tokenizer
        vocab = tokenizer.get_vocab()
        self.vocab_size = len(vocab)
        self.pad_id, self.bos_id = vocab[PAD_TOKEN], vocab[BOS_TOKEN]
        pieces: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * self.vocab_size
        for token, index in vocab.items():
            if token not in (PAD_TOKEN, BOS_TOKEN):
                pieces[index] = self._token_units_of(token)
        self._pieces = pieces
        self._units = np.array([len(p) for p in pieces], dtype=np.int64)
        if kind == "dna":
            n_id = vocab.get("N")
            self.unscored_ids = () if n_id is None else (n_id,)
            self._char_ids = {c: i for i, c in enumerate(BASES)}
        else:
            self.unscored_ids = ()
            self._byte_ids = np.array([vocab[bytes_to_unicode()[b]] for b in range(256)])

    def _token_units_of(self, token: str) -> np.ndarray:
        if self.kind == "dna":
            return np.array([BASES.index(c) for c in token], dtype=np.int64)
        inverse = {c: b for b, c in bytes_to_unicode().items()}
        return np.array([inverse[c] for c in token], dtype=np.int64)

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls, texts: Iterable[str], kind: str, vocab_size: int = 4096
    ) -> BPETokenizer:
        """Train on ``texts`` (the training split only: windows for DNA, text chunks for text)."""
        if kind == "dna":
            tok = Tokenizer(models.BPE())
            # Each N is its own pre-token: BPE never merges it, so N stays one unscored token.
            tok.pre_tokenizer = pre_tokenizers.Split(Regex("N"), behavior="isolated")
            initial = list(BASES)
        elif kind == "text":
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
            tok.decoder = decoders.ByteLevel()
            initial = pre_tokenizers.ByteLevel.alphabet()
        else:
            raise ValueError(f"BPE kind must be 'dna' or 'text', got {kind!r}")
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[PAD_TOKEN, BOS_TOKEN],
            initial_alphabet=initial,
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok, kind)

    @classmethod
    def load(cls, folder: str | Path) -> BPETokenizer:
        folder = Path(folder)
        config = json.loads((folder / "tokenizer_config.json").read_text())
        return cls(Tokenizer.from_file(str(folder / TOKENIZER_FILE)), config["kind"])

    def save(self, folder: str | Path) -> Path:
        folder = super().save(folder)
        self.hf.save(str(folder / TOKENIZER_FILE))
        return folder

    def config(self) -> dict:
        return {"name": self.name, "kind": self.kind, "vocab_size": self.vocab_size}

    # ------------------------------------------------------------------ windows
    def encode(self, units: np.ndarray) -> np.ndarray:
        return self.encode_batch([units])[0]

    def encode_batch(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        if self.kind == "dna":
            texts = [alphabet.decode(w) for w in windows]
            return [np.array(e.ids, dtype=np.int64) for e in self.hf.encode_batch(texts)]
        out = []
        raws = [np.asarray(w, dtype=np.uint8).tobytes() for w in windows]
        edges = [utf8_edges(raw) for raw in raws]
        cores = [raw[h : len(raw) - t].decode("utf-8") for raw, (h, t) in zip(raws, edges,
                                                                               strict=True)]
        for raw, (h, t), enc in zip(raws, edges, self.hf.encode_batch(cores), strict=True):
            head = self._byte_ids[np.frombuffer(raw[:h], dtype=np.uint8)]
            tail = self._byte_ids[np.frombuffer(raw[len(raw) - t :], dtype=np.uint8)]
            out.append(np.concatenate([head, np.array(enc.ids, dtype=np.int64), tail]))
        return out

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        if np.isin(tokens, [self.pad_id, self.bos_id]).any():
            raise ValueError("cannot decode PAD/BOS tokens")
        if tokens.size == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([self._pieces[t] for t in tokens])

    @property
    def token_units(self) -> np.ndarray:
        return self._units


def text_training_chunks(data: bytes, chunk: int = 1 << 16) -> Iterator[str]:
    """Valid UTF-8 strings covering ``data`` for BPE training: cut only at character
    boundaries; a character cut by the split's own edges is left out."""
    head, tail = utf8_edges(data)
    data = data[head : len(data) - tail]
    pos = 0
    while pos < len(data):
        end = min(pos + chunk, len(data))
        while end < len(data) and 0x80 <= data[end] <= 0xBF:  # do not cut inside a character
            end += 1
        yield data[pos:end].decode("utf-8")
        pos = end


def encode_windows(tokenizer: WindowTokenizer, windows: list[np.ndarray]) -> list[np.ndarray]:
    """Token ids of each window (batched where the tokenizer supports it)."""
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode_batch(windows)
    return [tokenizer.encode(w) for w in windows]
