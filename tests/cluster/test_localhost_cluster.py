"""The tier's cluster itself: a batch job runs, and accounting (slurmdbd) records it."""

from __future__ import annotations

from cluster_helpers import require_slurm, run, sacct_records, wait_for, wait_job_done


def test_batch_job_runs_and_is_accounted(tmp_path):
    require_slurm()
    out = tmp_path / "out.txt"
    job = run(["sbatch", "--parsable", "-n", "1", f"--output={out}",
               "--wrap", "echo task $SLURM_PROCID of $SLURM_NTASKS on $SLURM_JOB_NODELIST"])
    job_id = job.strip().split(";")[0]
    assert wait_job_done(job_id, timeout=60) == "COMPLETED"
    assert out.read_text().startswith("task 0 of 1 on ")
    records = wait_for(lambda: [r for r in sacct_records(job_id) if r["State"] == "COMPLETED"],
                       "sacct to record the job", timeout=60)
    assert records == [{"JobID": job_id, "State": "COMPLETED", "ExitCode": "0:0"}]
