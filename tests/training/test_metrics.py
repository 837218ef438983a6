"""Metrics file: mixed record kinds read back by polars, resume truncation, the PNG plot."""

from __future__ import annotations

import math

import polars as pl

from hnet_dna.training.metrics import MetricsWriter, plot_metrics, read_metrics


def test_records_of_different_kinds_read_back(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.write("train", 1, {"bpb": 2.5, "bases_per_chunk_s0": 3.0})
    writer.write("eval", 1, {"bpb": 2.4, "bpb_upper": math.nan})
    writer.write("baseline", 1, {"name": "markov-0", "bpb": 1.98})
    frame = read_metrics(tmp_path)
    assert frame["split"].to_list() == ["train", "eval", "baseline"]
    assert frame["bpb"].to_list() == [2.5, 2.4, 1.98]
    # NaN becomes null (JSON has no NaN), absent fields are null too.
    assert frame["bpb_upper"].to_list() == [None, None, None]
    assert frame["bases_per_chunk_s0"].to_list() == [3.0, None, None]


def test_resume_drops_records_after_the_checkpoint(tmp_path):
    writer = MetricsWriter(tmp_path)
    for step in range(1, 6):
        writer.write("train", step, {"loss": float(step)})
    MetricsWriter(tmp_path, truncate_after_step=3).write("train", 4, {"loss": 40.0})
    frame = read_metrics(tmp_path / "metrics.jsonl")
    assert frame["step"].to_list() == [1, 2, 3, 4]
    assert frame["loss"].to_list() == [1.0, 2.0, 3.0, 40.0]


def test_plot_is_written(tmp_path):
    writer = MetricsWriter(tmp_path)
    for step in (10, 20):
        writer.write("train", step, {"bpb": 2.0 - step / 100, "bases_per_chunk_s0": 2.5})
    writer.write("eval", 20, {"bpb": 1.9, "bpb_upper": 1.95})
    writer.write("baseline", 20, {"name": "markov-0", "bpb": 1.98})
    writer.write("baseline", 20, {"name": "markov-4", "bpb": 1.95})
    out = plot_metrics(tmp_path)
    assert out == tmp_path / "metrics.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pl.read_ndjson(tmp_path / "metrics.jsonl", infer_schema_length=None).height == 5
