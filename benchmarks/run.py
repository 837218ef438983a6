"""Run the benchmark suite: ``python -m benchmarks.run [--quick] [--only NAME ...]``.

Writes ``benchmarks/results/<name>.json`` per benchmark (machine description, load average
before and after, options, results) and regenerates ``benchmarks/README.md`` from every result
file present, so a partial re-run (``--only kernels``) keeps the other sections.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import (
    inference,
    kernels,
    report,
    scaling,
    throughput,
    utilisation,
    variant_rate,
)
from benchmarks.cases import Options
from benchmarks.timing import load_average, machine_info, matmul_flops
from hnet_dna.model.compile import COMPILE_ENV

BENCHMARKS: dict[str, ModuleType] = {m.NAME: m for m in (
    kernels, utilisation, throughput, scaling, inference, variant_rate)}
HERE = Path(__file__).resolve().parent


def run_one(module: ModuleType, opts: Options, out_dir: Path) -> dict[str, Any]:
    print(f"[{module.NAME}] start, load {load_average()}", flush=True)
    t0 = time.perf_counter()
    payload = {
        "benchmark": module.NAME,
        "options": vars(opts),
        "machine": machine_info(opts.threads),
        "matmul_peak": matmul_flops(opts.threads),
    }
    payload["result"] = module.run(opts)
    payload["load_average_after"] = load_average()
    payload["seconds"] = time.perf_counter() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{module.NAME}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"[{module.NAME}] done in {payload['seconds']:.0f} s -> {path}", flush=True)
    return payload


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer lengths and smaller batches (a few minutes)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (1 gives stable ratios on a shared machine)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after a warm-up")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    parser.add_argument("--compile", action="store_true",
                        help=f"compile the model's elementwise chains (sets {COMPILE_ENV}=1 for"
                             " every case; the compile happens in an untimed warm-up step)")
    args = parser.parse_args(argv)
    if args.compile:
        os.environ[COMPILE_ENV] = "1"  # spawned case processes inherit it
    opts = Options(quick=args.quick, threads=args.threads, repeats=args.repeats)
    for name in args.only or list(BENCHMARKS):
        run_one(BENCHMARKS[name], opts, args.out)
    args.readme.write_text(report.render(args.out, BENCHMARKS))
    print(f"summary -> {args.readme}")


if __name__ == "__main__":
    main()
