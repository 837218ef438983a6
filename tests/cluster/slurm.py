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
