import re

import numpy as np
import pytest
from gtestdata import DATA

from hnet_dna.genomics.text import (
    BYTE_VOCAB,
    TEXT_BOS,
    TEXT_PAD,
    TextSource,
    decode_text,
    text_windows,
)

SHAKESPEARE = DATA / "tinyshakespeare_head.txt"
SONGCI = DATA / "songci_head.txt"


def test_vocab_follows_official_byte_tokenizer():
    assert (BYTE_VOCAB.size, TEXT_BOS, BYTE_VOCAB.eos_id, TEXT_PAD) == (256, 254, 255, 0)
    assert BYTE_VOCAB.complement is None


@pytest.mark.parametrize("path", [SHAKESPEARE, SONGCI])
def test_tiles_reassemble_each_split(path):
    data = path.read_bytes()
    src = TextSource(path)
    cuts = [0, round(0.9 * len(data)), round(0.95 * len(data)), len(data)]
    for split, a, b in zip(["train", "valid", "test"], cuts[:-1], cuts[1:], strict=True):
        items = list(text_windows(src, split, 128, mode="tile"))
        assert items[0]["start"] == a and all(i["strand"] == 1 for i in items)
        got = b"".join(bytes(i["tokens"][i["loss_weight"] > 0].tolist()) for i in items)
        assert got == data[a:b]
        last = items[-1]
        n = b - last["start"]
        assert last["tokens"][n:].eq(TEXT_PAD).all() and last["loss_weight"][n:].eq(0).all()
        assert not any(i["softmasked"].any() for i in items)


def test_decode_multibyte_roundtrip():
    src = TextSource(SONGCI)
    ids, _ = src.fetch_encoded(SONGCI.name, 0, src.contigs[SONGCI.name])
    assert decode_text(ids) == SONGCI.read_text(encoding="utf-8")
    assert decode_text(np.array([0xE5, 0xAF])) == "\ufffd"  # truncated 3-byte character


def test_random_text_windows():
    src = TextSource(SHAKESPEARE)
    data = SHAKESPEARE.read_bytes()
    for item in text_windows(src, "train", 64, samples_per_epoch=20, seed=0):
        assert bytes(item["tokens"].tolist()) == data[item["start"]:item["start"] + 64]
        assert item["start"] + 64 <= round(0.9 * len(data))
        assert item["loss_weight"].eq(1).all()
    with pytest.raises(ValueError, match="this vocabulary has no complement"):
        text_windows(src, "train", 64, samples_per_epoch=1, rc_prob=0.5)


def test_bad_text_files(tmp_path):
    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"abc\0def")
    with pytest.raises(ValueError, match=re.escape(
            f"{nul}: NUL byte at offset 3 (id 0 is reserved for padding)")):
        TextSource(nul)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=re.escape(f"{latin}: not UTF-8 at byte offset 3")):
        TextSource(latin)
