"""Genome-scale data path: preparation, startup, memory per rank, training windows per worker.

Usage (the "genome-scale" rows of benchmarks/README.md; big files outside the repository)::

    python ../shared/tools/make_genome.py /tmp/genome_bench/hg38_shaped.fa      # 3.14 Gb
    gzip -1 -c /tmp/genome_bench/hg38_shaped.fa > /tmp/genome_bench/hg38_shaped.fa.gz
    python benchmarks/bench_genome.py prepare /tmp/genome_bench/hg38_shaped.fa.gz \\
        --out-dir /tmp/genome_bench/prep
    python benchmarks/bench_genome.py windows /tmp/genome_bench/prep/hg38_shaped.fa.gz.prepared.fa
    python benchmarks/bench_genome.py ranks /tmp/genome_bench/prep/hg38_shaped.fa.gz.prepared.fa \\
        --ranks 2 --workers 2

``prepare``: wall time and peak RSS of ``genomics.prepare.prepare_genome`` (the same as
``hnet-dna prepare``). ``windows``: corpus open time, then random training windows (the
``pretrain`` data defaults: 1024 bases, batch 8, RC 0.5, N filter 0.1) built in this process,
which is what one DataLoader worker does: Mb/s per worker. ``ranks``: N processes, each a gloo
rank that opens the corpus as ``hnet-dna pretrain`` does (``training.data``), draws training
batches through ``--workers`` DataLoader workers and runs the tiled held-out split's first
batches; reports each rank's startup, peak RSS (VmHWM), its workers' RSS and PSS (shared pages
divided among the processes that map them) and the batches' rate. Wall-clock timings on a
shared machine: state ``uptime`` with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "genome_scale.json"


def _record(label: str | None, record: dict) -> None:
    """Print ``record``; with a label, keep it in results/genome_scale.json (with the load
    average and commit) and re-render benchmarks/README.md's genome-scale section."""
    print(json.dumps(record), flush=True)
    if not label:
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    saved[label] = {**record, "loadavg": [round(x, 2) for x in os.getloadavg()],
                    "commit": commit, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "command": shlex.join(["python", "benchmarks/bench_genome.py", *sys.argv[1:]])}
    RESULTS.write_text(json.dumps(saved, indent=1) + "\n")
    readme = Path(__file__).parent / "README.md"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.report import genome_scale_section, replace_section

    readme.write_text(replace_section(readme.read_text(), genome_scale_section(saved)))


def _status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS / VmHWM (MB) from /proc, and PSS (MB) from smaps_rollup."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) / 1024
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    out["Pss"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def cmd_prepare(args: argparse.Namespace) -> None:
    """``prepare_genome`` (bgzip with ``--index-only``: the faidx index pysam builds)."""
    from hnet_dna.genomics.fasta import Genome
    from hnet_dna.genomics.prepare import prepare_genome

    t0 = time.perf_counter()
    if args.index_only:
        out = Genome(args.source, backend="pysam")._fai
    else:
        out = prepare_genome(args.source, args.out_dir, progress=False)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    _record(args.label, {"step": "prepare", "source": args.source, "out": str(out),
                         "seconds": round(dt, 1), "cpu_s": round(cpu.ru_utime + cpu.ru_stime, 1),
                         "peak_rss_mb": round(peak), "bytes": Path(out).stat().st_size})


def _data_config(args: argparse.Namespace):
    from hnet_dna.training.config import DataConfig

    return DataConfig(corpus=args.genome, num_workers=args.workers)


def cmd_windows(args: argparse.Namespace) -> None:
    from hnet_dna.genomics.corpora import load_corpus
    from hnet_dna.training.data import train_stream

    t0 = time.perf_counter()
    corpus = load_corpus(args.genome, backend=args.backend)
    opened = time.perf_counter() - t0
    cfg = _data_config(args)
    cfg.num_workers = 0
    stream = train_stream(corpus, cfg, seed=0)
    built = time.perf_counter() - t0
    next(stream)  # first batch: handles opened
    n, t1, c1 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t1 < args.seconds:
        n += next(stream)["tokens"].shape[0]
    dt, cpu = time.perf_counter() - t1, time.process_time() - c1
    _record(args.label, {"step": "windows", "genome": args.genome,
                      "open_s": round(opened, 2), "dataset_s": round(built - opened, 2),
                      "windows_per_s": round(n / dt), "mb_per_s": round(n * cfg.context_length
                                                                        / dt / 1e6, 2),
                      "cpu_s": round(cpu, 1),
                      "mb_per_cpu_s": round(n * cfg.context_length / cpu / 1e6, 2),
                      "rss_mb": round(_status()["VmRSS"]),
                      "backend": corpus.genomes[0].backend})


def _rank(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    from hnet_dna.training import data as data_mod

    t0 = time.perf_counter()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}",
                            rank=args.rank, world_size=args.ranks)
    cfg = _data_config(args)
    corpus = data_mod.open_corpus(cfg)
    stream = data_mod.train_stream(corpus, cfg, seed=0)
    evaluation = data_mod.eval_batches(corpus, cfg)()
    startup = time.perf_counter() - t0
    first = next(stream)
    t1 = time.perf_counter()
    n = first["tokens"].shape[0]
    workers: dict[int, dict[str, float]] = {}
    sampled = 0.0
    while time.perf_counter() - t1 < args.seconds:
        n += next(stream)["tokens"].shape[0]
        if time.perf_counter() - sampled < 1.0:  # /proc reads are not free: once a second
            continue
        sampled = time.perf_counter()
        for pid in _children(os.getpid()):
            try:
                workers[pid] = {**_status(pid), "cpu_s": _cpu_seconds(pid)}
            except OSError:
                pass
    dt = time.perf_counter() - t1
    worker_cpu = sum(w["cpu_s"] for w in workers.values())
    held_out = 0
    for i, batch in enumerate(evaluation):  # the held-out split as the evaluator reads it
        held_out += batch["tokens"].numel()
        if i + 1 >= args.eval_batches:
            break
    me = _status()
    print(json.dumps({
        "step": "rank", "rank": args.rank, "startup_s": round(startup, 1),
        "train_windows_per_s": round(n / dt), "train_mb_per_s": round(n * 1024 / dt / 1e6, 2),
        # what a worker makes per second of CPU it gets (workers also start up: a lower bound)
        "train_mb_per_worker_cpu_s": round(n * 1024 / max(worker_cpu, 1e-9) / 1e6, 2),
        "eval_batches_total": len(evaluation), "eval_bases_read": held_out,
        "rss_mb": round(me["VmRSS"]), "peak_rss_mb": round(me["VmHWM"]),
        "pss_mb": round(me.get("Pss", 0)),
        "workers": [{k: round(v, 1) for k, v in w.items()} for w in workers.values()]}),
        flush=True)
    dist.barrier()
    dist.destroy_process_group()


