"""The evaluation commands' progress in a batch job's log: plain timed lines, no '\\r' bars."""

from __future__ import annotations

import os
import re

import numpy as np
import torch
from eval_data import CHR20_VCF

from hnet_dna.evaluation.cli import main_embed, main_probe, main_score_variants
from hnet_dna.progress import INTERVAL_ENV

STAMP = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


def progress_lines(err: str, desc: str) -> list[str]:
    assert "\r" not in err
    return re.findall(STAMP + re.escape(desc) + r": (.*)$", err, re.MULTILINE)


def test_embed_reports_sequences_rate_and_eta(saved_model, tmp_path, capsys, monkeypatch):
    from hnet_dna.evaluation import embeddings

    monkeypatch.setenv(INTERVAL_ENV, "0")
    monkeypatch.setattr(embeddings.Embedder, "__init__", _small_groups(embeddings.Embedder))
    table = tmp_path / "s.tsv"
    table.write_text("name\tsequence\n" + "".join(f"s{i}\t{'ACGT' * 50}\n" for i in range(3)))
    assert main_embed(["--model", str(saved_model), "--sequences", str(table),
                       "--out", str(tmp_path / "e.npy")]) == 0
    lines = progress_lines(capsys.readouterr().err, "embed")
    assert [line.split(" ")[0] for line in lines] == ["1/3", "2/3", "3/3", "3/3"]
    assert all(re.fullmatch(r"\d/3 seq \(\d+%\), [\d.]+ (seq/s|s/seq), elapsed [\d:]+, "
                            r"(ETA [\d:]+|done)", line) for line in lines), lines
    assert lines[-1].endswith(", done") and "ETA" in lines[0]


def _small_groups(cls):
    original = cls.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.group_bases = 1  # one sequence per group

    return init


def test_score_variants_reports_alts(saved_model, fasta_copy, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")
    rc = main_score_variants(["--model", str(saved_model), "--vcf", str(CHR20_VCF), "--fasta",
                              str(fasta_copy), "--out", str(tmp_path / "s.vcf.gz"),
                              "--window", "32", "--max-variants", "20", "--batch-size", "4"])
    assert rc == 0
    lines = progress_lines(capsys.readouterr().err, "score")
    assert lines[-1].startswith("20 alt, ") and lines[-1].endswith(", done")
    assert len(lines) >= 2


def test_probe_reports_fits(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "0")
    rng = np.random.default_rng(0)
    folder = tmp_path / "task"
    folder.mkdir()
    for split, n in (("train", 40), ("test", 20)):
        rows = ["sequence,label"]
        rows += ["".join(rng.choice(list("AT" if i % 2 else "GC"), 30)) + f",{i % 2}"
                 for i in range(n)]
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    assert main_probe(["--task", f"csv:{folder}", "--kmer-k", "2", "--heads", "logreg",
                       "--seeds", "2"]) == 0
    lines = progress_lines(capsys.readouterr().err, "kmer2/logreg")
    assert [line.split(",")[0] for line in lines] == ["1/2 fit (50%)", "2/2 fit (100%)",
                                                       "2/2 fit (100%)"]


def test_commands_take_threads_from_the_allocation(saved_model, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        table = tmp_path / "s.tsv"
        table.write_text("name\tsequence\na\tACGTACGTAA\n")
        assert main_embed(["--model", str(saved_model), "--sequences", str(table),
                           "--out", str(tmp_path / "e.npy"), "--no-progress"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
