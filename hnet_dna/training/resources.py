"""Intra-op threads and DataLoader workers per rank, from what the process was given.

``os.cpu_count()`` is the node's CPU count, not this rank's share: two SLURM tasks of one CPU
each on a 2-CPU node would each run torch with 2 threads and oversubscribe it (2.36x the wall
time of one task with 2 CPUs, issue 20). The CPUs of a rank are, in this order:

1. ``os.sched_getaffinity(0)``: the CPUs the process may run on (a cgroup/cpuset or a SLURM CPU
   binding already narrows it to the task's own);
2. capped by ``SLURM_CPUS_PER_TASK`` (SLURM without CPU binding leaves the whole node in the
   affinity mask); a SLURM task without ``--cpus-per-task`` gets ``SLURM_CPUS_ON_NODE`` shared
   by the tasks on its node (``SLURM_NTASKS_PER_NODE``, else this node's entry of
   ``SLURM_STEP_TASKS_PER_NODE`` / ``SLURM_TASKS_PER_NODE``);
3. divided by the ranks that share those CPUs: torchrun's ``LOCAL_WORLD_SIZE`` (all ranks of a
   torchrun launcher share its CPUs). Ranks that are SLURM tasks were counted in 2.

Threads: an explicit value (``trainer.threads``) wins, then ``OMP_NUM_THREADS``, then the rank's
CPUs less its DataLoader workers (at least 1). Workers: an explicit value (``data.num_workers``)
wins; otherwise none on the CPU (every CPU computes, and the window stream is cheap next to a CPU
training step), and up to :data:`MAX_AUTO_WORKERS` on an accelerator, leaving one CPU to the
training process.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

#: DataLoader workers chosen for an accelerator when the config does not say
MAX_AUTO_WORKERS = 4


@dataclass(frozen=True)
class CpuShare:
    """The CPUs of one rank and where the number comes from."""

    cpus: int
    source: str


@dataclass(frozen=True)
class ThreadPlan:
    """Intra-op threads and DataLoader workers of one rank, with the reasons (for the log)."""

    threads: int
    workers: int
    cpus: int
    source: str

    def describe(self) -> str:
        return (f"{self.threads} intra-op thread(s), {self.workers} DataLoader worker(s) per "
                f"rank ({self.source})")


def _positive(environ: Mapping[str, str], name: str) -> int | None:
    """``environ[name]`` as a positive integer; None when unset or not one (``OMP_NUM_THREADS``
    may hold a nested list such as ``4,2``: its first level counts)."""
    text = environ.get(name, "").split(",")[0].strip()
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value > 0 else None


def slurm_tasks_on_node(environ: Mapping[str, str]) -> int | None:
    """SLURM tasks of this job step on this node, from ``SLURM_NTASKS_PER_NODE`` or this node's
    entry (``SLURM_NODEID``) of ``SLURM_STEP_TASKS_PER_NODE`` / ``SLURM_TASKS_PER_NODE``, whose
    format is ``2(x3),1`` (three nodes with 2 tasks, then one with 1)."""
    fixed = _positive(environ, "SLURM_NTASKS_PER_NODE")
    if fixed is not None:
        return fixed
    spec = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE")
    if not spec:
        return None
    per_node: list[int] = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if match is None:
            return None
        per_node += [int(match.group(1))] * int(match.group(2) or 1)
    node = int(environ.get("SLURM_NODEID", "0") or 0)
    return per_node[node] if 0 <= node < len(per_node) and per_node[node] > 0 else None


def _affinity() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # macOS: no affinity masks; all CPUs are the process's
        return set(range(os.cpu_count() or 1))


def rank_cpus(environ: Mapping[str, str] | None = None,
              affinity: set[int] | None = None) -> CpuShare:
    """The CPUs this rank may keep busy (see the module docstring for the order of sources)."""
    environ = os.environ if environ is None else environ
    mask = _affinity() if affinity is None else affinity
    cpus, source = max(len(mask), 1), f"{len(mask)} CPU(s) in the affinity mask"
    torchrun = "TORCHELASTIC_RUN_ID" in environ
    slurm_ranks = "SLURM_PROCID" in environ and not torchrun
    per_task = _positive(environ, "SLURM_CPUS_PER_TASK")
    if per_task is not None:
        if per_task < cpus:
            cpus, source = per_task, f"SLURM_CPUS_PER_TASK={per_task}"
    elif slurm_ranks:
        on_node = _positive(environ, "SLURM_CPUS_ON_NODE")
        tasks = slurm_tasks_on_node(environ)
        if on_node is not None and tasks is not None and on_node // tasks < cpus:
            cpus = max(on_node // tasks, 1)
            source = f"SLURM_CPUS_ON_NODE={on_node} over {tasks} task(s) on the node"
    if not slurm_ranks:
        local = _positive(environ, "LOCAL_WORLD_SIZE") or 1
        if local > 1:
            cpus, source = max(cpus // local, 1), f"{source} over LOCAL_WORLD_SIZE={local} ranks"
    return CpuShare(cpus, source)


def plan_threads(device: torch.device | str = "cpu", threads: int | None = None,
                 workers: int | None = None, environ: Mapping[str, str] | None = None,
                 affinity: set[int] | None = None) -> ThreadPlan:
    """Threads and workers of this rank: explicit values, then ``OMP_NUM_THREADS`` (threads
    only), then the rank's CPUs (:func:`rank_cpus`)."""
    environ = os.environ if environ is None else environ
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 (or null: from the allocation), got {threads}")
    if workers is not None and workers < 0:
        raise ValueError(f"num_workers must be >= 0 (or null: from the allocation), got {workers}")
    share = rank_cpus(environ, affinity)
    reasons = [f"{share.cpus} CPU(s) per rank: {share.source}"]
    if workers is None:
        accelerator = torch.device(device).type != "cpu"
        workers = min(MAX_AUTO_WORKERS, share.cpus - 1) if accelerator else 0
    else:
        reasons.append("workers from the config")
    omp = _positive(environ, "OMP_NUM_THREADS")
    if threads is not None:
        reasons.append("threads from the config")
    elif omp is not None:
        threads = omp
        reasons.append(f"threads from OMP_NUM_THREADS={omp}")
    else:
        threads = max(share.cpus - workers, 1)
    return ThreadPlan(threads, workers, share.cpus, "; ".join(reasons))


def setup_threads(device: torch.device | str = "cpu", threads: int | None = None,
                  workers: int | None = None, report: bool = True) -> ThreadPlan:
    """Set torch's intra-op threads of this process by :func:`plan_threads` and return the
    plan (its ``workers`` go to the DataLoader); logged at INFO when ``report`` (rank 0)."""
    plan = plan_threads(device, threads, workers)
    torch.set_num_threads(plan.threads)
    if report:
        log.info("%s", plan.describe())
    return plan
