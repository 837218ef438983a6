"""Correctness of the benchmark helpers (no timings asserted anywhere)."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import models, report
from benchmarks.timing import Stats, isolated, time_interleaved, time_repeats
from hnet_dna.model.build import build_model


def test_stats_median_spread_and_iqr():
    s = Stats.of([4.0, 1.0, 3.0, 2.0, 10.0])
    assert (s.median, s.min, s.max) == (3.0, 1.0, 10.0)
    assert s.spread == pytest.approx(3.0)
    assert s.iqr > 0
    assert Stats.of([2.0, 1.0]).iqr == 0.0  # too few repeats for quartiles


def test_time_repeats_counts_calls_and_runs_hook_outside():
    calls, hooks = [], []
    t = time_repeats(lambda: calls.append(1), warmup=2, repeats=3,
                     before_each=lambda: hooks.append(1))
    assert len(calls) == 5 and len(hooks) == 3
    assert len(t.wall.values) == 3 and len(t.cpu.values) == 3


def test_interleaved_alternates():
    order = []
    time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                        warmup=1, repeats=2)
    assert order == ["a", "b"] * 3


def _square(spec: dict) -> dict:
    return {"value": spec["x"] ** 2}


def _fail(spec: dict) -> dict:
    raise RuntimeError("boom")


def test_isolated_returns_result_or_error():
    assert isolated(_square, {"x": 3}) == {"value": 9}
    assert "boom" in isolated(_fail, {})["error"]


@pytest.mark.parametrize("kind", ["transformer", "mamba2"])
def test_match_isotropic_is_within_tolerance_and_consistent(kind):
    hnet = models.hnet_config("hnet_1stage")
    target = models.train_flops_per_base(hnet, 1024)
    m = models.match_isotropic(kind, target, 1024, hnet.d_model)
    assert m["gap"] <= models.MATCH_TOLERANCE
    cfg = models.isotropic_config(kind, m["d_model"], m["layers"], m["d_intermediate"])
    # The per-layer shortcut must agree with a direct count of the chosen model.
    assert models.train_flops_per_base(cfg, 1024) == pytest.approx(m["train_flops_per_base"])


def test_calibrate_routing_hits_target_compression():
    tiny = models.Widths(outer=64, inner=96)
    model = build_model(models.hnet_config("hnet_2stage", tiny), seed=0)
    ids = models.dna_batch(2, 1024, seed=3)
    with torch.no_grad():
        ratios = models.calibrate_routing(model, ids[:1])
    assert len(ratios) == 2
    for r in ratios:
        assert r == pytest.approx(models.TARGET_RATIO, rel=0.05)


def test_dna_batch_shapes_and_alphabet():
    ids = models.dna_batch(3, 500, seed=1)
    assert ids.shape == (3, 500) and ids.dtype == torch.int64
    assert int(ids.max()) <= 4 and int(ids.min()) >= 0


def test_report_targets_and_render(tmp_path):
    machine = {"cpu_model": "cpu", "cpu_flags": ["avx2"], "logical_cpus": 2, "usable_cpus": 2,
               "torch": "x", "threads": 1, "device": "cpu", "load_average": [0.1],
               "commit": "abc", "dirty": False, "time": "now"}
    payload = {"machine": machine, "matmul_peak": {"cpu_flops": 1e9, "wall_flops": 1e9},
               "load_average_after": [0.2], "options": {"quick": True}, "seconds": 60.0,
               "result": {"length": 4096, "batch": 1, "models": {"hnet_1stage": {
                   "layout": ["m2"], "train_flops_per_base": 1e7, "cpu_achieved_flops": 4e9,
                   "matmul": {"cpu_flops": 1e10}, "cpu_utilisation": 0.4, "utilisation": 0.3}}}}
    (tmp_path / "utilisation.json").write_text(json.dumps(payload))
    from benchmarks import utilisation

    text = report.render(tmp_path, {"utilisation": utilisation})
    assert "| utilisation >= 35% of fp32 matmul FLOP/s, 1-stage H-Net at 4 kb | 40% (30%)" in text
    assert "**met**" in text and "## utilisation" in text
