"""Genome preparation (prepare.py), the mmap backend (mapped.py) and saved summaries."""

import gzip
import json
import os
import re
import shutil
import tracemalloc

import numpy as np
import pysam
import pytest
from Bio import SeqIO
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord
from gtestdata import FLY

from hnet_dna.errors import OutputError
from hnet_dna.genomics import mapped
from hnet_dna.genomics.corpora import load_corpus
from hnet_dna.genomics.fasta import Genome, SequenceFormatError, prepare
from hnet_dna.genomics.intervals import defined_intervals
from hnet_dna.genomics.prepare import genome_files, prepare_genome, up_to_date


def _records(seed: int = 0) -> dict[str, str]:
    """Records with soft-masking, N runs at ends and inside, IUPAC codes, odd lengths."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in (("chr1", 5_003), ("chrUn_x", 1), ("chr2 extra", 777), ("M", 64)):
        seq = rng.choice(list("ACGTacgt"), n)
        if n > 100:
            seq[:7] = "N"
            seq[300:390] = "n"
            seq[-3:] = "N"
            seq[150:153] = list("RyK")
        out[name.split()[0]] = "".join(seq)
    return out


def _fasta(records: dict[str, str], width: int = 60, newline: str = "\n") -> str:
    return "".join(f">{name} some description{newline}" + "".join(
        seq[i:i + width] + newline for i in range(0, len(seq), width))
        for name, seq in records.items())


@pytest.mark.parametrize("kind", ["gzip_crlf", "bgzip", "genbank"])
def test_prepared_genome_reads_back_byte_identical(tmp_path, kind):
    records = _records()
    if kind == "genbank":
        records = {k: v.upper() for k, v in records.items()}  # GenBank carries no soft-mask
        src = tmp_path / "g.gb"
        SeqIO.write([SeqRecord(Seq(s), id=k, name=k, annotations={"molecule_type": "DNA"})
                     for k, s in records.items()], src, "genbank")
    else:
        plain = tmp_path / "plain.fa"
        plain.write_bytes(_fasta(records, 70, "\r\n" if kind == "gzip_crlf" else "\n").encode())
        src = tmp_path / "g.fa.gz"
        if kind == "gzip_crlf":
            src.write_bytes(gzip.compress(plain.read_bytes()))
        else:
            pysam.tabix_compress(str(plain), str(src))
    out = prepare_genome(src, tmp_path / "out")
    assert out == tmp_path / "out" / f"{src.name}.prepared.fa"
    g = Genome(src, backend="mmap", index_dir=tmp_path / "out")
    assert g._data == out and g.contigs == {k: len(v) for k, v in records.items()}
    with pysam.FastaFile(str(out)) as fa:  # the prepared file is an ordinary indexed FASTA
        for name, seq in records.items():
            assert g.fetch(name, 0, len(seq)) == seq  # case, N and IUPAC codes kept
            assert fa.fetch(name) == seq
            for a, b in ((0, 1), (5, 129), (len(seq) // 2, len(seq))):
                a, b = min(a, len(seq)), min(b, len(seq))
                assert g.fetch(name, a, b) == seq[a:b]
    # the summary came with the preparation: N runs and ambiguity counts, no rescan
    assert g.n_runs("chr1") == [(0, 7), (150, 153), (300, 390), (5000, 5003)]  # RyK read as N
    assert g.ambiguity_counts()["chr1"] == {"K": 1, "R": 1, "Y": 1}


def test_mmap_reads_a_wrapped_fasta_in_place(tmp_path):
    records = _records(1)
    src = tmp_path / "w.fa"
    src.write_bytes(_fasta(records, 61, "\r\n").encode())
    assert prepare(src) == src  # already one byte per base: indexed, not copied
    g = Genome(src)
    assert g.backend == "mmap" and g._data == src  # no copy: read at the .fai offsets
    rng = np.random.default_rng(0)
    for name, seq in records.items():
        for _ in range(50):
            a = int(rng.integers(0, len(seq)))
            b = int(rng.integers(a, len(seq) + 1))
            assert g.fetch(name, a, b) == seq[a:b]


def test_prepare_is_reused_until_the_source_changes(tmp_path, caplog):
    src = tmp_path / "g.fa.gz"
    src.write_bytes(gzip.compress(_fasta(_records()).encode()))
    out = prepare_genome(src)
    assert out == tmp_path / "g.fa.gz.prepared.fa"  # beside a source in a writable folder
    stamp = out.stat().st_mtime_ns
    assert up_to_date(src, out) and prepare_genome(src) == out
    assert out.stat().st_mtime_ns == stamp  # reused, not rewritten
    new = {"other": "ACGTN" * 40}
    src.write_bytes(gzip.compress(_fasta(new).encode()))
    os.utime(src, ns=(stamp - 10**9, stamp - 10**9))  # older than the output, as `cp -p` does
    assert not up_to_date(src, out)  # the size and mtime recorded in the summary differ
    assert Genome(src, backend="mmap").contigs == {"other": 200}
    # a prepared file changed behind our back (same size) is not trusted either
    data = bytearray(out.read_bytes())
    data[-5:-1] = b"TTTT"
    out.write_bytes(bytes(data))
    assert not up_to_date(src, out)
    assert Genome(src, backend="mmap").fetch("other", 190, 200) == ("ACGTN" * 2)


def test_bad_input_leaves_nothing_behind(tmp_path):
    src = tmp_path / "bad.fa.gz"
    src.write_bytes(gzip.compress(b">ok\nACGTACGT\n>two\nACGTAC\nGTAXGT\n"))
    with pytest.raises(SequenceFormatError, match=re.escape(
            f"{src}: record 'two' position 9 (0-based): invalid base 'X'")):
        prepare_genome(src)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".bad.fa.gz.prepared.fa.lock", "bad.fa.gz"]  # no partial output
    src.write_bytes(gzip.compress(b">a\nAC\n>a\nGT\n"))
    with pytest.raises(SequenceFormatError, match=re.escape(f"{src}: duplicate record name 'a'")):
        prepare_genome(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == left


def test_a_users_file_at_the_output_path_is_not_overwritten(tmp_path):
    src = tmp_path / "g.fa.gz"
    src.write_bytes(gzip.compress(b">a\nACGT\n"))
    theirs = tmp_path / "g.fa.gz.prepared.fa"
    theirs.write_text("mine\n")
    with pytest.raises(OutputError, match=re.escape(
            f"{theirs} exists and is not a prepared genome; move it away")):
        prepare_genome(src)
    assert theirs.read_text() == "mine\n"
    # two sources of the same name prepared into one folder: the second is refused
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "g.fa.gz").write_bytes(gzip.compress(f">{folder}\nACGT\n".encode()))
    prepare_genome(tmp_path / "x" / "g.fa.gz", tmp_path / "out")
    with pytest.raises(OutputError, match=re.escape(
            f"{tmp_path}/out/g.fa.gz.prepared.fa is the prepared genome of another file, "
            f"{tmp_path}/x/g.fa.gz; choose another output folder")):
        prepare_genome(tmp_path / "y" / "g.fa.gz", tmp_path / "out")


def test_saved_summary_is_used_and_checked(tmp_path, monkeypatch):
    fa = tmp_path / "fly.fa"
    shutil.copy(FLY, fa)
    first = defined_intervals(Genome(fa))  # scans once, saves fly.fa.hnet.json
    saved = json.loads((tmp_path / "fly.fa.hnet.json").read_text())
    assert saved["n_runs"] == {"dsec4_1215000_1228000": [[6357, 6457]],
                               "dtei4_95000_106000": [[5841, 5941]]}
    reads = _count_reads(monkeypatch)
    assert defined_intervals(Genome(fa)) == first and reads == []  # no base read
    # same size, other content, newer: the recorded mtime no longer matches -> rescanned
    text = fa.read_text().replace("NNNNNNNNNN", "ACGTACGTAC", 1)
    fa.write_text(text)
    assert defined_intervals(Genome(fa)) != first
    assert reads


def _count_reads(monkeypatch) -> list[int]:
    """Record the size of every read of bases through the mmap backend."""
    reads: list[int] = []
    original = mapped.FaiReader.read

    def counting(self, contig, start, end):
        reads.append(end - start)
        return original(self, contig, start, end)

    monkeypatch.setattr(mapped.FaiReader, "read", counting)
    return reads


def _count_opens(monkeypatch) -> list[tuple]:
    """Record every sequence file the mmap backend opens."""
    opens: list[tuple] = []
    real_open = mapped.os.open

    def counting(*args):
        opens.append(args)
        return real_open(*args)

    monkeypatch.setattr(mapped.os, "open", counting)
    return opens


def _genome_folder(folder, files: int, bases: int) -> None:
    folder.mkdir()
    rng = np.random.default_rng(files + bases)
    for i in range(files):
        seq = "NN" + "".join(rng.choice(list("ACGTacgt"), bases)) + "N" * 30
        (folder / f"sp{i:03d}.fa").write_text(_fasta({f"sp{i:03d}_chr1": seq}, 80))


def test_corpus_of_many_genome_files_opens_lazily(tmp_path, monkeypatch):
    small, large = tmp_path / "small", tmp_path / "large"
    _genome_folder(small, 120, 2_000)
    _genome_folder(large, 120, 20_000)
    peaks = {}
    for folder in (small, large):
        first = load_corpus(str(folder))  # indexes and summaries are written once
        assert len(first.genomes) == 120
        reads = _count_reads(monkeypatch)
        opens = _count_opens(monkeypatch)
        tracemalloc.start()
        corpus = load_corpus(str(folder))
        peaks[folder.name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        monkeypatch.undo()
        assert reads == [] and opens == []  # no base read, no sequence file opened
        assert corpus.summary() == first.summary()
        assert [iv for _, ivs in corpus.regions("train") for iv in ivs] == [
            iv for _, ivs in first.regions("train") for iv in ivs]
    # ten times the bases, the same records: opening costs about the same memory
    assert peaks["large"] < 1.5 * peaks["small"], peaks


def test_genome_files_of_a_folder(tmp_path):
    for name in ("a.fa", "b.fna.gz", "c.gb", "a.fa.fai", "a.fa.hnet.json", "notes.txt",
                 "b.fna.gz.prepared.fa"):
        (tmp_path / name).write_text("")
    assert [p.name for p in genome_files(tmp_path)] == ["a.fa", "b.fna.gz", "c.gb"]
    (tmp_path / "d.fa.gz.prepared.fa").write_text("")  # prepared elsewhere: its source is not here
    assert [p.name for p in genome_files(tmp_path)] == ["a.fa", "b.fna.gz", "c.gb",
                                                        "d.fa.gz.prepared.fa"]
    with pytest.raises(FileNotFoundError, match="no genome files"):
        genome_files(tmp_path / "sub" if (tmp_path / "sub").mkdir() is None else None)


def test_prepare_command(tmp_path, capsys):
    from hnet_dna.cli import main

    folder = tmp_path / "genomes"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.fa.gz").write_bytes(gzip.compress(f">{name}\nACGTn\n".encode()))
    out = tmp_path / "prepared"
    assert main(["prepare", str(folder), "--out-dir", str(out), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"{folder}/{n}.fa.gz -> {out}/{n}.fa.gz.prepared.fa" for n in ("a", "b")]
    assert main(["prepare", str(folder / "a.fa.gz"), "--out-dir", str(out), "-q"]) == 0
    assert capsys.readouterr().out.endswith("(up to date)\n")
    assert Genome(folder / "b.fa.gz", backend="mmap", index_dir=out).fetch("b", 0, 5) == "ACGTn"
    # the output folder is a corpus of its own: one genome per prepared file, named as its source
    corpus = load_corpus(str(out), {"train": 1.0})
    assert [(g.name, g.backend, g.contigs) for g in corpus.genomes] == [
        ("a", "mmap", {"a": 5}), ("b", "mmap", {"b": 5})]
    (folder / "c.fa.gz").write_bytes(gzip.compress(b">c\nAC-GT\n"))
    assert main(["prepare", str(folder / "c.fa.gz"), "-q"]) == 2
    assert capsys.readouterr().err == (f"hnet-dna prepare: {folder}/c.fa.gz: record 'c' "
                                       "position 2 (0-based): invalid base '-'\n")
    assert main(["prepare", str(tmp_path / "missing.fa"), "-q"]) == 2


def _prepare_in_child(src, queue):
    import logging

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("hnet_dna.genomics.prepare")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    out = prepare_genome(src)
    queue.put((str(out), sum(m.startswith("preparing") for m in seen)))


def test_ranks_opening_together_prepare_once(tmp_path):
    import multiprocessing

    src = tmp_path / "g.fa.gz"
    src.write_bytes(gzip.compress(_fasta(_records()).encode()))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_prepare_in_child, args=(src, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    assert {out for out, _ in results} == {str(tmp_path / "g.fa.gz.prepared.fa")}
    assert sum(n for _, n in results) == 1  # one prepared it, the others waited and reused it
