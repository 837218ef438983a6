"""Driving the tier's localhost SLURM cluster from the tests: submit, wait, inspect."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def require_slurm() -> None:
    if "SLURM_CONF" not in os.environ:
        pytest.skip("no SLURM_CONF: run through scripts/cluster/run_tier.sh (make test-cluster)")


def run(argv: Sequence[str], **kwargs) -> str:
    """Run a SLURM command (or any), its stdout; a failure shows stdout and stderr."""
    done = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def wait_for(condition: Callable[[], object], what: str, timeout: float = 240.0,
             every: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def job_field(job_id: str, name: str) -> str | None:
    """``Name=value`` from ``scontrol show job`` (None once the job has left slurmctld)."""
    done = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                          text=True)
    for part in done.stdout.split():
        key, _, value = part.partition("=")
        if key == name:
            return value
    return None


def sacct_records(job_id: str) -> list[dict[str, str]]:
    """Accounting records of a job, every run of it (``--duplicates``), allocation lines only."""
    fields = ["JobID", "State", "ExitCode"]
    out = run(["sacct", "-j", job_id, "--duplicates", "-X", "-n", "-P",
               f"--format={','.join(fields)}"])
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]


def sacct_states(job_id: str, final: str = "COMPLETED", timeout: float = 60.0) -> list[str]:
    """The states of every run of a job once accounting has its ``final`` one."""
    def recorded() -> list[str] | None:
        states = [r["State"] for r in sacct_records(job_id)]
        return states if states and states[-1] == final else None

    return list(wait_for(recorded, f"sacct to record job {job_id} {final}", timeout))


def wait_job_done(job_id: str, timeout: float = 300.0) -> str:
    """Wait until the job left the queue; its final state from slurmctld."""
    def finished() -> str | None:
        state = job_field(job_id, "JobState")
        return state if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                  "NODE_FAIL", "OUT_OF_MEMORY") else None

    return str(wait_for(finished, f"job {job_id} to finish", timeout))


def python_env(**extra: str) -> dict[str, str]:
    """The environment jobs run with: this checkout importable, one thread per process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


# A tiny model on bundled yeast chr I: a few seconds of startup, ~50 ms per step on one core.
TINY = [
    "trainer.progress_bar=false", "trainer.baselines=false", "trainer.eval_max_batches=2",
    "trainer.device=cpu", "trainer.log_every=5", "data.context_length=64",
    "model.arch_layout=[m1,[t1],m1]", "model.d_model=[32,64]", "model.d_intermediate=[0,0]",
    "model.ssm_cfg.d_state=16", "model.ssm_cfg.headdim=16", "model.attn_cfg.num_heads=[2,2]",
    "model.attn_cfg.rotary_emb_dim=[8,8]",
]


# Two ranks, 150 steps, a checkpoint every 50: the sbatch script and the multi-node tests compare
# their stopped, killed or requeued runs with one uninterrupted torchrun of these settings.
TWO_RANK_STEPS = 150
TWO_RANK_ARGS = [*TINY, f"trainer.max_steps={TWO_RANK_STEPS}", "trainer.checkpoint.every=50",
                 "trainer.checkpoint.keep_last=20", "data.batch_size=2"]


def torchrun(*options: str) -> list[str]:
    """argv of ``torchrun OPTIONS -m hnet_dna.cli pretrain`` (add the overrides)."""
    return [sys.executable, "-m", "torch.distributed.run", *options,
            "-m", "hnet_dna.cli", "pretrain"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def slurm_launcher(sweep_dir: Path, tasks: int = 1) -> list[str]:
    """hydra's SLURM launcher (hnet_dna/conf/hydra/launcher/slurm.yaml) on the CPU node."""
    return ["--multirun", "hydra/launcher=slurm", f"hydra.sweep.dir={sweep_dir}",
            "hydra.launcher.gpus_per_node=0", f"hydra.launcher.tasks_per_node={tasks}",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=15"]


def pretrain(args: Sequence[str], background: bool = False) -> subprocess.Popen | str:
    """``hnet-dna pretrain ARGS`` from this checkout: its stdout, or the running process."""
    argv = [sys.executable, "-m", "hnet_dna.cli", "pretrain", *args]
    if background:
        return subprocess.Popen(argv, env=python_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return run(argv, env=python_env(), timeout=600)


def submitit_job_ids(sweep_dir: Path) -> list[str]:
    """Job ids of a hydra SLURM sweep (submitit's folder per job: .submitit/<id>)."""
    folder = sweep_dir / ".submitit"
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if p.name.split("_")[0].isdigit()),
                  key=lambda name: [int(part) for part in name.split("_")])


def metrics(run_dir: Path) -> list[dict]:
    import json

    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def final_eval(run_dir: Path) -> dict:
    return [r for r in metrics(run_dir) if r["split"] == "eval"][-1]


def weights(run_dir: Path, step: int) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "checkpoints" / f"step-{step:08d}" / "model.safetensors")


def assert_same_weights(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].equal(expected[name]), name
