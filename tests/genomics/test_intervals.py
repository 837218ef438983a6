import gzip
import re
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from gtestdata import FLY, FLY_BED
from hypothesis import given, settings
from hypothesis import strategies as st

from hnet_dna.genomics import fasta
from hnet_dna.genomics.fasta import Genome
from hnet_dna.genomics.intervals import (
    BedFormatError,
    Interval,
    defined_intervals,
    group_by_label,
    intersect,
    read_bed,
    resolve_intervals,
    split_by_contigs,
    split_by_fraction,
    write_bed,
)

DSEC, DTEI = "dsec4_1215000_1228000", "dtei4_95000_106000"


def test_read_bed_basenji_splits():
    ivs = read_bed(FLY_BED, Genome(FLY).contigs)
    assert ivs == [Interval(DSEC, 0, 6000, "train"), Interval(DSEC, 6000, 13000, "valid"),
                   Interval(DTEI, 0, 8192, "test"), Interval(DTEI, 8192, 11000, "train")]
    assert {k: len(v) for k, v in group_by_label(ivs).items()} == {
        "train": 2, "valid": 1, "test": 1}


@pytest.mark.parametrize(
    ("line", "msg"),
    [("chr1\t10", "expected >= 3 tab-separated columns, got 2"),
     ("chr1 0 10", "expected >= 3 tab-separated columns, got 1"),
     ("chr1\t0\tten", "start/end are not integers: '0', 'ten'"),
     ("chr1\t10\t10", "need 0 <= start < end, got 10-10"),
     ("chr1\t-1\t10", "need 0 <= start < end, got -1-10"),
     ("chrX\t0\t10", "contig 'chrX' not in the genome: no record 'chrX' (nor its aliases "
      "['X']); records include ['chr1']"),
     ("chr1\t90\t101", "end 101 beyond chr1 length 100")],
)
def test_read_bed_errors_name_file_and_line(tmp_path, line, msg):
    bed = tmp_path / "x.bed"
    bed.write_text(f"track name=x\n# comment\n\nchr1\t0\t5\n{line}\n")
    with pytest.raises(BedFormatError, match=f"^{re.escape(f'{bed}:5: {msg}')}$"):
        read_bed(bed, {"chr1": 100})


def test_bed_roundtrip(tmp_path):
    ivs = [Interval("a", 0, 5, "train"), Interval("b", 7, 9, "test")]
    write_bed(tmp_path / "l.bed", ivs)
    assert (tmp_path / "l.bed").read_text() == "a\t0\t5\ttrain\nb\t7\t9\ttest\n"
    assert read_bed(tmp_path / "l.bed") == ivs
    plain = [Interval("a", 0, 5)]
    write_bed(tmp_path / "p.bed", plain)
    assert (tmp_path / "p.bed").read_text() == "a\t0\t5\n"
    assert read_bed(tmp_path / "p.bed") == plain


def test_split_by_fraction_cuts_each_contig_in_order():
    out = split_by_fraction({"a": 1000, "b": 7}, {"train": 0.8, "valid": 0.1, "test": 0.1})
    assert out["train"] == [Interval("a", 0, 800, "train"), Interval("b", 0, 6, "train")]
    # cut points round(cumulative fraction * length): 7 bases -> 0, 6, 6, 7 (empty valid block)
    assert out["valid"] == [Interval("a", 800, 900, "valid")]
    assert out["test"] == [Interval("a", 900, 1000, "test"), Interval("b", 6, 7, "test")]
    with pytest.raises(ValueError, match="split fractions must be >= 0 and sum to 1"):
        split_by_fraction({"a": 10}, {"train": 0.8, "valid": 0.1})


def test_defined_intervals_on_real_gaps(fly_seqs):
    g = Genome(FLY)
    expected = []
    for name, seq in fly_seqs.items():  # oracle: regex over the pysam read
        expected += [Interval(name, m.start(), m.end()) for m in re.finditer("[^Nn]+", seq)]
    assert expected == [Interval(DSEC, 0, 6357), Interval(DSEC, 6457, 13000),
                        Interval(DTEI, 0, 5841), Interval(DTEI, 5941, 11000)]
    assert defined_intervals(g) == expected
    # chunk boundaries of the N-run scan inside and at the edge of a gap must not split or
    # shift runs (the gap at 6357-6457 spans a border of 6400, and several of 30)
    for chunk in (6357, 1000, 6400, 30):
        with mock.patch.object(fasta, "SCAN_CHUNK", chunk):
            assert defined_intervals(Genome(FLY, backend="memory")) == expected
    assert defined_intervals(g, [DTEI], min_length=5100) == [Interval(DTEI, 0, 5841)]


