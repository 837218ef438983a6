"""Genome inputs the issue lists: CRLF, empty records/files, aliases, IUPAC counts, bad input."""

import logging
import re

import numpy as np
import pytest
from gtestdata import FLY

from hnet_dna.genomics import alphabet as ab
from hnet_dna.genomics.aliases import contig_aliases, resolve_contig
from hnet_dna.genomics.fasta import Genome, SequenceFormatError
from hnet_dna.genomics.intervals import Interval
from hnet_dna.genomics.windows import WindowDataset

BACKENDS = ["pysam", "pyfaidx", "memory"]
DSEC = "dsec4_1215000_1228000"


@pytest.mark.parametrize("backend", BACKENDS)
def test_crlf_fasta_reads_like_lf(tmp_path, backend, fly_seqs):
    crlf = tmp_path / "fly_crlf.fa"
    crlf.write_bytes(FLY.read_bytes().replace(b"\n", b"\r\n"))
    g = Genome(crlf, backend=backend)
    assert g.contigs == {name: len(s) for name, s in fly_seqs.items()}
    for name, s in fly_seqs.items():
        assert g.fetch(name, 0, len(s)) == s  # no '\r' leaks into the sequence
        assert g.fetch(name, 59, 181) == s[59:181]  # across line ends


@pytest.mark.parametrize("backend", ["pyfaidx", "memory"])
def test_empty_records_are_left_out_and_reported(tmp_path, backend, caplog):
    fa = tmp_path / "e.fa"
    fa.write_text(">a\nACGT\n>gap1\n>b desc\nAC\nGT\n>gap2\n")
    with caplog.at_level(logging.WARNING):
        g = Genome(fa, backend=backend)
    assert g.contigs == {"a": 4, "b": 4}
    assert g.empty_records == ["gap1", "gap2"]
    assert "left out 2 empty record(s): ['gap1', 'gap2']" in caplog.text
    with pytest.raises(KeyError, match="no record 'gap1'"):
        g.fetch("gap1", 0, 0)


def test_pysam_index_omits_empty_records(tmp_path):
    # htslib drops zero-length records while indexing, so they cannot be listed (module doc)
    fa = tmp_path / "e.fa"
    fa.write_text(">a\nACGT\n>gap1\n>b\nACGT\n")
    g = Genome(fa, backend="pysam")
    assert g.contigs == {"a": 4, "b": 4} and g.empty_records == []
    assert g.fetch("b", 0, 4) == "ACGT"


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_fasta_is_an_error(tmp_path, backend):
    empty = tmp_path / "empty.fa"
    empty.write_bytes(b"")
    with pytest.raises(SequenceFormatError, match=re.escape(
            f"{empty}: empty file, no sequence records")):
        Genome(empty, backend=backend)
    headers = tmp_path / "headers.fa"
    headers.write_text(">a\n>b\n")
    if backend == "pysam":  # htslib refuses to index a file without sequence
        match = f"{re.escape(str(headers))}: cannot build FASTA index"
    else:
        match = re.escape(f"{headers}: no sequence records")
    with pytest.raises(SequenceFormatError, match=match):
        Genome(headers, backend=backend)


