"""Shared measurement tools: timed repeats, peak memory, machine description, isolation.

Every timing records wall-clock *and* process CPU time per repeat. With one intra-op thread the
CPU time of a repeat is what the work costs on this machine even when other jobs share the
cores (a shared machine stretches the wall clock, not the CPU time), so ratios are quoted on
both clocks.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hnet_dna.model.compile import compile_enabled

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stats:
    """Median and spread of repeated measurements of one quantity (seconds)."""

    median: float
    min: float
    max: float
    iqr: float  # interquartile range (0 with fewer than 4 repeats: see min/max)
    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        vals = sorted(values)
        iqr = 0.0
        if len(vals) >= 4:
            q = statistics.quantiles(vals, n=4)
            iqr = q[2] - q[0]
        return cls(statistics.median(vals), vals[0], vals[-1], iqr, list(values))

    @property
    def spread(self) -> float:
        """(max - min) / median: the relative range of the repeats."""
        return (self.max - self.min) / self.median if self.median > 0 else float("nan")


@dataclass
class Timing:
    wall: Stats
    cpu: Stats  # process CPU time (all threads of this process)
    warmup: int
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_repeats(fn: Callable[[], Any], warmup: int = 1, repeats: int = 3,
            before_each: Callable[[], Any] | None = None) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (``before_each``, if
    given, runs untimed before every timed repeat)."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        if before_each is not None:
            before_each()
        gc.collect()
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return Timing(Stats.of(walls), Stats.of(cpus), warmup, repeats)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], warmup: int = 1, repeats: int = 3
) -> dict[str, Timing]:
    """Time several functions round-robin (a, b, a, b, ...), so that a change of machine load
    during the run affects all of them alike: use for ratios."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            gc.collect()
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpus[name].append(time.process_time() - c0)
            walls[name].append(time.perf_counter() - w0)
    return {k: Timing(Stats.of(walls[k]), Stats.of(cpus[k]), warmup, repeats) for k in fns}


# ----------------------------------------------------------------------------- memory
def current_rss() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - non-Linux
        return 0


def peak_rss() -> int:
    """High-water mark of the resident set of this process in bytes."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if platform.system() == "Darwin" else kb * 1024


def peak_memory_of(fn: Callable[[], Any]) -> int:
    """Bytes by which the first call of ``fn`` raises this process's peak RSS above its current
    RSS. Only meaningful as the first large allocation of a fresh process (see ``isolated``);
    on CUDA the allocator's own peak counter is used instead."""
    if torch.cuda.is_available():  # pragma: no cover - GPU only
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        return torch.cuda.max_memory_allocated() - base
    before = current_rss()
    fn()
    return max(0, peak_rss() - before)


# ----------------------------------------------------------------------------- isolation
def _child(target: Callable[[dict], dict], spec: dict, conn: Any) -> None:
    try:
        conn.send(("ok", target(spec)))
    except BaseException as exc:  # report, never hang the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def isolated(target: Callable[[dict], dict], spec: dict, timeout: float = 3600.0) -> dict:
    """Run ``target(spec)`` in a fresh spawned process and return its result dict.

    A fresh process gives a clean peak-RSS counter and allocator, so memory peaks of different
    cases do not hide each other. Failures come back as ``{"error": ...}``.
    """
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(target, spec, child))
    proc.start()
    child.close()
    result: dict
    try:
        if parent.poll(timeout):
            status, payload = parent.recv()
            result = payload if status == "ok" else {"error": payload}
        else:
            proc.terminate()
            result = {"error": f"timed out after {timeout:.0f} s"}
    except EOFError:  # the child died without reporting (e.g. killed for memory)
        proc.join()
        result = {"error": f"worker exited with code {proc.exitcode}"}
    proc.join()
    return result


def set_threads(threads: int) -> None:
    """Intra-op threads for this process (inter-op fixed at 1: no parallel branches here)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass


# ----------------------------------------------------------------------------- machine
def matmul_flops(threads: int, n: int = 1024, repeats: int = 5) -> dict[str, float]:
    """fp32 FLOP/s of a plain (n x n) @ (n x n) matmul: the practical peak of this process."""
    set_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = time_repeats(lambda: a @ b, warmup=2, repeats=repeats)
    flops = 2.0 * n**3
    return {"n": n, "wall_flops": flops / t.wall.median, "cpu_flops": flops / t.cpu.median,
            "wall_spread": t.wall.spread}


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(f for f in flags if f in {"avx2", "fma", "avx512f", "avx512_bf16",
                                                         "amx_tile", "neon", "sve"})
    except OSError:  # pragma: no cover
        pass
    return []


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):  # pragma: no cover
        return ""


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = os.cpu_count() or 0
    cuda = torch.cuda.is_available()
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "compile": compile_enabled(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": torch.version.cuda if cuda else None,
        "load_average": load_average(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--", "hnet_dna/model", "benchmarks")),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
