"""Probing: heads and metrics on a small real task (yeast coding vs non-coding), fine-tuning,
metric helpers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from eval_data import YEAST_GFF

from hnet_dna.errors import InputError
from hnet_dna.evaluation.embeddings import Embedder
from hnet_dna.evaluation.kmer_features import kmer_features
from hnet_dna.evaluation.metrics import (
    classification_metrics,
    label_by_rules,
    pairwise_class_aurocs,
    parse_rule,
    score_aucs,
)
from hnet_dna.evaluation.probing import embed_task, finetune, probe_features, summarize
from hnet_dna.evaluation.runner import PerBaseForward
from hnet_dna.evaluation.task_builders import build_task
from hnet_dna.evaluation.tasks import Task, TaskSplit


@pytest.fixture(scope="module")
def coding_task(yeast) -> Task:
    return build_task("coding", yeast, YEAST_GFF, window=200, block=5_000, seed=0,
                      max_per_class=100)


def test_kmer_probe_separates_coding_from_non_coding(coding_task):
    feats = {s: kmer_features(d.sequences, ks=(3,)) for s, d in coding_task.splits.items()}
    labels = {s: d.labels for s, d in coding_task.splits.items()}
    rows = probe_features("kmer3", feats, labels, heads=("logreg",), seeds=(0,))
    assert len(rows) == 1 and rows[0]["head"] == "logreg" and rows[0]["C"] > 0
    # codon usage separates the classes (24 + 24 test windows); a pipeline that mixed up
    # labels or splits would sit near 0.5
    assert np.mean([r["auroc"] for r in rows]) > 0.7


def test_hnet_features_through_the_mlp_head(coding_task, model1):
    small = Task("t", {s: TaskSplit(d.sequences[:10] + d.sequences[-10:],
                                    np.r_[d.labels[:10], d.labels[-10:]])
                       for s, d in coding_task.splits.items()}, coding_task.classes)
    emb = Embedder(PerBaseForward(model1, batch_size=32), ["final", "main"], progress=False)
    feats = embed_task(emb, small)
    assert feats["train"].shape == (len(small.splits["train"]), 32 + 64)
    rows = probe_features("hnet", feats, {s: d.labels for s, d in small.splits.items()},
                          heads=("mlp", "logreg"), seeds=(0,))
    summary = summarize(rows)
    assert summary.height == 2 and set(summary["head"]) == {"mlp", "logreg"}


def test_summarize_mean_and_spread():
    rows = [{"features": "f", "head": "h", "seed": s, "mcc": m, "accuracy": 0.5,
             "macro_f1": 0.5, "auroc": 0.5} for s, m in enumerate([0.2, 0.4])]
    out = summarize(rows)
    assert out["mcc_mean"][0] == pytest.approx(0.3)
    assert out["mcc_std"][0] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert out["seeds"][0] == 2


def test_finetune_trains_a_copy(model1):
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("AC" if i % 2 else "GT"), 12)) for i in range(24)]
    labels = np.array([i % 2 for i in range(24)])
    task = Task("toy", {"train": TaskSplit(seqs[:16], labels[:16]),
                        "test": TaskSplit(seqs[16:], labels[16:])}, ["gt", "ac"])
    before = model1.embeddings.weight.detach().clone()
    metrics = finetune(model1, task, epochs=2, lr=3e-3, batch_size=8, progress=False)
    assert torch.equal(model1.embeddings.weight, before)  # the original is untouched
    assert metrics["accuracy"] == 1.0  # base composition alone separates the classes


def test_classification_metrics_known_values():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    m = classification_metrics(y, proba.argmax(1), proba)
    assert m["accuracy"] == 0.75 and m["auroc"] == 1.0
    assert m["mcc"] == pytest.approx(1 / np.sqrt(3))
    three = classification_metrics(np.array([0, 1, 2]), np.array([0, 1, 2]), np.eye(3))
    assert three["macro_f1"] == 1.0 and three["auroc"] == 1.0


def test_label_rules_and_score_aucs():
    t = pl.DataFrame({"AF": [0.0001, 0.0002, 0.2, 0.3, 0.01, None],
                      "llr": [-3.0, -2.0, -0.5, -1.0, 0.0, -9.0],
                      "cos_dist": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
    lab = label_by_rules(t, "AF<0.001", "AF>=0.05")
    assert lab["label"].to_list() == [1, 1, 0, 0, None, None]
    aucs = {r["score"]: r for r in score_aucs(lab).iter_rows(named=True)}
    assert aucs["llr"]["auroc"] == 1.0 and aucs["llr"]["direction"] == "lower"
    assert aucs["cos_dist"]["auroc"] == 0.0 and aucs["llr"]["n_pos"] == 2
    with pytest.raises(ValueError, match="match both"):
        label_by_rules(t, "AF<0.5", "AF>0.1")
    with pytest.raises(InputError, match="no column 'MAF'"):
        label_by_rules(t, "MAF<0.5", "AF>0.1")
    with pytest.raises(ValueError, match="bad label rule"):
        parse_rule("AF ~ 3")


def test_pairwise_class_aurocs():
    t = pl.DataFrame({"c": ["a", "a", "b", "b"], "llr": [-5.0, -4.0, -1.0, 0.0]})
    out = pairwise_class_aurocs(t, "c", "llr", [("a", "b"), ("b", "a")])
    assert out["auroc"].to_list() == [1.0, 0.0]
