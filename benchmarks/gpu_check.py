"""One GPU check in one command: kernel parity, training throughput and memory, cached generation,
and a short data-efficiency run, sized to finish in under 8 minutes on one H200.

    python benchmarks/gpu_check.py --out DIR                 # full check (GPU rows need CUDA)
    python benchmarks/gpu_check.py --out DIR --smoke         # tiny shapes, seconds (CPU or GPU)
    python benchmarks/gpu_check.py --prepare .gpu_carry      # here, before a device session

Sections, in order, one module of ``benchmarks/gpu/`` each (this file is the command and the
run loop); each is guarded (a failure is recorded and the next one runs) and the JSON
and markdown are rewritten after every section, so a run cut short still leaves its results:

* ``environment``: torch / CUDA / device, and which fast paths import (mamba_ssm's Triton SSD
  kernels, the fused Mamba-2 kernel with causal_conv1d, flash-attn);
* ``parity``: every fast path hnet_dna dispatches to against its torch path on the same CUDA
  inputs in fp32 and bf16, both against a float64 CPU oracle (forward and gradients);
* ``throughput``: training bases/s and peak memory of the 1- and 2-stage H-Nets and the
  FLOP-matched Transformer and Mamba-2 (``benchmarks.models``) at 1k / 8k / 32k, bf16 autocast;
* ``generation``: cached decoding tokens/s at two contexts;
* ``data_efficiency``: H-Net vs isotropic Transformer vs Mamba-2 at d 256 trained on the same
  windows for the same number of bases (as many as the slowest model fits in its time share),
  held-out bits per base along the way.

Without CUDA the GPU rows are skipped with the reason; ``--smoke`` then runs every section's
CPU-capable code at tiny shapes (what the tests do). On the device machine the optional kernels
come from ``--carry DIR`` (made here by ``--prepare``): wheels are installed into a temporary
folder, the mamba-ssm source is imported for its Triton kernels, and causal_conv1d's CUDA
extension is compiled for the present GPU in the background while parity runs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.gpu import (  # noqa: E402
    data_efficiency,
    environment,
    generation,
    parity,
    throughput,
)
from benchmarks.gpu.context import NO_CUDA, Context, Plan, Skip, free  # noqa: E402
from benchmarks.gpu.parity import TOLERANCE, compare, errors  # noqa: E402
from benchmarks.gpu.results import DEFAULT_OUT, NAME, write  # noqa: E402
from benchmarks.gpu_kernels import prepare, setup_carry  # noqa: E402
from hnet_dna.training.distributed import resolve_device  # noqa: E402

__all__ = ["NO_CUDA", "SECTIONS", "SUMMARIES", "TOLERANCE", "Context", "Plan", "Skip", "compare",
           "errors", "main"]

# The sections, in the order they run: one module of benchmarks/gpu/ each, named like it, with
# run(ctx) -> result, NEEDS_S and (for a table in gpu_check.md) summary(result) -> lines. A new
# section is a new module there, one entry here, and its time share in Plan.shares
# (benchmarks/gpu/context.py).
SECTION_MODULES = [environment, parity, throughput, generation, data_efficiency]
SECTIONS: list[tuple[str, Callable[[Context], dict[str, Any]], float]] = [
    # (name, function, seconds it needs at least to start)
    (module.__name__.rpartition(".")[2], module.run, module.NEEDS_S)
    for module in SECTION_MODULES]
SUMMARIES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    module.__name__.rpartition(".")[2]: module.summary
    for module in SECTION_MODULES if hasattr(module, "summary")}


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for {NAME}.json and {NAME}.md (default %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (seconds)")
    parser.add_argument("--carry", type=Path, default=None,
                        help="folder made by --prepare (kernels, wheels) to install first")
    parser.add_argument("--prepare", type=Path, default=None, metavar="FOLDER",
                        help="download the device's extras into FOLDER and exit")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole run")
    parser.add_argument("--corpus", default=None,
                        help="data-efficiency corpus: a name (load_corpus) or a FASTA path")
    parser.add_argument("--de-seconds", type=float, default=None,
                        help="data efficiency: training seconds per model (three models)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if present)")
    args = parser.parse_args(argv)
    if args.prepare is not None:
        prepare(args.prepare)
        return None
    t0 = time.perf_counter()
    plan = Plan.make(args.smoke, budget_s=args.budget, corpus=args.corpus,
                     de_seconds=args.de_seconds)
    device = resolve_device(args.device or "auto")
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # CPU runs are smoke tests: one thread never oversubscribes
    try:
        return _run_sections(args, plan, device, t0, argv)
    finally:
        torch.set_num_threads(threads)


def _run_sections(args: argparse.Namespace, plan: Plan, device: torch.device, t0: float,
                  argv: list[str] | None) -> dict[str, Any]:
    ctx = Context(plan, device, deadline=t0 + plan.budget_s)
    payload: dict[str, Any] = {"benchmark": NAME, "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                               "argv": sys.argv if argv is None else argv, "plan": asdict(plan),
                               "kernels": ctx.kernels, "sections": {}, "seconds": 0.0}
    ctx.build_started = time.perf_counter()
    try:
        info, ctx.build = setup_carry(args.carry, device)
        ctx.kernels.update(info)
    except Exception as exc:
        ctx.kernels["error"] = f"{type(exc).__name__}: {exc}"
    for name, fn, needs in SECTIONS:
        started = time.perf_counter()
        ctx.section_end = started + plan.shares.get(name, math.inf)
        if ctx.left() < needs:
            result: dict[str, Any] = {"skipped": f"deadline: {ctx.left():.0f} s left of the "
                                                 f"{plan.budget_s:.0f} s budget"}
        else:
            print(f"[{NAME}] {name}: start ({ctx.left():.0f} s left)", flush=True)
            try:
                result = fn(ctx)
            except Skip as why:
                result = {"skipped": str(why)}
            except Exception as exc:
                result = {"error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()[-4000:]}
            free(device)
        result["section_seconds"] = time.perf_counter() - started
        payload["sections"][name] = result
        payload["seconds"] = time.perf_counter() - t0
        write(args.out, payload, SUMMARIES)
        status = result.get("skipped") or result.get("error") or "done"
        print(f"[{NAME}] {name}: {status} ({result['section_seconds']:.1f} s)", flush=True)
    if ctx.build is not None:
        ctx.build.kill()
        ctx.kernels["causal_conv1d_build"] = "build stopped: no section used it"
    write(args.out, payload, SUMMARIES)
    print(f"[{NAME}] wrote {args.out / (NAME + '.json')} and {NAME}.md "
          f"in {payload['seconds']:.0f} s", flush=True)
    return payload


if __name__ == "__main__":
    main()
