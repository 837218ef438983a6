"""DNA data layer: alphabet, genome access, intervals, window datasets, corpora, text bytes."""

from .aliases import resolve_contig
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
    Vocabulary,
    count_ambiguity,
    decode,
    encode,
    reverse_complement,
)
from .corpora import (
    Corpus,
    available_corpora,
    corpus_from_bed,
    corpus_from_contigs,
    corpus_from_fastas,
    load_corpus,
)
from .fasta import Genome, SequenceFormatError, iter_records
from .intervals import Interval, read_bed, split_by_contigs, split_by_fraction, write_bed
from .loader import WindowLoader
from .prepare import prepare_genome
from .windows import WindowDataset

__all__ = [
    "A", "BOS", "C", "Corpus", "DNA_VOCAB", "EOS", "G", "Genome", "Interval", "MASK", "N", "PAD",
    "SequenceFormatError", "T", "VOCAB_SIZE", "Vocabulary", "WindowDataset", "WindowLoader",
    "available_corpora", "corpus_from_bed", "corpus_from_contigs", "corpus_from_fastas",
    "count_ambiguity", "decode", "encode", "iter_records", "load_corpus", "prepare_genome",
    "read_bed", "resolve_contig", "reverse_complement", "split_by_contigs", "split_by_fraction",
    "write_bed",
]
