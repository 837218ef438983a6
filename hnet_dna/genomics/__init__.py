"""DNA data layer: alphabet, genome access, intervals, window datasets, corpora, text bytes."""

from .alphabet import (
    BOS,
    DNA_VOCAB,
    EOS,
    MASK,
    PAD,
    VOCAB_SIZE,
    A,
    C,
    G,
    N,
    T,
    Vocab,
    decode,
    encode,
    reverse_complement,
)
from .corpora import Corpus, available_corpora, corpus_from_bed, corpus_from_fastas, load_corpus
from .fasta import Genome, SequenceFormatError, iter_records
from .intervals import Interval, read_bed, write_bed
from .windows import WindowDataset

__all__ = [
    "A", "BOS", "C", "Corpus", "DNA_VOCAB", "EOS", "G", "Genome", "Interval", "MASK", "N", "PAD",
    "SequenceFormatError", "T", "VOCAB_SIZE", "Vocab", "WindowDataset", "available_corpora",
    "corpus_from_bed", "corpus_from_fastas", "decode", "encode", "iter_records", "load_corpus",
    "read_bed", "reverse_complement", "write_bed",
]
