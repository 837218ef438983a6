import gzip
import logging
import multiprocessing
import os
import pickle
import re
import shutil
import sys

import numpy as np
import pysam
import pytest
from Bio import SeqIO
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord
from gtestdata import FLY, SCER, SCER_CONTIG

from hnet_dna.genomics import alphabet as ab
from hnet_dna.genomics import fasta
from hnet_dna.genomics.fasta import Genome, SequenceFormatError, is_bgzf, iter_records

# 64_387 and 128_849 start exactly at a BGZF block boundary (byte offsets 65,536 and 131,072)
RANGES = [(0, 1), (0, 60), (59, 61), (1000, 5000), (117_000, 117_777), (229_000, 230_218),
          (5, 5), (64_387, 64_400), (128_849, 130_000), (64_300, 64_387)]


@pytest.mark.parametrize("backend", ["mmap", "pysam", "pyfaidx", "memory"])
def test_backends_match_pysam_on_bgzip_yeast(backend, scer_seq, tmp_path):
    g = Genome(SCER, backend=backend, index_dir=tmp_path)  # mmap: prepared into tmp_path
    assert g.backend == backend
    assert g.contigs == {SCER_CONTIG: 230_218}
    assert g.name == "ScerR64_I_GCF_000146045.2_R64_genomic"
    for a, b in RANGES:
        assert g.fetch(SCER_CONTIG, a, b) == scer_seq[a:b]
        ids, soft = g.fetch_encoded(SCER_CONTIG, a, b)
        exp_ids, exp_soft = ab.encode(scer_seq[a:b])
        np.testing.assert_array_equal(ids, exp_ids)
        np.testing.assert_array_equal(soft, exp_soft)


def test_auto_backend_by_compression_and_size(tmp_path, scer_seq, monkeypatch):
    assert is_bgzf(SCER)
    plain = tmp_path / "scer.fa"
    plain.write_text(f">{SCER_CONTIG} chr I\n" + "\n".join(
        scer_seq[i:i + 70] for i in range(0, len(scer_seq), 70)) + "\n")
    gz = tmp_path / "scer.fa.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert not is_bgzf(gz)
    assert Genome(SCER).backend == "memory"  # small bgzip: held in memory
    assert Genome(plain).backend == "mmap"  # uncompressed: read through the page cache
    monkeypatch.setattr(fasta, "AUTO_MEMORY_MAX_BYTES", 1000)
    assert Genome(SCER).backend == "pysam"
    g = Genome(gz)
    assert g.backend == "memory"  # small plain gzip: held in memory, not prepared
    assert g.fetch(SCER_CONTIG, 0, len(scer_seq)) == scer_seq
    monkeypatch.setattr(fasta, "AUTO_PREPARE_MIN_BYTES", 1000)
    g = Genome(gz)
    assert g.backend == "mmap"  # large plain gzip: prepared once, beside it
    assert g._data == tmp_path / "scer.fa.gz.prepared.fa"
    assert g.fetch(SCER_CONTIG, 0, len(scer_seq)) == scer_seq
    with pytest.raises(SequenceFormatError, match=re.escape(
            f"{gz}: backend 'pysam' needs an indexable FASTA, this file is plain gzip, which "
            f"cannot be indexed; recompress it: `gunzip -c {gz} | bgzip > {tmp_path}/scer.fa.bgz`"
            f" (bgzip ships with htslib); or prepare it once (`hnet-dna prepare {gz}`, "
            "backend='mmap'), or use backend='memory' (reads the file sequentially)")):
        Genome(gz, backend="pysam")


@pytest.mark.parametrize("fmt", ["genbank", "embl"])
def test_genbank_and_embl_through_biopython(tmp_path, fmt, fly_seqs):
    path = tmp_path / f"fly.{'gb' if fmt == 'genbank' else 'embl'}"
    records = [SeqRecord(Seq(s), id=name, name=name[:16], description="fly chr4 excerpt",
                         annotations={"molecule_type": "DNA"}) for name, s in fly_seqs.items()]
    SeqIO.write(records, path, fmt)
    g = Genome(path)
    assert g.backend == "memory"
    assert g.contigs == {name: len(s) for name, s in fly_seqs.items()}
    # GenBank/EMBL do not carry soft-masking (SeqIO writes lowercase, reads uppercase)
    for name, s in fly_seqs.items():
        assert g.fetch(name, 0, len(s)) == s.upper()
    assert list(iter_records(path)) == [(n, s.upper()) for n, s in fly_seqs.items()]


