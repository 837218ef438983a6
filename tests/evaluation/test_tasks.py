"""Task loaders (CSV, Genomic Benchmarks) with their errors; FASTA + GFF task builders."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest
from eval_data import YEAST_GFF
from scipy import sparse

from hnet_dna.errors import InputError
from hnet_dna.evaluation.kmer_features import kmer_counts, kmer_features
from hnet_dna.evaluation.task_builders import BlockSplits, build_task
from hnet_dna.evaluation.tasks import (
    TaskFormatError,
    load_csv_task,
    load_genomic_benchmarks,
    load_task,
    read_sequence_table,
)
from hnet_dna.genomics.alphabet import reverse_complement
from hnet_dna.genomics.fasta import Genome


def _write_csv_task(folder, train="ACGT,0\nTTTT,1\nGGCA,1\n", test="ACGA,0\nTTGT,1\n",
                    dev: str | None = "AAAA,0\n", header="sequence,label\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text(header + train)
    (folder / "test.csv").write_text(header + test)
    if dev is not None:
        (folder / "dev.csv").write_text(header + dev)
    return folder


def test_csv_task_loads_splits_and_classes(tmp_path):
    task = load_csv_task(_write_csv_task(tmp_path / "t"))
    assert task.classes == ["0", "1"] and set(task.splits) == {"train", "dev", "test"}
    assert task.splits["train"].sequences == ["ACGT", "TTTT", "GGCA"]
    np.testing.assert_array_equal(task.splits["train"].labels, [0, 1, 1])
    assert load_task(str(tmp_path / "t")).classes == ["0", "1"]  # sniffed


def test_csv_numeric_labels_sort_numerically(tmp_path):
    task = load_csv_task(_write_csv_task(tmp_path / "t", train="A,10\nC,2\nG,1\n",
                                         test="A,2\n", dev=None))
    assert task.classes == ["1", "2", "10"] and "dev" not in task.splits


@pytest.mark.parametrize("kwargs,message", [
    ({"header": "seq,label\n"}, r"train.csv: missing column\(s\) \['sequence'\]"),
    ({"train": "ACGT,0\nAXGT,1\n"}, r"train.csv:3: invalid base 'X' at sequence position 1"),
    ({"train": "ACGT,0\n,1\n"}, r"train.csv:3: empty sequence"),
    ({"train": "ACGT,0\nACGT,\n"}, r"train.csv:3: empty label"),
    ({"test": "ACGT,7\n"}, r"test.csv: label\(s\) \['7'\] do not occur in train"),
    ({"train": "ACGT,0\nAC,0\n"}, r"a single class \['0'\] in train"),
])
def test_csv_task_errors_name_file_and_line(tmp_path, kwargs, message):
    folder = _write_csv_task(tmp_path / "t", **kwargs)
    with pytest.raises(TaskFormatError, match=message):
        load_csv_task(folder)


def test_csv_task_missing_files(tmp_path):
    folder = _write_csv_task(tmp_path / "t")
    (folder / "test.csv").unlink()
    with pytest.raises(TaskFormatError, match="no test.csv"):
        load_csv_task(folder)
    with pytest.raises(TaskFormatError, match="not a folder"):
        load_csv_task(tmp_path / "nope")
    with pytest.raises(TaskFormatError, match="neither a CSV task"):
        load_task(str(tmp_path))
    with pytest.raises(TaskFormatError, match="file not found"):
        read_sequence_table(tmp_path / "x.csv")


def test_genomic_benchmarks_folder(tmp_path):
    for split, items in {"train": {"neg": ["AAAA", "CCCC"], "pos": ["GGGG"]},
                         "test": {"neg": ["TTTT"], "pos": ["ACGT\n"]}}.items():
        for cls, seqs in items.items():
            d = tmp_path / "gb" / split / cls
            d.mkdir(parents=True)
            for i, s in enumerate(seqs):
                (d / f"{i}.txt").write_text(s)
    task = load_genomic_benchmarks(tmp_path / "gb")
    assert task.classes == ["neg", "pos"]
    assert task.splits["test"].sequences == ["TTTT", "ACGT"]
    np.testing.assert_array_equal(task.splits["train"].labels, [0, 0, 1])
    (tmp_path / "gb" / "test" / "odd").mkdir()
    (tmp_path / "gb" / "test" / "odd" / "0.txt").write_text("ACGT")
    with pytest.raises(TaskFormatError, match=r"class folder\(s\) \['odd'\] missing"):
        load_genomic_benchmarks(tmp_path / "gb")
    (tmp_path / "gb" / "train" / "pos" / "0.txt").write_text("AC-GT")
    with pytest.raises(TaskFormatError, match=r"pos/0.txt: invalid base '-'"):
        load_genomic_benchmarks(tmp_path / "gb")


def test_kmer_counts():
    c = kmer_counts("ACGTNACG", 2)
    assert c.sum() == 5  # AC CG GT AC CG; TN and NA are not counted
    assert c[0 * 4 + 1] == 2 and c[1 * 4 + 2] == 2 and c[2 * 4 + 3] == 1
    seqs = ["ACGTACGT", "AAAAAAAA", "ACGTNACG", "A", "GGCCTTAANNACGTT"]
    f = kmer_features(seqs, ks=(1, 2))
    assert sparse.issparse(f) and f.shape == (5, 4 + 16)
    dense = f.toarray()
    np.testing.assert_allclose(dense[1, :4], [1, 0, 0, 0])
    np.testing.assert_allclose(dense[[0, 1, 2, 4], 4:].sum(1), 1.0)  # frequencies per block
    assert dense[3, 4:].sum() == 0  # no 2-mer in one base
    # the joined one-pass counting equals per-sequence counting (no k-mer across sequences)
    counts = kmer_features(seqs, ks=(2, 3), normalize=False).toarray()
    for i, s in enumerate(seqs):
        np.testing.assert_array_equal(counts[i], np.r_[kmer_counts(s, 2), kmer_counts(s, 3)])
    with pytest.raises(InputError, match="1..8"):
        kmer_features(seqs, ks=(14,))


def _windows(task):
    out = {}
    for split, data in task.splits.items():
        out[split] = [tuple(re.match(r"(.+):(\d+)-(\d+)\((.)\)", n).groups())
                      for n in data.names]
    return out


def _overlap(a, b) -> bool:
    return any(c1 == c2 and int(s1) < int(e2) and int(s2) < int(e1)
               for c1, s1, e1, _ in a for c2, s2, e2, _ in b)


@pytest.mark.parametrize("kind", ["promoter", "coding"])
def test_yeast_tasks_are_balanced_and_region_disjoint(yeast, kind):
    task = build_task(kind, yeast, YEAST_GFF, window=100, block=10_000, seed=1)
    wins = _windows(task)
    for data in task.splits.values():
        assert len(data) > 0 and (data.labels == 1).sum() == (data.labels == 0).sum()
        assert all(len(s) == 100 for s in data.sequences)
    assert not _overlap(wins["train"], wins["test"]) and not _overlap(wins["dev"], wins["test"])
    # sequences are the genome windows, reverse-complemented on the minus strand
    for (c, s, e, strand), seq in zip(wins["train"][:20], task.splits["train"].sequences[:20],
                                      strict=True):
        ids = yeast.fetch_encoded(c, int(s), int(e))[0]
        ids = reverse_complement(ids) if strand == "-" else ids
        assert seq == "".join("ACGTN"[i] for i in ids)


def test_promoter_positives_end_at_gene_starts(yeast):
    task = build_task("promoter", yeast, YEAST_GFF, window=50, block=10_000)
    gene_starts = set()
    with gzip.open(YEAST_GFF, "rt") as fh:
        for line in fh:
            f = line.split("\t")
            if len(f) == 9 and f[2] == "gene":
                gene_starts.add(int(f[3]) - 1 if f[6] == "+" else int(f[4]))
    for data in task.splits.values():
        for name, label in zip(data.names, data.labels, strict=True):
            c, s, e, strand = re.match(r"(.+):(\d+)-(\d+)\((.)\)", name).groups()
            if label == 1:
                assert (int(e) if strand == "+" else int(s)) in gene_starts


def test_splice_task_centres_on_gt(tmp_path):
    rng = np.random.default_rng(0)
    body = "".join(rng.choice(list("ACGT"), 3000))
    exon1, intron, exon2 = body[:1000], "GT" + body[1002:1498] + "AG", body[1500:]
    fa = tmp_path / "g.fa"
    fa.write_text(">c\n" + exon1 + intron + exon2 + "\n")
    gff = tmp_path / "g.gff"
    gff.write_text(
        "c\tx\tgene\t1\t3000\t.\t+\t.\tID=g\n"
        "c\tx\texon\t1\t1000\t.\t+\t.\tParent=t\n"
        "c\tx\texon\t1501\t3000\t.\t+\t.\tParent=t\n")
    g = Genome(fa, backend="memory")
    task = build_task("splice_donor", g, gff, window=40, block=100_000,
                      fractions={"train": 1.0})
    data = task.splits["train"]
    assert (data.labels == 1).sum() == 1 and (data.labels == 0).sum() == 1
    assert all(s[19:21] == "GT" for s in data.sequences)
    acc = build_task("splice_acceptor", g, gff, window=40, block=100_000,
                     fractions={"train": 1.0}).splits["train"]
    assert all(s[19:21] == "AG" for s in acc.sequences)


def test_block_splits_are_seeded_and_proportional():
    a = BlockSplits({"c": 1_000_000}, 10_000, {"train": 0.8, "dev": 0.1, "test": 0.1}, seed=3)
    b = BlockSplits({"c": 1_000_000}, 10_000, {"train": 0.8, "dev": 0.1, "test": 0.1}, seed=3)
    np.testing.assert_array_equal(a.assign["c"], b.assign["c"])
    assert np.bincount(a.assign["c"]).tolist() == [80, 10, 10]
    same = next(i for i in range(99) if a.assign["c"][i] == a.assign["c"][i + 1])
    assert a.split_of("c", same * 10_000 + 9_990, same * 10_000 + 10_010) is not None
    diff = next(i for i in range(99) if a.assign["c"][i] != a.assign["c"][i + 1])
    assert a.split_of("c", diff * 10_000 + 9_990, diff * 10_000 + 10_010) is None


def test_exon_shared_by_two_transcripts_gives_both_introns(tmp_path):
    # exon 1 belongs to t1 and t2 (Parent=t1,t2); their second exons start at different
    # acceptors, so both introns exist only if the shared exon counts for each transcript.
    rng = np.random.default_rng(1)
    seq = list("".join(rng.choice(list("ACGT"), 3000)))
    seq[1000:1002] = "GT"
    seq[1498:1500] = seq[1998:2000] = "AG"
    fa = tmp_path / "g.fa"
    fa.write_text(">c\n" + "".join(seq) + "\n")
    gff = tmp_path / "g.gff"
    gff.write_text(
        "c\tx\tgene\t1\t3000\t.\t+\t.\tID=g\n"
        "c\tx\texon\t1\t1000\t.\t+\t.\tParent=t1,t2\n"
        "c\tx\texon\t1501\t3000\t.\t+\t.\tParent=t1\n"
        "c\tx\texon\t2001\t3000\t.\t+\t.\tParent=t2\n")
    g = Genome(fa, backend="memory")
    acc = build_task("splice_acceptor", g, gff, window=40, block=100_000,
                     fractions={"train": 1.0}).splits["train"]
    positives = [s for s, label in zip(acc.sequences, acc.labels, strict=True) if label == 1]
    assert len(positives) == 2 and all(s[19:21] == "AG" for s in positives)


def test_duplicated_header_column_names_file_and_column(tmp_path):
    table = tmp_path / "s.tsv"
    table.write_text("name\tsequence\tsequence\na\tACGT\tTTTT\n")
    with pytest.raises(TaskFormatError, match=re.escape(
            f"{table}:1: column 'sequence' appears 2 times in the header")):
        read_sequence_table(table)
