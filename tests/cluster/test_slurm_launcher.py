"""hydra's SLURM launcher (submitit) on the localhost cluster: one task, two DDP tasks, requeue,
and submitit's warning signal before the time limit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from cluster_helpers import (
    TINY,
    assert_same_weights,
    final_eval,
    job_field,
    metrics,
    pretrain,
    require_slurm,
    run,
    sacct_states,
    slurm_launcher,
    submitit_job_ids,
    wait_for,
    wait_job_done,
    weights,
)

from hnet_dna.training.stop import submitit_signal


def logs(sweep: Path, job_id: str) -> str:
    """Everything the job logged: submitit's task logs and hydra's job log."""
    files = [*(sweep / ".submitit" / job_id).glob("*_log.*"), *(sweep / "0").glob("*.log")]
    return "".join(f.read_text() for f in files)


@pytest.fixture(autouse=True)
def _slurm():
    require_slurm()


def test_a_one_task_matches_the_direct_run(tmp_path):
    steps = 20
    args = [*TINY, f"trainer.max_steps={steps}", "data.batch_size=2"]
    sweep = tmp_path / "sweep"
    pretrain([*slurm_launcher(sweep), *args])
    [job_id] = submitit_job_ids(sweep)
    run_dir = sweep / "0"
    for name in (".hydra/config.yaml", "config.yaml", "run.json", "metrics.jsonl", "metrics.png",
                 f"checkpoints/step-{steps:08d}/model.safetensors",
                 f"checkpoints/step-{steps:08d}/training_state.pt"):
        assert (run_dir / name).is_file(), name
    log = (sweep / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
    assert f"run folder: {run_dir}" in log and "held-out bits per base" in log
    # submitit returns once the result is written; the job ends a moment later
    assert wait_job_done(job_id) == "COMPLETED"
    assert sacct_states(job_id) == ["COMPLETED"]

    direct = tmp_path / "direct"
    pretrain([f"hydra.run.dir={direct}", *args])
    got, expected = final_eval(run_dir), final_eval(direct)
    assert got["step"] == expected["step"] == steps
    assert got["bpb"] == expected["bpb"] and got["bpb_upper"] == expected["bpb_upper"]
    assert_same_weights(weights(run_dir, steps), weights(direct, steps))


def test_b_two_tasks_ddp_match_one_process_at_the_same_global_batch(tmp_path):
    steps = 5
    sweep = tmp_path / "sweep"
    # Two ranks x 2 windows: rank r takes every 2nd window of the global order, so one process
    # drawing 4 windows per step sees the same global batch. The ratio loss is a per-micro-batch
    # term (it depends on how windows are grouped), so only the NLL trains: ratio_alpha=0.
    # AdamW's first updates are lr * g / (|g| + eps): with eps=1e-8 an element whose gradient is
    # near 1e-8 (a few of them here) moves by an amount set by the summation order's last bits.
    # eps=1e-3 keeps the update error proportional to the gradient error, which is what is tested.
    common = [*TINY, f"trainer.max_steps={steps}", "trainer.log_every=1",
              "trainer.loss.ratio_alpha=0", "trainer.optim.eps=1e-3"]
    pretrain([*slurm_launcher(sweep, tasks=2), *common, "data.batch_size=2"])
    [job_id] = submitit_job_ids(sweep)
    assert (sweep / ".submitit" / job_id / f"{job_id}_1_log.err").is_file()  # task 1 ran
    state = torch.load(sweep / "0" / "checkpoints" / f"step-{steps:08d}" / "training_state.pt",
                       weights_only=False)
    assert state["world_size"] == 2
    single = tmp_path / "single"
    pretrain([f"hydra.run.dir={single}", *common, "data.batch_size=4"])
    got, expected = weights(sweep / "0", steps), weights(single, steps)
    assert got.keys() == expected.keys()
    # DDP matches one process within test_distributed.py's tolerance.
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")
    two = [r for r in metrics(sweep / "0") if r["split"] == "train"]
    one = [r for r in metrics(single) if r["split"] == "train"]
    torch.testing.assert_close(torch.tensor([r["loss"] for r in two], dtype=torch.float64),
                               torch.tensor([r["loss"] for r in one], dtype=torch.float64),
                               rtol=1e-6, atol=1e-7)


def _launch_and_wait_for_checkpoint(sweep: Path, args: list[str], step: int
                                    ) -> tuple[subprocess.Popen, str]:
    process = pretrain([*slurm_launcher(sweep), *args], background=True)
    checkpoint = sweep / "0" / "checkpoints" / f"step-{step:08d}" / "training_state.pt"

    def ready() -> bool:
        assert process.poll() is None, process.communicate()[0]
        return checkpoint.is_file()

    wait_for(ready, f"checkpoint {checkpoint}", timeout=180, every=0.1)
    [job_id] = submitit_job_ids(sweep)
    return process, job_id


def _finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out
    return out


def test_c_requeued_job_resumes_and_ends_bit_identical(tmp_path):
    steps = 150
    args = [*TINY, f"trainer.max_steps={steps}", "trainer.checkpoint.every=25",
            "trainer.checkpoint.keep_last=20", "data.batch_size=2"]
    sweep = tmp_path / "sweep"
    process, job_id = _launch_and_wait_for_checkpoint(sweep, args, 25)
    run(["scontrol", "requeue", job_id])
    _finish(process)
    run_dir = sweep / "0"
    assert wait_job_done(job_id) == "COMPLETED"
    assert job_field(job_id, "Restarts") == "1"
    assert sacct_states(job_id) == ["REQUEUED", "COMPLETED"]
    # The second run resumed from a checkpoint (not from scratch) and finished the run.
    assert "resumed from" in logs(sweep, job_id)
    direct = tmp_path / "direct"
    pretrain([f"hydra.run.dir={direct}", *args])
    assert_same_weights(weights(run_dir, steps), weights(direct, steps))
    assert final_eval(run_dir)["bpb"] == final_eval(direct)["bpb"]


def test_d_warning_signal_checkpoints_at_the_next_step_and_requeues(tmp_path):
    """submitit's signal (``signal_delay_s`` before the limit; USR2) sent by hand."""
    steps = 150
    args = [*TINY, f"trainer.max_steps={steps}", "trainer.checkpoint.every=50",
            "trainer.checkpoint.keep_last=20", "data.batch_size=2"]
    sweep = tmp_path / "sweep"
    process, job_id = _launch_and_wait_for_checkpoint(sweep, args, 50)
    run(["scancel", f"--signal={submitit_signal().name.removeprefix('SIG')}", job_id])
    _finish(process)
    run_dir = sweep / "0"
    # A checkpoint off the every-50 grid: written at the step boundary after the signal.
    extra = [p.name for p in (run_dir / "checkpoints").iterdir()
             if int(p.name.removeprefix("step-")) % 50]
    assert len(extra) == 1, extra
    assert wait_job_done(job_id) == "COMPLETED"
    assert job_field(job_id, "Restarts") == "1"
    assert sacct_states(job_id) == ["REQUEUED", "COMPLETED"]
    direct = tmp_path / "direct"
    pretrain([f"hydra.run.dir={direct}", *args])
    assert_same_weights(weights(run_dir, steps), weights(direct, steps))
