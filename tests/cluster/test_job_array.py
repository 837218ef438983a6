"""The data-efficiency pipeline as a SLURM job array (hydra multirun through the SLURM
launcher), then its aggregation gives the results table."""

from __future__ import annotations

import json
import sys

import polars as pl
import pytest
from cluster_helpers import (
    ROOT,
    python_env,
    require_slurm,
    run,
    sacct_records,
    slurm_launcher,
    wait_for,
)

MODELS = ["hnet_mt", "iso_t"]


@pytest.fixture(autouse=True)
def _slurm():
    require_slurm()


def test_e_sweep_runs_as_a_job_array_and_aggregates(tmp_path):
    root = tmp_path / "sweeps"
    fasta = ROOT / "tests" / "data" / "drosophila_chr4_gaps.fa"
    sweep = tmp_path / "hydra"
    launcher = [a for a in slurm_launcher(sweep) if a != "--multirun"]
    # cpu_tiny's models on a 24 kb FASTA, 16 steps of 4 x 64 bases each.
    run([sys.executable, "pipelines/data_efficiency/run.py", "-m", "preset=cpu_tiny", *launcher,
         "corpus=athaliana_chr1", f"model_name={','.join(MODELS)}",
         f"corpus.source.fasta=[{fasta}]", "corpus.source.package=null", "corpus.extra_eval=[]",
         "budget.bases=4096", "budget.eval_every_bases=2048", "budget.context_length=64",
         "budget.batch_size=4", "budget.eval_batch_size=4", "budget.eval_max_units=512"],
        env=python_env(HNET_DNA_SWEEP_ROOT=str(root)), cwd=ROOT, timeout=600)
    # submitit: a folder per array task (<array>_<index>), next to the array's own
    tasks = sorted(p.name for p in (sweep / ".submitit").iterdir() if "_" in p.name
                   and p.name[0].isdigit())
    array = tasks[0].split("_")[0]
    assert tasks == [f"{array}_{i}" for i in range(len(MODELS))]  # one array, a task per run

    def array_done() -> bool:
        records = sacct_records(array)
        return (sorted(r["JobID"] for r in records) == tasks
                and all(r["State"] == "COMPLETED" for r in records))

    wait_for(array_done, f"sacct to list {tasks} COMPLETED", timeout=60)

    preset_root = root / "cpu_tiny"
    results = {}
    for model in MODELS:
        [result] = (preset_root / "runs" / "athaliana_chr1" / model).glob("*/result.json")
        assert not list(result.parent.glob("failure.json"))
        results[model] = json.loads(result.read_text())["final"]["bpb"]
    out = tmp_path / "results"
    run([sys.executable, "pipelines/data_efficiency/aggregate.py", "--root", str(preset_root),
         "--out", str(out)], env=python_env(), cwd=ROOT, timeout=300)
    table = pl.read_csv(out / "results.csv")
    assert sorted(table["model"].to_list()) == sorted(MODELS)
    for row in table.iter_rows(named=True):
        assert row["final_bpb"] == pytest.approx(results[row["model"]], rel=1e-12)
    assert (out / "results.md").read_text().startswith("# Data-efficiency sweep: cpu_tiny")
