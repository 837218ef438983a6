"""Sweep corpora: positional splits, capped held-out blocks, tokenizers see the training split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hnet_dna.baselines.corpus import CorpusSpec, SourceSpec, SweepCorpus, cap_regions
from hnet_dna.baselines.experiment import TokenizerSpec, build_tokenizer
from hnet_dna.genomics.corpora import Corpus
from hnet_dna.genomics.intervals import Interval
from hnet_dna.genomics.text import BYTE_VOCAB

DATA = Path(__file__).resolve().parents[1] / "data"


def _write_fasta(path: Path, seq: str) -> Path:
    path.write_text(">chrA\n" + "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + "\n")
    return path


def test_cap_regions_takes_the_start_of_each_block():
    regions = [("a", [Interval("c", 0, 10), Interval("c", 20, 30)]), ("b", [Interval("d", 5, 50)])]
    capped = cap_regions(regions, 30)  # 15 units per source
    assert capped[0][1] == [Interval("c", 0, 10), Interval("c", 20, 25)]
    assert capped[1][1] == [Interval("d", 5, 20)]
    assert cap_regions(regions, None) is regions


def test_bpe_learns_from_the_training_split_only(tmp_path):
    # Train block: a repeated 8-mer; held-out blocks: a different repeat that BPE must not see.
    seq = "ACGTTGCA" * 1000 + "GGGATCCC" * 250
    fasta = _write_fasta(tmp_path / "toy.fa", seq)
    corpus = SweepCorpus(CorpusSpec("toy", "dna", SourceSpec(fasta=[str(fasta)])))
    assert corpus.splits["train"][0][1] == [Interval("chrA", 0, 8000, "train")]
    tok = build_tokenizer(TokenizerSpec(kind="bpe", vocab_size=40, train_units=None), corpus,
                          context=256, cache_dir=tmp_path / "cache")
    vocab = tok.hf.get_vocab()
    assert "ACGTTGCA" in vocab
    assert not any("GGGA" in t or "ATCC" in t for t in vocab)
    # Cached: the second call loads the same tokenizer from disk.
    again = build_tokenizer(TokenizerSpec(kind="bpe", vocab_size=40, train_units=None), corpus,
                            context=256, cache_dir=tmp_path / "cache")
    assert again.hf.get_vocab() == vocab


def test_text_corpus_windows_and_training_bytes():
    files = [str(DATA / "tinyshakespeare_head.txt"), str(DATA / "songci_head.txt")]
    corpus = SweepCorpus(CorpusSpec("txt", "text", SourceSpec(
        text=files, fractions={"train": 0.9, "valid": 0.05, "test": 0.05})))
    heldout = corpus.eval_windows(window=32, max_units=100)["heldout"]
    units = sum(int((item["tokens"] != 0).sum()) for item in heldout)
    # 50 bytes from the start of each file's held-out block; songci_head (879 bytes) has only
    # round(0.95 * 879) - round(0.9 * 879) = 44 held-out bytes, all taken.
    assert units == 50 + 44
    train = b"".join(corpus.train_text())
    sizes = [len(Path(f).read_bytes()) for f in files]
    assert len(train) == sum(round(0.9 * s) for s in sizes)
    assert train.startswith(Path(files[0]).read_bytes()[:100])
    windows = list(corpus.train_units(window=64, max_units=640))
    assert 10 <= len(windows) <= 12 and all(w.dtype == np.int64 for w in windows)
    # a sweep corpus is a package Corpus: its windows carry the byte vocabulary
    assert isinstance(corpus, Corpus) and corpus.vocab is BYTE_VOCAB
    assert corpus.windows("valid", 32, mode="tile").vocab is BYTE_VOCAB
    assert corpus.bases("valid") == sum(round(0.95 * s) - round(0.9 * s) for s in sizes)
