"""Threads and DataLoader workers per rank come from the allocation, never os.cpu_count()."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from training_helpers import tiny_model_config, tiny_pretrain_config

from hnet_dna.training.pretrain import run_pretrain
from hnet_dna.training.resources import (
    MAX_AUTO_WORKERS,
    plan_threads,
    rank_cpus,
    slurm_tasks_on_node,
)

NODE_2 = {0, 1}
NODE_16 = set(range(16))
# What sbatch/srun put in a task's environment (the variables that matter here).
SLURM_TASK = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
              "SLURM_NODEID": "0", "SLURM_NTASKS": "2"}


@pytest.fixture(autouse=True)
def _node_has_64_cpus(monkeypatch):
    # os.cpu_count() is the node's count: the plan must never take it as a rank's share.
    monkeypatch.setattr(os, "cpu_count", lambda: 64)


def test_issue_case_two_slurm_tasks_of_one_cpu_on_a_two_cpu_node():
    # tasks_per_node=2 cpus_per_task=1 without CPU binding: both tasks see both CPUs
    env = {**SLURM_TASK, "SLURM_CPUS_PER_TASK": "1", "SLURM_TASKS_PER_NODE": "2",
           "SLURM_CPUS_ON_NODE": "2", "LOCAL_WORLD_SIZE": "2"}
    plan = plan_threads("cpu", environ=env, affinity=NODE_2)
    assert (plan.threads, plan.workers, plan.cpus) == (1, 0, 1)
    assert "SLURM_CPUS_PER_TASK=1" in plan.source
    # the same allocation as one task of 2 CPUs: both threads
    one = {**SLURM_TASK, "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_CPUS_PER_TASK": "2",
           "SLURM_TASKS_PER_NODE": "1", "SLURM_CPUS_ON_NODE": "2"}
    assert plan_threads("cpu", environ=one, affinity=NODE_2).threads == 2


def test_slurm_tasks_without_cpus_per_task_share_the_node_cpus():
    env = {**SLURM_TASK, "SLURM_CPUS_ON_NODE": "16", "SLURM_TASKS_PER_NODE": "4(x2),2",
           "SLURM_NODEID": "1"}
    assert rank_cpus(env, NODE_16).cpus == 4  # node 1 runs 4 tasks
    assert rank_cpus({**env, "SLURM_NODEID": "2"}, NODE_16).cpus == 8  # node 2 runs 2
    assert rank_cpus({**env, "SLURM_NTASKS_PER_NODE": "8"}, NODE_16).cpus == 2
    # with CPU binding the affinity mask is already the task's own share
    assert rank_cpus(env, {5}).cpus == 1


def test_torchrun_ranks_share_the_launcher_cpus():
    env = {"TORCHELASTIC_RUN_ID": "x", "LOCAL_WORLD_SIZE": "4", "LOCAL_RANK": "3"}
    assert rank_cpus(env, NODE_16).cpus == 4
    # torchrun inside one SLURM task of 8 CPUs (srun ... torchrun --nproc-per-node 4)
    slurm = {**SLURM_TASK, **env, "SLURM_CPUS_PER_TASK": "8", "SLURM_NTASKS": "1"}
    share = rank_cpus(slurm, NODE_16)
    assert share.cpus == 2 and "LOCAL_WORLD_SIZE=4" in share.source
    # more ranks than CPUs: still one thread each
    assert rank_cpus({**env, "LOCAL_WORLD_SIZE": "32"}, NODE_16).cpus == 1


def test_plain_process_uses_its_affinity_mask_not_cpu_count():
    assert os.cpu_count() == 64
    plan = plan_threads("cpu", environ={}, affinity=set(range(6)))
    assert (plan.threads, plan.workers) == (6, 0)
    assert plan.source == "6 CPU(s) per rank: 6 CPU(s) in the affinity mask"


def test_affinity_is_read_from_the_process(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 3, 7})
    assert rank_cpus({}).cpus == 3


def test_omp_num_threads_and_the_config_win():
    env = {**SLURM_TASK, "SLURM_CPUS_PER_TASK": "1", "OMP_NUM_THREADS": "3"}
    plan = plan_threads("cpu", environ=env, affinity=NODE_16)
    assert plan.threads == 3 and "OMP_NUM_THREADS=3" in plan.source
    assert plan_threads("cpu", threads=5, environ=env, affinity=NODE_16).threads == 5
    # a nested OpenMP list counts its first level; garbage is ignored
    assert plan_threads(environ={"OMP_NUM_THREADS": "2,1"}, affinity=NODE_16).threads == 2
    assert plan_threads(environ={"OMP_NUM_THREADS": "many"}, affinity=NODE_16).threads == 16


def test_workers_on_an_accelerator_and_from_the_config():
    plan = plan_threads("cuda", environ={"SLURM_CPUS_PER_TASK": "8"}, affinity=NODE_16)
    assert (plan.workers, plan.threads) == (MAX_AUTO_WORKERS, 8 - MAX_AUTO_WORKERS)
    assert plan_threads("cuda", environ={}, affinity={0, 1}).workers == 1
    assert plan_threads("cuda", environ={}, affinity={0}).workers == 0
    # explicit workers: the rest of the CPUs compute
    plan = plan_threads("cpu", workers=2, environ={}, affinity=set(range(6)))
    assert (plan.workers, plan.threads) == (2, 4)
    assert plan_threads("cpu", workers=4, environ={}, affinity=NODE_2).threads == 1


def test_slurm_task_list_parsing_and_bad_values():
    assert slurm_tasks_on_node({"SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "3"}) == 1
    assert slurm_tasks_on_node({"SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "2"}) == 2
    assert slurm_tasks_on_node({"SLURM_STEP_TASKS_PER_NODE": "3",
                                "SLURM_TASKS_PER_NODE": "1"}) == 3
    assert slurm_tasks_on_node({"SLURM_TASKS_PER_NODE": "weird"}) is None
    assert slurm_tasks_on_node({}) is None
    with pytest.raises(ValueError, match="threads must be >= 1"):
        plan_threads(threads=0, environ={}, affinity=NODE_2)
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        plan_threads(workers=-1, environ={}, affinity=NODE_2)


def test_pretrain_sets_threads_from_the_slurm_allocation(tmp_path, monkeypatch, caplog):
    """The issue's run: a SLURM task with 1 CPU on a 2-CPU node trains with 1 thread."""
    for name in ("OMP_NUM_THREADS", "WORLD_SIZE", "RANK", "LOCAL_WORLD_SIZE",
                 "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: NODE_2)
    torch.set_num_threads(2)  # torch's own default on this node
    seen = []
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    with caplog.at_level(logging.INFO, logger="hnet_dna.training.resources"):
        run_pretrain(tiny_pretrain_config(max_steps=2), tiny_model_config(), tmp_path / "run")
    assert seen == [1, 1]
    assert ("1 intra-op thread(s), 0 DataLoader worker(s) per rank (1 CPU(s) per rank: "
            "SLURM_CPUS_PER_TASK=1)") in caplog.text


def test_pretrain_config_threads_win(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = tiny_pretrain_config(max_steps=1)
    cfg.trainer.threads = 2
    run_pretrain(cfg, tiny_model_config(), tmp_path / "run")
    assert torch.get_num_threads() == 2
