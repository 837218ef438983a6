"""Tokenizer behaviour: exact k-mer ids, round trips, N handling, BPE on the training split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hnet_dna.baselines.tokenizers import (
    BPETokenizer,
    KmerTokenizer,
    UnitTokenizer,
    bytes_to_unicode,
    text_training_chunks,
    utf8_edges,
)
from hnet_dna.genomics.alphabet import N, encode

DATA = Path(__file__).resolve().parents[1] / "data"


def test_kmer_ids_by_hand():
    tok = KmerTokenizer(3)
    # ACG T | N | ACG TAC T | N N | GGG GGG C
    units = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 3, 4, 4, 2, 2, 2, 2, 2, 2, 1])
    single = 64  # 4**3: single bases A..N follow the k-mers
    expected = [6, single + 3, single + 4, 6, 3 * 16 + 1, single + 3, single + 4, single + 4,
                42, 42, single + 1]
    assert tok.encode(units).tolist() == expected
    assert tok.token_units[tok.encode(units)].tolist() == [3, 1, 1, 3, 3, 1, 1, 1, 3, 3, 1]
    assert tok.unscored_ids == (single + N,)
    assert tok.vocab_size == 64 + 5 + 2


@pytest.mark.parametrize("k", [1, 2, 6])
def test_kmer_round_trip_random_windows(k):
    tok = KmerTokenizer(k)
    rng = np.random.default_rng(k)
    for _ in range(100):
        units = rng.integers(0, 4, rng.integers(0, 40))
        units[rng.random(units.size) < 0.15] = N  # scattered N and runs of every length
        tokens = tok.encode(units)
        np.testing.assert_array_equal(tok.decode(tokens), units)
        assert tok.token_units[tokens].sum() == units.size
        # N is always its own token, so unscored tokens are exactly the N bases.
        assert np.isin(tokens, tok.unscored_ids).sum() == (units == N).sum()


def test_kmer_rejects_special_ids_and_pad_decode():
    tok = KmerTokenizer(6)
    with pytest.raises(ValueError, match="base ids"):
        tok.encode(np.array([0, 5]))
    with pytest.raises(ValueError, match="PAD/BOS"):
        tok.decode(np.array([tok.pad_id]))


def test_unit_tokenizer_is_identity_with_zero_length_specials():
    tok = UnitTokenizer(16, pad_id=5, bos_id=6, unscored_ids=(N,))
    units = np.array([0, 3, 4, 2])
    np.testing.assert_array_equal(tok.decode(tok.encode(units)), units)
    assert tok.token_units[[0, 4, 5, 6]].tolist() == [1, 1, 0, 0]


def _dna(seq: str) -> np.ndarray:
    return encode(seq)[0].astype(np.int64)


def test_dna_bpe_learns_training_repeats_and_isolates_n(tmp_path):
    train = ["ACGTTGCA" * 40 + "N" * 3 + "ACGTTGCA" * 40 for _ in range(20)]
    tok = BPETokenizer.train(train, "dna", vocab_size=40)
    vocab = tok.hf.get_vocab()
    assert "ACGTTGCA" in vocab  # merges come from the training text
    assert not any("N" in t and t != "N" for t in vocab)  # N never merges
    units = _dna("GGGGACGTTGCANNACGTTGCAT")
    tokens = tok.encode(units)
    np.testing.assert_array_equal(tok.decode(tokens), units)
    assert tok.token_units[tokens].sum() == units.size
    assert np.isin(tokens, tok.unscored_ids).sum() == 2
    reloaded = BPETokenizer.load(tok.save(tmp_path / "bpe"))
    assert reloaded.encode(units).tolist() == tokens.tolist()


def test_byte_bpe_round_trips_windows_cut_inside_characters():
    data = (DATA / "songci_head.txt").read_bytes()
    data += (DATA / "tinyshakespeare_head.txt").read_bytes()
    tok = BPETokenizer.train(text_training_chunks(data, 512), "text", vocab_size=600)
    assert tok.vocab_size == 600
    multibyte_cut = 0
    for start in range(0, len(data) - 64, 7):
        window = np.frombuffer(data[start : start + 64], dtype=np.uint8)
        head, tail = utf8_edges(window.tobytes())
        multibyte_cut += head > 0 or tail > 0
        tokens = tok.encode(window)
        np.testing.assert_array_equal(tok.decode(tokens), window)
        assert tok.token_units[tokens].sum() == window.size
    assert multibyte_cut > 10  # the Chinese part really cuts characters at window edges
    assert len(tok.encode(np.frombuffer(b"the king and the queen", dtype=np.uint8))) < 22


def test_utf8_edges_by_hand():
    zh = "宋词".encode()  # two 3-byte characters
    assert utf8_edges(zh) == (0, 0)
    assert utf8_edges(zh[1:]) == (2, 0)  # starts inside the first character
    assert utf8_edges(zh[:-1]) == (0, 2)  # ends inside the second
    assert utf8_edges(b"ab" + zh[:4]) == (0, 1)
    assert utf8_edges(b"plain") == (0, 0)


def test_byte_alphabet_matches_hf_byte_level():
    from tokenizers import pre_tokenizers

    assert set(bytes_to_unicode().values()) == set(pre_tokenizers.ByteLevel.alphabet())


def test_training_chunks_cut_at_characters():
    data = "ab宋词cd".encode()
    chunks = list(text_training_chunks(data, chunk=3))
    assert "".join(chunks) == "ab宋词cd"
    assert list(text_training_chunks(data[1:-1] + "宋".encode()[:1], chunk=4))[-1].endswith("c")