def test_alias_rules():
    assert contig_aliases("chr1") == ["1"] and contig_aliases("X") == ["chrX"]
    assert contig_aliases("chrM") == ["chrMT", "MT", "M", "mitochondrion_genome", "chrmt"]
    contigs = {"1": 10, "MT": 5, "chrX": 7}
    assert [resolve_contig(n, contigs) for n in ("chr1", "1", "chrM", "M", "X", "chrX")] == [
        "1", "1", "MT", "MT", "chrX", "chrX"]
    # an exact name wins over an alias
    assert resolve_contig("chr1", {"chr1": 1, "1": 2}) == "chr1"
    with pytest.raises(KeyError, match=re.escape(
            "g.fa: record 'chrM' is ambiguous, it could be any of ['MT', 'M']")):
        resolve_contig("chrM", {"MT": 1, "M": 2}, "g.fa")
    with pytest.raises(KeyError, match=re.escape(
            "no record 'chr2' (nor its aliases ['2']); records include ['1', 'MT', 'chrX']")):
        resolve_contig("chr2", contigs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_genome_fetch_through_aliases(tmp_path, backend):
    fa = tmp_path / "ens.fa"
    fa.write_text(">1 dna:chromosome\nACGTACGTAA\n>MT\nGGGCC\n")
    g = Genome(fa, backend=backend)
    assert g.fetch("chr1", 2, 6) == "GTAC" and g.fetch("chrM", 0, 5) == "GGGCC"
    assert g.fetch_encoded("chrMT", 0, 2)[0].tolist() == [ab.G, ab.G]
    with pytest.raises(IndexError, match=re.escape(
            f"{fa}: range 1:5-11 outside record of length 10")):
        g.fetch("chr1", 5, 11)
    # windows report the genome's own record names
    ds = WindowDataset([(g, [Interval("chr1", 0, 10)])], 4, mode="tile")
    assert [(i["contig"], i["start"]) for i in ds] == [("1", 0), ("1", 4), ("1", 8)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_iupac_codes_read_as_n_and_are_counted(tmp_path, backend, caplog):
    fa = tmp_path / "iupac.fa"
    fa.write_text(">clean\nACGTNACGTN\n>amb\nACRYTTkmACGT\nSWBDHVNNry\n")
    g = Genome(fa, backend=backend)
    ids, soft = g.fetch_encoded("amb", 0, 22)
    assert ids.tolist() == ab.encode("ACNNTTNNACGTNNNNNNNNNN")[0].tolist()
    assert soft.tolist() == [c.islower() for c in "ACRYTTkmACGTSWBDHVNNry"]
    with caplog.at_level(logging.WARNING):
        counts = g.ambiguity_counts()
    assert counts == {"amb": {"B": 1, "D": 1, "H": 1, "K": 1, "M": 1, "R": 2, "S": 1, "V": 1,
                              "W": 1, "Y": 2}}
    assert f"{fa}: 12 IUPAC ambiguity code(s) read as N" in caplog.text
    caplog.clear()
    assert g.ambiguity_counts() is counts and not caplog.text  # counted once, logged once


def test_count_ambiguity_on_real_excerpt(fly_seqs):
    # the fly excerpt uses only ACGT/acgt and N: nothing to count
    assert all(ab.count_ambiguity(s) == {} for s in fly_seqs.values())
    assert ab.count_ambiguity(b"NNRrYN") == {"R": 2, "Y": 1}


@pytest.mark.parametrize("preload", [True, False])
def test_invalid_base_in_windows_names_file_record_position(tmp_path, preload):
    fa = tmp_path / "bad.fa"
    fa.write_text(">ok\n" + "ACGT" * 10 + "\n>chr2\n" + "ACGT" * 5 + "AC-T" + "ACGT" * 3 + "\n")
    g = Genome(fa, backend="memory")
    msg = re.escape(f"{fa}: record 'chr2' position 22 (0-based): invalid base '-'")
    with pytest.raises(SequenceFormatError, match=msg):
        ds = WindowDataset([(g, [Interval("chr2", 0, 32)])], 8, mode="tile", preload=preload)
        list(ds)  # preload=False reads at iteration
    ok = WindowDataset([(g, [Interval("chr2", 0, 16)])], 8, mode="tile", preload=preload)
    assert len(list(ok)) == 2  # the bad base lies outside these intervals


def test_window_longer_than_contig(fly):
    with pytest.raises(ValueError, match=re.escape(
            "no interval can hold a window of 20000 (random mode); the longest of 2 "
            "interval(s) has 13000 bases")):
        WindowDataset([(fly, [Interval(DSEC, 0, 13000), Interval(DSEC, 0, 10)])], 20000,
                      samples_per_epoch=1)
    # evaluation still covers the contig: one padded window
    [item] = WindowDataset([(fly, [Interval(DSEC, 0, 13000)])], 20000, mode="tile")
    assert int(item["loss_weight"].gt(0).sum()) == 13000 - 100  # its 100 N weigh 0
    assert item["tokens"][13000:].eq(ab.PAD).all()
    assert np.array_equal(item["tokens"][:13000].numpy(), fly.fetch_encoded(DSEC, 0, 13000)[0])


@pytest.fixture(scope="module")
def fly():
    return Genome(FLY, name="fly")
