"""scripts/slurm/pretrain.sbatch as shipped: two srun-launched ranks, SIGUSR1 before the limit
(sent here with ``scancel --signal=USR1``) -> checkpoint, requeue by the script, resume."""

from __future__ import annotations

import sys

import pytest
from cluster_helpers import (
    ROOT,
    TWO_RANK_ARGS,
    TWO_RANK_STEPS,
    assert_same_weights,
    job_field,
    python_env,
    require_slurm,
    run,
    sacct_states,
    wait_for,
    wait_job_done,
    weights,
)

STEPS, ARGS = TWO_RANK_STEPS, TWO_RANK_ARGS


@pytest.fixture(autouse=True)
def _slurm():
    require_slurm()


def test_f_sbatch_script_stops_on_usr1_requeues_and_resumes(tmp_path, two_rank_reference):
    run_dir = tmp_path / "run"
    log = tmp_path / "job.out"
    # The #SBATCH lines ask for 8 GPUs; sbatch options override them for this CPU node.
    submit = ["sbatch", "--parsable", "--gpus-per-node=0", "--ntasks-per-node=2",
              "--cpus-per-task=1", "--time=15", f"--output={log}",
              str(ROOT / "scripts/slurm/pretrain.sbatch"), *ARGS]
    job_id = run(submit, env=python_env(PYTHON=sys.executable, RUN_DIR=str(run_dir)),
                 cwd=tmp_path).strip().split(";")[0]
    checkpoint = run_dir / "checkpoints" / f"step-{50:08d}" / "training_state.pt"
    wait_for(checkpoint.is_file, f"checkpoint {checkpoint}", timeout=180, every=0.1)
    run(["scancel", "--signal=USR1", job_id])
    assert wait_job_done(job_id, timeout=400) == "COMPLETED", log.read_text()
    text = log.read_text()
    assert "stopped by a signal after a checkpoint: requeueing job" in text
    assert "(restart 1): 2 ranks on" in text and "resumed from" in text
    assert job_field(job_id, "Restarts") == "1"
    assert sacct_states(job_id) == ["REQUEUED", "COMPLETED"]
    # The stop's own checkpoint lies off the every-50 grid.
    steps = sorted(int(p.name.removeprefix("step-")) for p in (run_dir / "checkpoints").iterdir())
    assert [s for s in steps if s % 50] and steps[-1] == STEPS, steps

    # The same two ranks without SLURM or a stop (torchrun): bit-identical weights.
    assert_same_weights(weights(run_dir, STEPS), weights(two_rank_reference, STEPS))