def test_index_goes_to_index_dir_and_is_reused(tmp_path, scer_seq):
    data = tmp_path / "data"
    data.mkdir()
    fa = data / SCER.name
    shutil.copy(SCER, fa)
    cache = tmp_path / "cache"
    g = Genome(fa, index_dir=cache, backend="pysam")
    assert sorted(os.listdir(data)) == [SCER.name]  # nothing written next to the FASTA
    [sub] = list(cache.iterdir())
    assert sorted(p.name for p in sub.iterdir()) == [f"{SCER.name}.fai", f"{SCER.name}.gzi"]
    assert g.fetch(SCER_CONTIG, 100, 200) == scer_seq[100:200]
    mtime = (sub / f"{SCER.name}.fai").stat().st_mtime_ns
    Genome(fa, index_dir=cache, backend="pyfaidx").fetch(SCER_CONTIG, 0, 1)
    assert (sub / f"{SCER.name}.fai").stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_stale_index_is_rebuilt(tmp_path):
    fa = tmp_path / "x.fa"
    fa.write_text(">x\nACGT\n")
    assert Genome(fa, backend="pysam").contigs == {"x": 4}
    fa.write_text(">y\nACGTACGT\n")
    later = (tmp_path / "x.fa.fai").stat().st_mtime + 5
    os.utime(fa, (later, later))
    assert Genome(fa, backend="pysam").contigs == {"y": 8}


@pytest.mark.parametrize("backend", ["mmap", "pysam", "pyfaidx", "memory"])
def test_invalid_base_names_file_record_position(tmp_path, backend):
    fa = tmp_path / "bad.fa"
    fa.write_text(">ok\nACGTACGTAC\n>chr2 has a typo\nACGTACGTAC\nACGTAXGTAC\nAC\n")
    g = Genome(fa, backend=backend)
    assert g.fetch_encoded("ok", 0, 10)[0].tolist() == [0, 1, 2, 3] * 2 + [0, 1]
    ids, _ = g.fetch_encoded("chr2", 0, 15)  # the typo lies beyond this range
    assert len(ids) == 15
    with pytest.raises(SequenceFormatError, match=re.escape(
            f"{fa}: record 'chr2' position 15 (0-based): invalid base 'X'")):
        g.fetch_encoded("chr2", 12, 22)


@pytest.mark.parametrize("backend", ["mmap", "pysam", "pyfaidx", "memory"])
def test_out_of_range_and_unknown_record(backend, tmp_path):
    g = Genome(SCER, backend=backend, index_dir=tmp_path)
    with pytest.raises(IndexError, match=re.escape(
            f"{SCER}: range {SCER_CONTIG}:230000-230300 outside record of length 230218")):
        g.fetch(SCER_CONTIG, 230_000, 230_300)  # htslib alone would silently truncate
    with pytest.raises(IndexError, match="outside record"):
        g.fetch(SCER_CONTIG, -1, 10)
    with pytest.raises(KeyError, match="no record 'chrI'"):
        g.fetch("chrI", 0, 10)


@pytest.mark.parametrize(
    ("text", "pysam_msg", "pyfaidx_msg"),
    [(">a\nACGTACGT\nACG\nACGTACGT\n", 'Format error, unexpected "A" at line 4',
      "Inconsistent line found in >a at line 3"),
     ("hello\n>a\nACGT\n", 'Format error, unexpected "h" at line 1',
      "Unexpected text before the first sequence definition line"),
     (">a\nACGT\n>a\nACGA\n", 'duplicate record name ([W::fai_insert_index] Ignoring '
      'duplicate sequence "a"', 'Duplicate key "a"')],
)
def test_malformed_fasta_errors(tmp_path, text, pysam_msg, pyfaidx_msg):
    for backend, msg in (("pysam", pysam_msg), ("pyfaidx", pyfaidx_msg)):
        fa = tmp_path / f"{backend}.fa"
        fa.write_text(text)
        with pytest.raises(SequenceFormatError, match=re.escape(str(fa)) + ".*" + re.escape(msg)):
            Genome(fa, backend=backend)
        assert not (tmp_path / f"{backend}.fa.fai").exists()