def cmd_ranks(args: argparse.Namespace) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, "_rank", args.genome, "--rank", str(r),
                               "--ranks", str(args.ranks), "--workers", str(args.workers),
                               "--seconds", str(args.seconds), "--port", str(args.port),
                               "--eval-batches", str(args.eval_batches)], env=env,
                              stdout=subprocess.PIPE, text=True)
             for r in range(args.ranks)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"rank exit codes {[p.returncode for p in procs]}")
    ranks = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    _record(args.label, {"step": "ranks", "genome": args.genome, "ranks": ranks})


def cmd_pretrain(args: argparse.Namespace) -> None:
    """``torchrun --nproc-per-node R -m hnet_dna.cli pretrain`` (the default model and data
    settings, 3 steps, 20 held-out batches, Markov baselines on), with the peak RSS of every
    rank and DataLoader worker sampled from /proc once a second."""
    cmd = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", str(args.ranks),
           "-m", "hnet_dna.cli", "pretrain", f"data.corpus={args.genome}",
           f"data.num_workers={args.workers}", "trainer.max_steps=3",
           "trainer.eval_max_batches=20", "trainer.progress_bar=false",
           f"hydra.run.dir={args.run_dir}"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, tuple[str, float]] = {}
    while proc.poll() is None:
        for rank in _children(proc.pid):  # torchrun starts the ranks itself
            for pid, role in [(rank, "rank"), *((w, "worker") for w in _children(rank))]:
                try:
                    hwm = _status(pid).get("VmHWM")  # none once the process has exited
                except OSError:
                    continue
                if hwm is None:
                    continue
                peaks[pid] = (role, max(hwm, peaks.get(pid, (role, 0.0))[1]))
        time.sleep(1.0)
    out = proc.stdout.read()
    if proc.returncode:
        raise SystemExit(f"pretrain failed ({proc.returncode}):\n{out[-3000:]}")
    lines = [line for line in out.splitlines() if "Markov baselines" in line]
    _record(args.label, {
        "step": "pretrain", "genome": args.genome, "ranks": args.ranks, "workers": args.workers,
        "seconds": round(time.perf_counter() - t0, 1),
        "rank_peak_rss_mb": sorted(round(v) for r, v in peaks.values() if r == "rank"),
        "worker_peak_rss_mb": sorted(round(v) for r, v in peaks.values() if r == "worker"),
        "markov": lines})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prepare")
    s.add_argument("source")
    s.add_argument("--out-dir", default=None)
    s.add_argument("--index-only", action="store_true")
    s.add_argument("--label", default=None, help="keep the result under this name")
    for name in ("windows", "ranks", "_rank", "pretrain"):
        s = sub.add_parser(name)
        s.add_argument("genome", help="FASTA path (prepared genome, bgzip, ...) as data.corpus")
        s.add_argument("--seconds", type=float, default=20.0)
        s.add_argument("--workers", type=int, default=2)
        s.add_argument("--ranks", type=int, default=2)
        s.add_argument("--rank", type=int, default=0)
        s.add_argument("--port", type=int, default=29517)
        s.add_argument("--eval-batches", type=int, default=200)
        s.add_argument("--backend", default="auto")
        s.add_argument("--label", default=None, help="keep the result under this name")
        s.add_argument("--run-dir", default="/tmp/genome_bench/runs/bench")
    args = p.parse_args()
    {"prepare": cmd_prepare, "windows": cmd_windows, "ranks": cmd_ranks,
     "pretrain": cmd_pretrain, "_rank": _rank}[args.cmd](args)


if __name__ == "__main__":
    main()
