"""The variant-rate benchmark pieces: the GPU check section in smoke mode, the report row."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import torch

from benchmarks import report, variant_rate
from benchmarks.gpu_variants import variant_rate as gpu_section
from benchmarks.gpu_variants import variant_rate_md


def test_gpu_section_smoke_scores_both_paths_alike():
    end = time.perf_counter() + 300
    ctx = SimpleNamespace(plan=SimpleNamespace(smoke=True, widths=(32, 64)),
                          device=torch.device("cpu"), left=lambda: end - time.perf_counter(),
                          need_gpu_or_smoke=lambda: None)
    r = gpu_section(ctx)
    assert len(r["rows"]) == 2
    for row in r["rows"].values():
        assert row["alts"] >= 8 and row["variants_per_s"] > 0
    assert r["max_llr_diff"] < 1e-5  # fp32 on the CPU: the shared prefix changes nothing
    md = "\n".join(variant_rate_md(r))
    assert "| batch 8, shared prefix |" in md and "skipped" not in md


def test_report_judges_the_variant_rate_target(tmp_path):
    machine = {"cpu_model": "cpu", "cpu_flags": ["avx2"], "logical_cpus": 2, "usable_cpus": 2,
               "torch": "x", "threads": 1, "device": "cpu", "load_average": [0.1],
               "commit": "abc", "dirty": False, "time": "now"}
    arm = {"alts": 200, "wall_s": 10.0, "cpu_s": 8.0, "variants_per_s": 20.0,
           "cpu_variants_per_s": 25.0}
    row = {"settings": {"window": 256, "batch": 16, "variants": 200, "strand_average": True,
                        "threads": 1},
           "baseline": arm, "whole": arm, "shared": dict(arm, cpu_variants_per_s=32.5),
           "reference": "baseline", "speedup_cpu": 1.3, "speedup_wall": 1.25,
           "max_score_diff": {"llr": 2e-6}}
    payload = {"machine": machine, "matmul_peak": {"cpu_flops": 1e9, "wall_flops": 1e9},
               "load_average_after": [0.2], "options": {"quick": False}, "seconds": 60.0,
               "result": {"hnet_1stage": row}}
    (tmp_path / "variant_rate.json").write_text(json.dumps(payload))
    text = report.render(tmp_path, {"variant_rate": variant_rate})
    assert ("| score-variants variants/s >= 1.7x today's at the default window: hnet_1stage "
            "(window 256, batch 16, both strands) | 1.30x (1.25x) vs baseline | **missed** |"
            in text)
    assert "| hnet_1stage | 256 | 16 | both (averaged) | shared | 32.5 | 20.0 |" in text