def test_iter_records_matches_pysam_and_logs_empty(tmp_path, caplog, fly_seqs):
    assert list(iter_records(FLY)) == list(fly_seqs.items())
    fa = tmp_path / "e.fa"
    fa.write_text(">a desc\nACGT\n>empty\n>b\nAC\nGT\n")
    with caplog.at_level(logging.WARNING):
        assert list(iter_records(fa)) == [("a", "ACGT"), ("b", "ACGT")]
    assert f"{fa}: skipped 1 empty record(s): ['empty']" in caplog.text


def test_memory_backend_rejects_duplicates_and_empty_files(tmp_path):
    fa = tmp_path / "d.fa.gz"
    fa.write_bytes(gzip.compress(b">a\nAC\n>a\nGT\n"))
    with pytest.raises(SequenceFormatError, match=re.escape(f"{fa}: duplicate record name 'a'")):
        Genome(fa)
    empty = tmp_path / "e.fa.gz"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(SequenceFormatError, match=re.escape(f"{empty}: no sequence records")):
        Genome(empty)


def test_genome_pickles_without_its_handle(scer_seq):
    g = Genome(SCER, backend="pysam")
    assert g.fetch(SCER_CONTIG, 0, 10) == scer_seq[:10]  # opens the htslib handle
    clone = pickle.loads(pickle.dumps(g))
    assert clone._handle is None
    assert clone.fetch(SCER_CONTIG, 5000, 5100) == scer_seq[5000:5100]


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="genome file not found: /nonexistent.fa"):
        Genome("/nonexistent.fa")


def test_pysam_oracle_agrees_on_fly_excerpt(fly_seqs):
    g = Genome(FLY)
    with pysam.FastaFile(str(FLY)) as fa:
        for name in fa.references:
            assert g.contigs[name] == fa.get_reference_length(name)
            assert g.fetch(name, 6300, 6500) == fly_seqs[name][6300:6500]


def _fetch_in_child(genome, queue):
    queue.put((genome._handle_pid == os.getppid(),
               genome.fetch(SCER_CONTIG, 68_700, 68_900), genome._handle_pid == os.getpid()))


@pytest.mark.parametrize("backend", ["mmap", "pysam", "pyfaidx"])
def test_forked_process_reopens_the_handle(backend, scer_seq, tmp_path):
    g = Genome(SCER, backend=backend, index_dir=tmp_path)
    g.fetch(SCER_CONTIG, 0, 10)  # parent opens its handle before the fork, as DataLoader does
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_fetch_in_child, args=(g, queue))
    child.start()
    inherited, seq, reopened = queue.get(timeout=30)
    child.join()
    assert inherited and reopened and seq == scer_seq[68_700:68_900]
    assert g._handle_pid == os.getpid()


def test_without_pysam_falls_back_to_biopython_and_pyfaidx(monkeypatch, fly_seqs, fly_copy):
    monkeypatch.setitem(sys.modules, "pysam", None)  # import pysam now raises ImportError
    assert list(iter_records(FLY)) == list(fly_seqs.items())
    monkeypatch.setattr(fasta, "AUTO_MEMORY_MAX_BYTES", 0)
    g = Genome(fly_copy)
    assert g.backend == "mmap"  # indexed by pyfaidx, read without either library
    assert g.fetch("dtei4_95000_106000", 5800, 6000) == fly_seqs["dtei4_95000_106000"][5800:6000]
    g = Genome(fly_copy, backend="auto" if fly_copy.suffix == ".gz" else "pyfaidx")
    assert g.backend == "pyfaidx"
    assert g.fetch("dtei4_95000_106000", 5800, 6000) == fly_seqs["dtei4_95000_106000"][5800:6000]


