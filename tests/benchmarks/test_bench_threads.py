"""The thread benchmark's launch environment and step-time arithmetic (no timings asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_threads


def test_tasks_get_the_slurm_environment_and_no_thread_override(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    env = bench_threads.task_env(Path("."), rank=1, tasks=2, cpus=1, port=1234)
    assert "OMP_NUM_THREADS" not in env and "SLURM_JOB_ID" not in env
    assert (env["SLURM_PROCID"], env["SLURM_CPUS_PER_TASK"], env["SLURM_TASKS_PER_NODE"],
            env["RANK"], env["WORLD_SIZE"], env["MASTER_PORT"]) == ("1", "1", "2", "1", "2",
                                                                      "1234")
    single = bench_threads.task_env(Path("."), rank=0, tasks=1, cpus=2, port=1)
    assert "RANK" not in single and single["SLURM_CPUS_ON_NODE"] == "2"


def test_step_time_skips_the_first_interval(tmp_path):
    # global batch 2 x 10 tokens: 20 tokens per step
    records = [{"split": "train", "step": 4, "tokens_per_s": 1.0},  # warm-up: ignored
               {"split": "eval", "step": 4, "bpb": 2.0},
               {"split": "train", "step": 8, "tokens_per_s": 10.0},  # 2 s/step
               {"split": "train", "step": 10, "tokens_per_s": 5.0}]  # 4 s/step
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert bench_threads.step_time(tmp_path, batch=2, context=10) == (4 * 2 + 2 * 4) / 6


def test_summary_gives_the_ratio_per_code():
    run = {"threads": [1], "load_before": 1.0, "load_after": 2.0}
    result = {"usable_cpus": 2, "runs": {"after": {
        "1x2": [{**run, "seconds_per_step": 1.0}, {**run, "seconds_per_step": 3.0}],
        "2x1": [{**run, "seconds_per_step": 1.5}, {**run, "seconds_per_step": 2.5}]}}}
    lines = bench_threads.summarize(result)
    assert lines[2] == "| after | 1x2 | [1] | 2.000 | 1.000, 3.000 |  |"
    assert lines[3] == "| after | 2x1 | [1] | 2.000 | 1.500, 2.500 | 1.00x |"
    assert lines[-1] == "1-minute load average around the runs: 1.00 to 2.00 on 2 CPUs."
