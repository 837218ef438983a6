import re

import numpy as np
import pytest
import torch
from Bio.Seq import Seq
from hypothesis import given
from hypothesis import strategies as st

from hnet_dna.genomics import alphabet as ab


def test_ids_match_architecture_contract():
    assert (ab.A, ab.C, ab.G, ab.T, ab.N) == (0, 1, 2, 3, 4)
    assert (ab.PAD, ab.BOS, ab.EOS, ab.MASK) == (5, 6, 7, 8)
    assert ab.VOCAB_SIZE == 16
    assert ab.COMPLEMENT[:4].tolist() == [3, 2, 1, 0]
    assert ab.COMPLEMENT[4:9].tolist() == [4, 5, 6, 7, 8]


def test_encode_case_and_softmask():
    ids, soft = ab.encode("ACGTNacgtn")
    assert ids.tolist() == [0, 1, 2, 3, 4] * 2
    assert soft.tolist() == [False] * 5 + [True] * 5
    assert ids.dtype == np.uint8


def test_iupac_codes_become_n():
    ids, soft = ab.encode("RYKMSWBDHVryk")
    assert set(ids.tolist()) == {ab.N}
    assert soft.tolist() == [False] * 10 + [True] * 3


@pytest.mark.parametrize(
    ("seq", "msg"),
    [("ACGX", "invalid base 'X' at position 3"), ("AC-GT", "invalid base '-' at position 2"),
     ("ACéT", "invalid base 'é' at position 2"), ("A\nC", "invalid base '\\n' at position 1")],
)
def test_encode_rejects_invalid_with_position(seq, msg):
    with pytest.raises(ab.InvalidBaseError, match=f"^{re.escape(msg)}$") as info:
        ab.encode(seq)
    assert info.value.position == int(msg.rsplit(" ", 1)[1])


def test_roundtrip_and_reverse_complement_on_real_chromosome(scer_seq):
    ids, soft = ab.encode(scer_seq)
    assert ab.decode(ids) == scer_seq.upper()
    assert soft.sum() == sum(c.islower() for c in scer_seq)
    # Biopython is the independent oracle for the reverse complement
    expected = str(Seq(scer_seq.upper()).reverse_complement())
    assert ab.decode(ab.reverse_complement(ids)) == expected
    t = torch.from_numpy(ids.astype(np.int64))
    assert ab.decode(ab.reverse_complement(t)) == expected
    # the text form keeps soft-masking (case); Biopython keeps case too
    assert ab.reverse_complement_text(scer_seq) == str(Seq(scer_seq).reverse_complement())


def test_reverse_complement_keeps_specials_and_batches():
    x = torch.tensor([[ab.BOS, ab.A, ab.C, ab.N, ab.PAD], [ab.G, ab.G, ab.T, ab.MASK, ab.EOS]])
    rc = ab.reverse_complement(x)
    assert rc.tolist() == [[ab.PAD, ab.N, ab.G, ab.T, ab.BOS],
                           [ab.EOS, ab.MASK, ab.A, ab.C, ab.C]]
    assert rc.dtype == x.dtype


@given(st.lists(st.integers(0, 8), max_size=64))
def test_reverse_complement_is_an_involution(ids):
    arr = np.array(ids, dtype=np.int64)
    assert ab.reverse_complement(ab.reverse_complement(arr)).tolist() == ids


def test_decode_rejects_special_ids():
    with pytest.raises(ValueError, match=r"^id 5 at position 2 is not a base \(0-4\)$"):
        ab.decode([0, 1, ab.PAD])