def test_unwritable_index_folder_says_what_to_run(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    fa = data / "x.fa"
    fa.write_text(">x\nACGT\n")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")  # a file where the index folder should go: mkdir fails even as root
    with pytest.raises(OSError, match=re.escape(
            f"{fa}: no up-to-date faidx index, and cannot create the index folder {blocker}/")
            + ".*" + re.escape(f"build one with `samtools faidx {fa}` where it is writable, "
                               "or pass index_dir= a writable folder")):
        Genome(fa, backend="pysam", index_dir=blocker)


def _wrapped(records: dict[str, str], width: int) -> str:
    return "".join(f">{name}\n" + "".join(seq[i:i + width] + "\n"
                                          for i in range(0, len(seq), width))
                   for name, seq in records.items())


def _replace_keeping_older_mtime(path, text: bytes | str, older_than) -> None:
    """Overwrite ``path`` and date it before ``older_than`` (as ``cp -p`` or ``rsync -t`` do)."""
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    stamp = older_than.stat().st_mtime - 100
    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize("backend", ["pysam", "pyfaidx"])
@pytest.mark.parametrize("change", ["line_width", "first_record", "appended_record"])
def test_replaced_fasta_with_older_timestamp_gets_a_new_index(tmp_path, fly_seqs, backend,
                                                               change, caplog):
    # Before, the .fai was trusted on its mtime alone: short fetches read the old offsets.
    old = dict(fly_seqs)
    new = {"extra": "ACGTTGCA" * 40, **old} if change == "first_record" else dict(old)
    if change == "appended_record":
        new["extra"] = "ACGTTGCA" * 40
    fa = tmp_path / "genome.fa"
    fa.write_text(_wrapped(old, 60))
    Genome(fa, backend=backend).fetch(next(iter(old)), 0, 10)  # builds genome.fa.fai
    _replace_keeping_older_mtime(fa, _wrapped(new, 70 if change == "line_width" else 60),
                                 older_than=tmp_path / "genome.fa.fai")
    with caplog.at_level(logging.WARNING, logger="hnet_dna.genomics.faidx"):
        g = Genome(fa, backend=backend)
    assert "does not describe this file" in caplog.text
    assert g.contigs == {name: len(seq) for name, seq in new.items()}
    for name, seq in new.items():
        for a, b in ((0, 10), (61, 75), (len(seq) - 9, len(seq))):
            assert g.fetch(name, a, b) == seq[a:b], (name, a, b)


def test_replaced_bgzip_fasta_gets_a_new_index(tmp_path, fly_seqs):
    old = dict(fly_seqs)
    new = dict(reversed(list(old.items())))  # same records, other order: other offsets
    fa = tmp_path / "genome.fa.bgz"
    for records, width in ((old, 60), (new, 80)):
        plain = tmp_path / "plain.fa"
        plain.write_text(_wrapped(records, width))
        pysam.tabix_compress(str(plain), str(tmp_path / "tmp.bgz"), force=True)
        data = (tmp_path / "tmp.bgz").read_bytes()
        if records is old:
            fa.write_bytes(data)
            Genome(fa, backend="pysam").fetch(next(iter(old)), 0, 10)
        else:
            _replace_keeping_older_mtime(fa, data, older_than=tmp_path / "genome.fa.bgz.fai")
    for backend in ("pysam", "pyfaidx"):
        g = Genome(fa, backend=backend)
        for name, seq in new.items():
            assert g.fetch(name, 100, 130) == seq[100:130]
            assert g.fetch(name, len(seq) - 5, len(seq)) == seq[-5:]


def test_intact_index_is_kept(fly_copy):
    Genome(fly_copy, backend="pysam")
    fai = fly_copy.with_name(fly_copy.name + ".fai")
    before = fai.stat().st_mtime_ns
    Genome(fly_copy, backend="pyfaidx")
    assert fai.stat().st_mtime_ns == before  # checked, not rebuilt


def test_stale_index_without_a_writable_folder_is_an_error(tmp_path, fly_seqs):
    fa = tmp_path / "genome.fa"
    fa.write_text(_wrapped(fly_seqs, 60))
    Genome(fa, backend="pysam")
    _replace_keeping_older_mtime(fa, _wrapped(fly_seqs, 50), older_than=tmp_path / "genome.fa.fai")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(OSError, match=re.escape(f"{fa}: no up-to-date faidx index")):
        Genome(fa, backend="pysam", index_dir=blocker)
