"""Seconds per training step: SLURM tasks x CPUs layouts at the same global batch, per source tree.

Usage::

    git archive main hnet_dna | tar -x -C /tmp/before       # the code to compare against
    python benchmarks/bench_threads.py --src before=/tmp/before --src after=. \\
        --out benchmarks/results/threads.json

Each run is ``hnet-dna pretrain`` (tiny 1-stage H-Net, yeast chr I, 512-base windows, fp32 on
the CPU, no evaluation until the end) launched the way SLURM launches tasks: one process per
task with ``SLURM_PROCID`` / ``SLURM_CPUS_PER_TASK`` / ``SLURM_TASKS_PER_NODE`` and, for several
tasks, ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` (what ``srun`` + submitit give) and no CPU
binding (``TaskPlugin=task/none``) and no ``OMP_NUM_THREADS``. ``torchrun`` is not used to launch
the ranks: it exports ``OMP_NUM_THREADS=1`` itself, which hides what this measures. Layouts:
``2x1`` (2 tasks of 1 CPU, half the batch each) and ``1x2`` (1 task of 2 CPUs, the whole batch).

Seconds per step come from the run's ``metrics.jsonl`` (training throughput of every log
interval after the first, which holds the warm-up); the threads each rank ended with are
printed by the process itself. Sources and layouts alternate within each repeat, so the
before/after numbers of a repeat are taken back to back; the 1-minute load average is recorded
around every run (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Read at exit of each rank: the intra-op threads torch really used.
RANK_MAIN = (
    "import atexit, sys, torch\n"
    "atexit.register(lambda: print('THREADS', torch.get_num_threads(), file=sys.stderr))\n"
    "from hnet_dna.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RANK", "WORLD_SIZE", "LOCAL_RANK",
           "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
           "HNET_DNA_COMPILE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def task_env(src: Path, rank: int, tasks: int, cpus: int, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in CLEARED and not k.startswith("SLURM_")}
    env.update(PYTHONPATH=str(src.resolve()), SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank),
               SLURM_NODEID="0", SLURM_NTASKS=str(tasks), SLURM_TASKS_PER_NODE=str(tasks),
               SLURM_CPUS_PER_TASK=str(cpus), SLURM_CPUS_ON_NODE=str(tasks * cpus))
    if tasks > 1:
        env.update(RANK=str(rank), WORLD_SIZE=str(tasks), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return env


def run_layout(src: Path, tasks: int, cpus: int, args: argparse.Namespace,
               work: Path) -> dict[str, Any]:
    run_dir = work / f"run-{time.monotonic_ns()}"
    overrides = ["pretrain", "model=hnet_1stage_tiny", "data=yeast_chrI",
                 f"data.context_length={args.context}", f"data.batch_size={args.batch // tasks}",
                 f"trainer.max_steps={args.steps}",
                 f"trainer.log_every={args.log_every}", "trainer.eval_every=0",
                 "trainer.eval_max_batches=1", "trainer.baselines=false",
                 "trainer.progress_bar=false", "trainer.device=cpu", f"hydra.run.dir={run_dir}"]
    port = free_port()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", RANK_MAIN, *overrides],
                              env=task_env(src, rank, tasks, cpus, port), cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(tasks)]
    outputs = [p.communicate() for p in procs]
    wall = time.perf_counter() - started
    threads = []
    for proc, (_, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"{src} {tasks}x{cpus} failed ({proc.returncode}):\n{err[-3000:]}")
        threads += [int(line.split()[1]) for line in err.splitlines() if line.startswith("THREADS")]
    return {"tasks": tasks, "cpus_per_task": cpus, "threads": threads,
            "seconds_per_step": step_time(run_dir, args.batch, args.context), "wall_s": wall,
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2)}


def step_time(run_dir: Path, batch: int, context: int) -> float:
    """Seconds per step from the logged training throughput (global tokens per second)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    seconds = steps = 0.0
    for before, record in zip(train, train[1:], strict=False):
        interval = record["step"] - before["step"]
        seconds += interval * batch * context / record["tokens_per_s"]
        steps += interval
    if not steps:
        raise ValueError(f"{run_dir}: no timed log interval after the first")
    return seconds / steps


def summarize(result: dict[str, Any]) -> list[str]:
    lines = ["| code | layout | threads per rank | s/step (median) | runs | 2x1 / 1x2 |",
             "|---|---|---|---|---|---|"]
    for label, layouts in result["runs"].items():
        medians = {name: statistics.median(r["seconds_per_step"] for r in runs)
                   for name, runs in layouts.items()}
        for name, runs in layouts.items():
            each = ", ".join(f"{r['seconds_per_step']:.3f}" for r in runs)
            threads = sorted({t for r in runs for t in r["threads"]})
            ratio = f"{medians['2x1'] / medians['1x2']:.2f}x" if name == "2x1" else ""
            lines.append(f"| {label} | {name} | {threads} | {medians[name]:.3f} | {each} "
                         f"| {ratio} |")
    loads = [r[k] for layouts in result["runs"].values() for runs in layouts.values()
             for r in runs for k in ("load_before", "load_after")]
    lines += ["", f"1-minute load average around the runs: {min(loads):.2f} to {max(loads):.2f} "
              f"on {result['usable_cpus']} CPUs."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", required=True, metavar="LABEL=DIR",
                        help="a source tree holding hnet_dna/ (repeatable)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8, help="global windows per step")
    parser.add_argument("--context", type=int, default=512, help="bases per window")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the runs as JSON here")
    args = parser.parse_args(argv)
    sources = dict(item.split("=", 1) for item in args.src)
    layouts = {"1x2": (1, 2), "2x1": (2, 1)}
    runs: dict[str, dict[str, list]] = {label: {n: [] for n in layouts} for label in sources}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for label, src in sources.items():
                for name, (tasks, cpus) in layouts.items():
                    record = run_layout(Path(src), tasks, cpus, args, Path(tmp))
                    runs[label][name].append(record)
                    print(f"repeat {repeat} {label} {name}: {record['seconds_per_step']:.3f} "
                          f"s/step, threads {record['threads']}, wall {record['wall_s']:.1f} s, "
                          f"load {record['load_before']} -> {record['load_after']}", flush=True)
    result = {"runs": runs, "steps": args.steps, "batch": args.batch,
              "usable_cpus": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count()}
    print("\n".join(summarize(result)))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
