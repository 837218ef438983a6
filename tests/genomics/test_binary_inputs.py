"""Binary or non-UTF-8 FASTA, BED and text-corpus files: one error naming the file, no traceback
from a codec deep inside a reader."""

from __future__ import annotations

import gzip
import random
import re

import pytest

from hnet_dna.errors import InputError
from hnet_dna.genomics.fasta import Genome, iter_records
from hnet_dna.genomics.intervals import BedFormatError, read_bed
from hnet_dna.genomics.text import TextSource

# bytes as a binary file holds them (seeded: the same every run)
BINARY = random.Random(0).randbytes(4096)



@pytest.mark.parametrize("backend", ["auto", "memory", "pysam", "pyfaidx"])
def test_binary_fasta_names_the_file(tmp_path, backend):
    fa = tmp_path / "genome.fa"
    fa.write_bytes(BINARY)
    with pytest.raises(InputError, match=re.escape(str(fa))):
        Genome(fa, backend=backend)


@pytest.mark.parametrize("backend", ["memory", "pysam", "pyfaidx"])
def test_non_ascii_bytes_inside_a_record_name_the_file(tmp_path, backend):
    fa = tmp_path / "latin1.fa"
    fa.write_bytes(b">a\nACGTACGT\nAC\xe9GT\n>b\nACGT\n")  # a Latin-1 e-acute in record a
    # memory and pyfaidx refuse the file when reading it, htslib when the byte is fetched
    with pytest.raises(InputError, match=re.escape(f"{fa}: not a text sequence file (byte 0xe9")):
        Genome(fa, backend=backend).fetch("a", 0, 12)


def test_iter_records_of_a_binary_file(tmp_path):
    fa = tmp_path / "reads.fa.gz"
    fa.write_bytes(gzip.compress(b">r\nAC\xff\xfeGT\n"))
    with pytest.raises(InputError, match=re.escape(f"{fa}: not a text sequence file (byte 0xff")):
        list(iter_records(fa))


def test_binary_bed_names_file_and_line(tmp_path):
    bed = tmp_path / "splits.bed"
    bed.write_bytes(b"chr1\t0\t10\ttrain\n" + b"chr1\t10\t20\xff\xfe\n")
    with pytest.raises(BedFormatError, match=re.escape(
            f"{bed}:2: byte 0xff at column 11 is not text")):
        read_bed(bed)
    bed.write_bytes(b"chr1\t0\t10\n\0\0\0\0")
    with pytest.raises(BedFormatError, match=re.escape(f"{bed}:2: NUL byte")):
        read_bed(bed)


def test_bed_compression_is_detected_by_content(tmp_path):
    text = b"chr1\t0\t10\ttrain\nchr1\t10\t20\tvalid\n"
    compressed = tmp_path / "splits.bed"  # gzip without the .gz suffix
    compressed.write_bytes(gzip.compress(text))
    assert [iv.label for iv in read_bed(compressed)] == ["train", "valid"]
    damaged = tmp_path / "cut.bed.gz"
    damaged.write_bytes(gzip.compress(text * 50)[:60])
    with pytest.raises(BedFormatError, match=re.escape(f"{damaged}:") + r"\d+: damaged gzip"):
        read_bed(damaged)


def test_non_utf8_text_corpus_is_an_input_error(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"plain text, then \xff\xfe")
    with pytest.raises(InputError, match=re.escape(f"{path}: not UTF-8 at byte offset 17")):
        TextSource(path)