@settings(max_examples=60, deadline=None)
@given(st.text("ACGTNn", min_size=1, max_size=40), st.integers(1, 7), st.integers(1, 4))
def test_defined_intervals_match_regex(seq, chunk_size, min_length):
    with tempfile.TemporaryDirectory() as tmp:
        fa = Path(tmp) / "x.fa"
        fa.write_text(f">x\n{seq}\n")
        with mock.patch.object(fasta, "SCAN_CHUNK", chunk_size):
            got = defined_intervals(Genome(fa, backend="memory"), min_length=min_length)
    assert got == [Interval("x", m.start(), m.end()) for m in re.finditer("[^Nn]+", seq)
                   if m.end() - m.start() >= min_length]


def test_intersect_examples():
    a = [Interval("x", 0, 100, "train"), Interval("y", 10, 20, "test")]
    b = [Interval("x", 50, 60), Interval("x", 5, 10), Interval("x", 90, 200), Interval("z", 0, 9)]
    assert intersect(a, b) == [Interval("x", 5, 10, "train"), Interval("x", 50, 60, "train"),
                               Interval("x", 90, 100, "train")]
    with pytest.raises(ValueError, match="intervals overlap"):
        intersect(a, [Interval("x", 0, 10), Interval("x", 5, 15)])


def _positions(ivs):
    return {(iv.contig, p) for iv in ivs for p in range(iv.start, iv.end)}


_spans = st.lists(st.tuples(st.sampled_from("xy"), st.integers(0, 60), st.integers(1, 20)),
                  max_size=8)


@given(_spans, st.lists(st.integers(0, 80), max_size=10, unique=True))
def test_intersect_equals_positionwise_and(a_spans, cuts):
    a = [Interval(c, s, s + n) for c, s, n in a_spans]
    cuts = sorted(cuts)
    # disjoint b on each contig: every other gap between sorted cut points
    b = [Interval(c, s, e) for c in "xy" for s, e in zip(cuts[::2], cuts[1::2], strict=False)]
    got = intersect(a, b)
    assert all(len(iv) > 0 for iv in got)
    assert sorted(_positions(got)) == sorted(_positions(a) & _positions(b))
    assert sum(map(len, got)) == sum(len(_positions([iv]) & _positions(b)) for iv in a)


def test_split_by_contigs():
    contigs = {"chr1": 100, "chr2": 50, "chr8": 30, "chr9": 20, "chrM": 0}
    out = split_by_contigs(contigs, {"train": None, "valid": ["8"], "test": ["chr9"]})
    assert out == {"train": [Interval("chr1", 0, 100, "train"), Interval("chr2", 0, 50, "train")],
                   "valid": [Interval("chr8", 0, 30, "valid")],
                   "test": [Interval("chr9", 0, 20, "test")]}  # empty chrM in no split
    # without a catch-all split, unlisted contigs are in no split
    assert split_by_contigs(contigs, {"test": ["chr2"]}) == {"test": [Interval("chr2", 0, 50,
                                                                               "test")]}
    with pytest.raises(ValueError, match=re.escape(
            "g.fa: contig 'chr8' is in splits 'valid' and 'test'")):
        split_by_contigs(contigs, {"valid": ["chr8"], "test": ["8"]}, "g.fa")
    with pytest.raises(KeyError, match=re.escape("g.fa: no record 'chr3'")):
        split_by_contigs(contigs, {"test": ["chr3"]}, "g.fa")
    with pytest.raises(ValueError, match="only one split can take the remaining contigs"):
        split_by_contigs(contigs, {"train": None, "valid": None})


def test_read_bed_resolves_aliases_and_reads_gzip(tmp_path):
    bed = tmp_path / "ucsc.bed.gz"
    with gzip.open(bed, "wt") as fh:
        fh.write("chr1\t0\t10\ttrain\nchrM\t2\t5\ttest\n")
    assert read_bed(bed, {"1": 10, "MT": 5}) == [Interval("1", 0, 10, "train"),
                                                 Interval("MT", 2, 5, "test")]
    assert read_bed(bed)[1] == Interval("chrM", 2, 5, "test")  # no genome: names kept
    with pytest.raises(BedFormatError, match=re.escape(f"{bed}:1: end 10 beyond 1 length 9")):
        read_bed(bed, {"1": 9, "MT": 5})


def test_resolve_intervals_checks_lengths():
    ivs = [Interval("chr1", 5, 10, "x")]
    assert resolve_intervals(ivs, {"1": 10}, "g") == [Interval("1", 5, 10, "x")]
    with pytest.raises(IndexError, match=re.escape(
            "g: interval Interval(contig='chr1', start=5, end=10, label='x') beyond record "
            "length 9")):
        resolve_intervals(ivs, {"1": 9}, "g")
