"""SIGUSR1 (SLURM's warning before a job's limit) stops a run at a step boundary, resumably."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file
from test_pretrain_cli import TINY_MODEL

from hnet_dna.training.stop import EXIT_RESUMABLE

ROOT = Path(__file__).resolve().parents[2]
STEPS = 60
SETTINGS = [f"trainer.max_steps={STEPS}", "trainer.log_every=1", "trainer.progress_bar=false",
            "trainer.baselines=false", "trainer.eval_max_batches=1", "trainer.device=cpu",
            "data.context_length=64", "data.batch_size=2", *TINY_MODEL]


def pretrain(run_dir: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "hnet_dna.cli", "pretrain", f"hydra.run.dir={run_dir}", *SETTINGS],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def train_steps(run_dir: Path) -> list[int]:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    records = [json.loads(line) for line in lines if line.endswith("}")]
    return [r["step"] for r in records if r.get("split") == "train"]


def final_weights(run_dir: Path) -> dict:
    return load_file(run_dir / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors")


def test_sigusr1_checkpoints_at_the_next_step_and_resume_is_bit_identical(tmp_path):
    stopped = tmp_path / "stopped"
    process = pretrain(stopped)
    deadline = time.monotonic() + 120
    while not train_steps(stopped):  # training has started: the handler is installed
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no training step within 120 s"
        time.sleep(0.02)
    seen = max(train_steps(stopped))
    process.send_signal(signal.SIGUSR1)
    out, err = process.communicate(timeout=120)
    logged = out + err
    assert process.returncode == EXIT_RESUMABLE, logged
    checkpoints = sorted(p.name for p in (stopped / "checkpoints").iterdir())
    assert len(checkpoints) == 1, checkpoints  # no periodic ones: this is the stop's
    step = int(checkpoints[0].removeprefix("step-"))
    # The step in flight finished; the run stopped right after it, long before max_steps.
    assert seen <= step < STEPS
    assert max(train_steps(stopped)) == step
    assert "stop requested (SIGUSR1)" in logged and f"step {step} written" in logged

    resumed = pretrain(stopped)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    direct = pretrain(tmp_path / "direct")
    _, err = direct.communicate(timeout=300)
    assert direct.returncode == 0, err
    expected, got = final_weights(tmp_path / "direct"), final_weights(stopped)
    assert expected.keys() == got.keys()
    for name in expected:
        assert got[name].equal(expected[name]), name
