"""Aggregation: figures of merit by hand, tables and plots from a constructed sweep folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hnet_dna.baselines.aggregate import (
    LR_GRID_CSV,
    MATCH_CSV,
    PLOT_BASES,
    PLOT_FLOPS,
    RESULTS_CSV,
    RESULTS_MD,
    aggregate,
    first_crossing,
    half_decade_step,
    lrs_to_widen,
    markdown_table,
    value_at,
)


def test_first_crossing_interpolates_between_evaluations():
    x, y = np.array([100.0, 200.0, 400.0]), np.array([2.0, 1.8, 1.4])
    assert math.isclose(first_crossing(x, y, 1.6), 300.0)
    assert first_crossing(x, y, 1.8) == 200.0
    assert first_crossing(x, y, 2.5) == 100.0  # already below at the first evaluation
    assert math.isnan(first_crossing(x, y, 1.0))  # never reached


def test_value_at_inside_range_only():
    x, y = np.array([10.0, 20.0]), np.array([3.0, 2.0])
    assert value_at(x, y, 15.0) == 2.5
    assert math.isnan(value_at(x, y, 5.0))
    assert math.isnan(value_at(x, y, 25.0))


def _run(root: Path, model: str, family: str, lr: float, curve: list[tuple[int, float]],
         flops: float, seed: int = 0) -> None:
    folder = root / "runs" / "dna1" / model / f"lr{lr:g}-seed{seed}"
    folder.mkdir(parents=True)
    with open(folder / "metrics.jsonl", "w") as handle:
        for step, value in curve:
            bpb = value if math.isfinite(value) else None  # as the metrics writer stores NaN
            if bpb is None:
                handle.write(json.dumps({"split": "eval", "step": step, "bases_seen": step * 100.0,
                                         "bpb": None, "other_bpb": None}) + "\n")
                continue
            handle.write(json.dumps({"split": "train", "step": step, "bpb": bpb + 0.1}) + "\n")
            handle.write(json.dumps({"split": "eval", "step": step, "bases_seen": step * 100.0,
                                     "bpb": bpb, "other_bpb": bpb + 0.2}) + "\n")
    bases = curve[-1][0] * 100
    result = {
        "status": "finished", "corpus": "dna1", "kind": "dna", "model": model,
        "family": family, "tokenizer": "unit", "layout": "[]", "lr": lr, "seed": seed,
        "bases": bases, "steps": curve[-1][0],
        "final": {"bpb": curve[-1][1], "other_bpb": curve[-1][1] + 0.2},
        "params": 1000, "non_embedding_params": 900, "flops_per_base": flops,
        "train_flops_per_base": 3 * flops, "flops_per_base_target": flops,
        "flops_breakdown": {}, "bases_per_token": 1.0, "compression": [],
        "bases_per_s": 50.0,
    }
    (folder / "result.json").write_text(json.dumps(result))


def test_aggregate_constructed_sweep(tmp_path):
    _run(tmp_path, "hnet", "hnet", 1e-3, [(1, 2.0), (2, 1.6), (4, 1.2)], flops=10.0)
    _run(tmp_path, "hnet", "hnet", 3e-3, [(1, 2.1), (2, 1.9), (4, 1.5)], flops=10.0)  # worse lr
    _run(tmp_path, "iso", "isotropic", 1e-3, [(1, 2.0), (2, 1.8), (4, 1.4)], flops=20.0)
    failed = tmp_path / "runs" / "dna1" / "kmer" / "lr0.001-seed0"
    failed.mkdir(parents=True)
    (failed / "failure.json").write_text(json.dumps({"error": "RuntimeError: boom"}))

    frames = aggregate(tmp_path, command="python run.py -m")
    results = pl.read_csv(tmp_path / RESULTS_CSV)
    hnet = results.filter(pl.col("model") == "hnet").row(0, named=True)
    assert hnet["lr"] == 1e-3 and hnet["final_bpb"] == 1.2
    assert hnet["lrs_tried"] == "0.001;0.003"
    assert hnet["final_other_bpb"] == 1.4
    # Equal FLOPs = the H-Net's total (3 * 10 * 400 = 12000): the isotropic model (60 per base)
    # got there after 200 bases, where its curve reads 1.8.
    iso = results.filter(pl.col("model") == "iso").row(0, named=True)
    assert math.isclose(iso["bpb_at_equal_flops"], 1.8)
    assert iso["flops_vs_hnet"] == 2.0
    # H-Net reaches the isotropic final 1.4 halfway between 200 (1.6) and 400 (1.2) bases.
    match = pl.read_csv(tmp_path / MATCH_CSV).row(0, named=True)
    assert math.isclose(match["hnet_bases_to_match"], 300.0)
    assert math.isclose(match["ratio"], 400 / 300)
    assert frames["problems"]["status"].to_list() == ["failed"]
    markdown = (tmp_path / RESULTS_MD).read_text()
    assert "python run.py -m" in markdown and "RuntimeError: boom" in markdown
    for plot in (PLOT_BASES, PLOT_FLOPS):
        assert (tmp_path / plot).stat().st_size > 1000
    # Grid: the H-Net tried 1e-3 and 3e-3 and kept 1e-3, the smallest: at the edge.
    grid = pl.read_csv(tmp_path / LR_GRID_CSV)
    row = grid.filter(pl.col("model") == "hnet").row(0, named=True)
    assert row["lr=0.001"] == 1.2 and row["lr=0.003"] == 1.5
    assert row["best_lr"] == 1e-3 and row["n_lrs"] == 2 and row["best_lr_interior"] is False
    assert grid.filter(pl.col("model") == "iso")["lr=0.003"].to_list() == [None]
    assert "Kept LR at the edge of its grid: dna1/hnet (0.001), dna1/iso (0.001)" in markdown


def test_records_archived_and_aggregated_again(tmp_path):
    """--out elsewhere copies each finished/failed run's records (no checkpoints, no interrupted
    runs); aggregating that copy gives the same tables."""
    root, out = tmp_path / "sweep", tmp_path / "results"
    _run(root, "hnet", "hnet", 1e-3, [(1, 2.0), (2, 1.6), (4, 1.2)], flops=10.0)
    _run(root, "iso", "isotropic", 1e-3, [(1, 2.0), (2, 1.8), (4, 1.4)], flops=20.0)
    (root / "runs" / "dna1" / "hnet" / "lr0.001-seed0" / "checkpoints").mkdir()
    interrupted = root / "runs" / "dna1" / "iso" / "lr0.003-seed0"
    interrupted.mkdir()
    (interrupted / "metrics.jsonl").write_text("")
    first = aggregate(root, out)
    kept = sorted(str(p.relative_to(out)) for p in (out / "runs").rglob("*") if p.is_file())
    assert kept == [f"runs/dna1/{m}/lr0.001-seed0/{f}" for m in ("hnet", "iso")
                    for f in ("metrics.jsonl", "result.json")]
    assert first["problems"]["status"].to_list() == ["incomplete"]
    again = aggregate(out, tmp_path / "again")
    assert again["results"].equals(first["results"]) and again["match"].equals(first["match"])


def test_lr_grid_interior_and_diverged_runs(tmp_path):
    """A best LR with a tried LR on each side is interior; a run whose final value is not
    finite never wins and shows as missing."""
    _run(tmp_path, "hnet", "hnet", 1e-3, [(1, 2.0), (4, 1.5)], flops=10.0)
    _run(tmp_path, "hnet", "hnet", 3e-3, [(1, 2.0), (4, 1.3)], flops=10.0)
    _run(tmp_path, "hnet", "hnet", 1e-2, [(1, 2.0), (4, 1.4)], flops=10.0)
    _run(tmp_path, "iso", "isotropic", 1e-3, [(1, 2.0), (4, 1.6)], flops=10.0)
    _run(tmp_path, "iso", "isotropic", 1e-2, [(1, 2.0), (4, float("nan"))], flops=10.0)
    grid = aggregate(tmp_path)["lr_grid"]
    hnet = grid.filter(pl.col("model") == "hnet").row(0, named=True)
    assert hnet["best_lr"] == 3e-3 and hnet["best_lr_interior"] is True
    iso = grid.filter(pl.col("model") == "iso").row(0, named=True)
    assert iso["best_lr"] == 1e-3 and iso["lr=0.01"] is None and not iso["best_lr_interior"]
    # iso: its only finite LR is 1e-3 (1e-2 diverged): one half step each way; the H-Net: none.
    assert lrs_to_widen(grid) == [("dna1", "iso", 3e-4), ("dna1", "iso", 3e-3)]
    _run(tmp_path, "iso", "isotropic", 3e-3, [(1, 2.0), (4, 1.7)], flops=10.0)
    assert lrs_to_widen(aggregate(tmp_path)["lr_grid"]) == [("dna1", "iso", 3e-4)]
    _run(tmp_path, "iso", "isotropic", 3e-4, [(1, 2.0), (4, 1.65)], flops=10.0)
    assert lrs_to_widen(aggregate(tmp_path)["lr_grid"]) == []


def test_other_seeds_give_the_spread_and_never_the_choice(tmp_path):
    """A lucky seed 1 at another LR must not change the kept LR or the numbers (seed 0 is the
    tuning seed); replicates are reported with their spread."""
    _run(tmp_path, "hnet", "hnet", 1e-3, [(1, 2.0), (4, 1.5)], flops=10.0)
    _run(tmp_path, "hnet", "hnet", 3e-3, [(1, 2.0), (4, 1.3)], flops=10.0)
    _run(tmp_path, "hnet", "hnet", 3e-3, [(1, 2.0), (4, 1.35)], flops=10.0, seed=1)
    _run(tmp_path, "hnet", "hnet", 1e-3, [(1, 2.0), (4, 1.1)], flops=10.0, seed=2)
    _run(tmp_path, "iso", "isotropic", 1e-3, [(1, 2.0), (4, 1.6)], flops=10.0)
    frames = aggregate(tmp_path)
    hnet = frames["results"].filter(pl.col("model") == "hnet").row(0, named=True)
    assert hnet["lr"] == 3e-3 and hnet["final_bpb"] == 1.3
    seeds = frames["seeds"].filter(pl.col("lr") == 3e-3).row(0, named=True)
    assert seeds["seeds"] == [0, 1] and seeds["final_bpb_per_seed"] == [1.3, 1.35]
    assert math.isclose(seeds["spread"], 0.05) and math.isclose(seeds["mean_final_bpb"], 1.325)
    assert set(frames["curves"]["seed"].to_list()) == {0}
    assert "## Seed replicates" in (tmp_path / RESULTS_MD).read_text()


def test_half_decade_steps():
    assert [half_decade_step(x, up=True) for x in (1e-3, 3e-3, 1e-2)] == pytest.approx(
        [3e-3, 1e-2, 3e-2])
    assert [half_decade_step(x, up=False) for x in (1e-3, 3e-3, 3e-4)] == pytest.approx(
        [3e-4, 1e-3, 1e-4])


def test_markdown_table_formats_missing_and_large_values():
    frame = pl.DataFrame({"a": ["x"], "b": [float("nan")], "c": [123456789.0], "d": [0.123456]})
    lines = markdown_table(frame).splitlines()
    assert lines[0] == "| a | b | c | d |"
    assert lines[2] == "| x | – | 1.235e+08 | 0.1235 |"
