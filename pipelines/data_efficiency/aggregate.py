"""Aggregate a data-efficiency sweep into results.csv / results.md / plots.

    python pipelines/data_efficiency/aggregate.py --root pipelines/data_efficiency/runs/cpu_tiny \
        --out pipelines/data_efficiency/results/cpu_tiny --command "<the sweep command>"

``--widen`` prints, instead, one line of overrides per run that widens an LR grid whose kept LR
is at an edge; run each with ``run.py preset=<preset> <line>`` and aggregate again.
"""

import argparse

from hnet_dna.baselines.aggregate import aggregate, lrs_to_widen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the preset's output_root")
    parser.add_argument("--out", default=None, help="where tables and plots go (default: root)")
    parser.add_argument("--command", default="", help="sweep command, recorded in results.md")
    parser.add_argument("--widen", action="store_true",
                        help="only print the overrides of the runs that widen each grid whose "
                             "kept LR is at an edge (one line each, for run.py)")
    args = parser.parse_args()
    frames = aggregate(args.root, args.out, args.command)
    if args.widen:
        for corpus, model, lr in lrs_to_widen(frames["lr_grid"]):
            print(f"corpus={corpus} model_name={model} lr={lr:g}")
        return
    print(frames["results"])
    if len(frames["match"]):
        print(frames["match"])
    if frames["problems"] is not None:
        print("failed or incomplete runs:")
        print(frames["problems"])


if __name__ == "__main__":
    main()
