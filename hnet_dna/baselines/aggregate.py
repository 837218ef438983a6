"""Aggregate a data-efficiency sweep: results table (CSV + markdown), figures of merit, plots.

Reads ``<root>/runs/<corpus>/<model>/<lr-seed>/`` (``result.json``, ``failure.json``,
``metrics.jsonl``). Per (corpus, model) the learning rate with the lowest final held-out bits per
base is kept (the same rule for every model). Figures of merit, as in the paper:

* bases-to-match: the bases the H-Net needed to first reach each baseline's *final* held-out
  bits/base (linear interpolation between evaluations), and the ratio baseline budget / that;
* bits/base at equal FLOPs: every model's curve read at the smallest total training FLOPs of the
  corpus (linear interpolation; null where a model's first evaluation came later).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from hnet_dna.baselines.experiment import FAILURE_NAME, RESULT_NAME
from hnet_dna.training.metrics import METRICS_NAME, read_metrics

RESULTS_CSV, RESULTS_MD = "results.csv", "results.md"
CURVES_CSV, MATCH_CSV = "curves.csv", "bases_to_match.csv"
LR_GRID_CSV = "lr_grid.csv"
PLOT_BASES, PLOT_FLOPS = "bpb_vs_bases.png", "bpb_vs_flops.png"


# --------------------------------------------------------------------------- reading
def collect(root: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], pl.DataFrame]:
    """(finished results, failed/incomplete runs, evaluation curves of finished runs)."""
    runs = Path(root) / "runs"
    results, problems, curves = [], [], []
    for run_dir in sorted(p for p in runs.glob("*/*/*") if p.is_dir()):
        corpus, model, tag = run_dir.relative_to(runs).parts
        if (run_dir / RESULT_NAME).exists():
            result = json.loads((run_dir / RESULT_NAME).read_text())
            results.append(result)
            curves.append(_curve(run_dir, result))
        elif (run_dir / FAILURE_NAME).exists():
            failure = json.loads((run_dir / FAILURE_NAME).read_text())
            problems.append({"corpus": corpus, "model": model, "run": tag, "status": "failed",
                             "error": failure["error"]})
        elif (run_dir / METRICS_NAME).exists():
            problems.append({"corpus": corpus, "model": model, "run": tag,
                             "status": "incomplete", "error": "no result.json (interrupted?)"})
    frame = pl.concat(curves, how="diagonal_relaxed") if curves else pl.DataFrame()
    return results, problems, frame


RECORD_NAMES = (RESULT_NAME, FAILURE_NAME, METRICS_NAME)


def archive_records(root: str | Path, out: str | Path) -> int:
    """Copy each finished or failed run's small records (``result.json``, ``failure.json``,
    ``metrics.jsonl``; never checkpoints) to ``out/runs/<corpus>/<model>/<lr-seed>/``, so
    committed results can be aggregated again, and a sweep pointed at a copy of them skips those
    runs. Returns the number of runs copied."""
    runs, target = Path(root) / "runs", Path(out) / "runs"
    copied = 0
    for run_dir in sorted(p for p in runs.glob("*/*/*") if p.is_dir()):
        if not ((run_dir / RESULT_NAME).exists() or (run_dir / FAILURE_NAME).exists()):
            continue  # interrupted: only its checkpoint can continue it
        dest = target / run_dir.relative_to(runs)
        dest.mkdir(parents=True, exist_ok=True)
        for name in RECORD_NAMES:
            if (run_dir / name).exists():
                shutil.copy2(run_dir / name, dest / name)
        copied += 1
    return copied


def _curve(run_dir: Path, result: dict[str, Any]) -> pl.DataFrame:
    evals = read_metrics(run_dir).filter(pl.col("split") == "eval")
    bpb_cols = [c for c in evals.columns if c == "bpb" or c.endswith("_bpb")]
    return evals.select("step", "bases_seen", *bpb_cols).with_columns(
        pl.lit(result["corpus"]).alias("corpus"),
        pl.lit(result["model"]).alias("model"),
        pl.lit(float(result["lr"])).alias("lr"),
        pl.lit(int(result["seed"])).alias("seed"),
        (pl.col("bases_seen") * result["train_flops_per_base"]).alias("train_flops"),
    )


# --------------------------------------------------------------------------- figures of merit
def first_crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """Smallest x where the piecewise-linear curve (x, y) first reaches y <= target; nan if
    never. Before the first point nothing is known, so a first point already below counts there."""
    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    for i in range(len(x)):
        if y[i] <= target:
            if i == 0:
                return float(x[0])
            frac = (y[i - 1] - target) / (y[i - 1] - y[i])
            return float(x[i - 1] + frac * (x[i] - x[i - 1]))
    return math.nan


def value_at(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """Piecewise-linear y(at) inside the measured range of x; nan outside."""
    order = np.argsort(x)
    x, y = np.asarray(x, float)[order], np.asarray(y, float)[order]
    if len(x) == 0 or at < x[0] - 1e-9 * abs(x[0]) or at > x[-1] * (1 + 1e-9):
        return math.nan
    return float(np.interp(at, x, y))


def best_lr(results: list[dict[str, Any]]) -> pl.DataFrame:
    """One row per (corpus, model): the run with the lowest final held-out bits/base."""
    rows = []
    for r in results:
        final = r["final"]
        extra = {f"final_{k}": v for k, v in final.items() if k.endswith("_bpb")}
        rows.append({
            "corpus": r["corpus"], "model": r["model"], "family": r["family"],
            "tokenizer": r["tokenizer"], "layout": r["layout"], "lr": float(r["lr"]),
            "seed": int(r["seed"]), "bases": int(r["bases"]), "final_bpb": final.get("bpb"),
            **extra,
            "flops_per_base": r["flops_per_base"],
            "flops_per_base_target": r["flops_per_base_target"],
            "train_flops_per_base": r["train_flops_per_base"],
            "params": r["params"], "non_embedding_params": r["non_embedding_params"],
            "bases_per_s": r["bases_per_s"], "bases_per_token": r["bases_per_token"],
            "compression": (r["compression"][0] if r["compression"] else None),
        })
    frame = pl.DataFrame(rows)
    tried = frame.group_by("corpus", "model").agg(
        pl.col("lr").unique().sort().alias("lrs_tried")
    )
    best = (frame.sort("final_bpb", nulls_last=True)
            .group_by("corpus", "model", maintain_order=True).first())
    return best.join(tried, on=["corpus", "model"]).sort("corpus", "family", "model")


def lr_grid(results: list[dict[str, Any]]) -> pl.DataFrame:
    """One row per (corpus, model): final held-out bits/base at every learning rate tried (one
    column each, null where not tried or not finite), the kept LR and whether it is interior to
    the model's grid. A kept LR at either end of the grid means the grid should be widened
    there before the model's numbers are compared."""
    rows = [{"corpus": r["corpus"], "model": r["model"], "family": r["family"],
             "lr": float(r["lr"]), "final_bpb": r["final"].get("bpb")} for r in results]
    frame = pl.DataFrame(rows).with_columns(
        pl.when(pl.col("final_bpb").is_finite()).then(pl.col("final_bpb")).alias("final_bpb"))
    lrs = sorted(frame["lr"].unique().to_list())
    wide = frame.pivot(on="lr", index=["corpus", "family", "model"], values="final_bpb",
                       aggregate_function="min")
    wide = wide.rename({str(lr): f"lr={lr:g}" for lr in lrs if str(lr) in wide.columns})
    summary = (frame.sort("final_bpb", nulls_last=True)
               .group_by("corpus", "model", maintain_order=True)
               .agg(pl.col("lr").first().alias("best_lr"), pl.col("lr").min().alias("lr_min"),
                    pl.col("lr").max().alias("lr_max"), pl.col("lr").n_unique().alias("n_lrs")))
    summary = summary.with_columns(
        ((pl.col("best_lr") > pl.col("lr_min")) & (pl.col("best_lr") < pl.col("lr_max")))
        .alias("best_lr_interior")).drop("lr_min", "lr_max")
    columns = [f"lr={lr:g}" for lr in lrs]
    return (wide.join(summary, on=["corpus", "model"])
            .select("corpus", "family", "model", *columns, "best_lr", "n_lrs",
                    "best_lr_interior")
            .sort("corpus", "family", "model"))


TUNING_SEED = 0
SEEDS_CSV = "seeds.csv"


def seed_replicates(results: list[dict[str, Any]]) -> pl.DataFrame:
    """Per (corpus, model, lr) run with more than one seed: final held-out bits/base of every
    seed, their mean and spread (max - min): the noise floor for comparing models."""
    frame = pl.DataFrame([{"corpus": r["corpus"], "model": r["model"], "lr": float(r["lr"]),
                           "seed": int(r["seed"]), "final_bpb": r["final"].get("bpb")}
                          for r in results])
    return (frame.sort("seed").group_by("corpus", "model", "lr", maintain_order=True)
            .agg(pl.col("seed").alias("seeds"), pl.col("final_bpb").alias("final_bpb_per_seed"),
                 pl.col("final_bpb").mean().alias("mean_final_bpb"),
                 (pl.col("final_bpb").max() - pl.col("final_bpb").min()).alias("spread"))
            .filter(pl.col("seeds").list.len() > 1).sort("corpus", "model", "lr"))


def half_decade_step(lr: float, up: bool) -> float:
    """The next LR on the 1-3-10 grid: 1e-3 -> 3e-3 -> 1e-2 up, 1e-3 -> 3e-4 down."""
    exponent = math.floor(math.log10(lr) + 1e-9)
    mantissa = lr / 10**exponent
    if up:
        return (3 if mantissa < 2 else 10) * 10.0**exponent
    return (1 if mantissa > 2 else 0.3) * 10.0**exponent


def lrs_to_widen(grid: pl.DataFrame) -> list[tuple[str, str, float]]:
    """(corpus, model, lr): one more LR beyond each kept LR at the edge of its grid (below the
    smallest or above the largest tried), so that running them makes the kept LR interior or
    moves the edge outward."""
    todo = []
    for row in grid.filter(~pl.col("best_lr_interior")).iter_rows(named=True):
        finite = [float(c.removeprefix("lr=")) for c in grid.columns
                  if c.startswith("lr=") and row[c] is not None]
        best = row["best_lr"]
        # Largest finite one: go up (a diverged larger LR still leaves the half step between);
        # smallest: go down; the only one: both ways.
        directions = [up for up in (False, True)
                      if (best >= max(finite) if up else best <= min(finite))]
        for up in directions:
            todo.append((row["corpus"], row["model"],
                         float(f"{half_decade_step(best, up):.3g}")))
    return todo


def bases_to_match(best: pl.DataFrame, curves: pl.DataFrame) -> pl.DataFrame:
    """For every H-Net x baseline pair of a corpus: H-Net bases to reach the baseline's final
    bits/base, and baseline bases / H-Net bases."""
    rows = []
    for corpus in best["corpus"].unique().sort():
        table = best.filter(pl.col("corpus") == corpus)
        for h in table.filter(pl.col("family") == "hnet").iter_rows(named=True):
            curve = _best_curve(curves, h)
            for b in table.filter(pl.col("family") != "hnet").iter_rows(named=True):
                needed = first_crossing(curve["bases_seen"].to_numpy(),
                                        curve["bpb"].to_numpy(), b["final_bpb"])
                rows.append({
                    "corpus": corpus, "hnet": h["model"], "baseline": b["model"],
                    "baseline_final_bpb": b["final_bpb"], "baseline_bases": b["bases"],
                    "hnet_bases_to_match": needed,
                    "ratio": b["bases"] / needed if needed and not math.isnan(needed)
                    else math.nan,
                })
    return pl.DataFrame(rows)


def equal_flops(best: pl.DataFrame, curves: pl.DataFrame) -> pl.DataFrame:
    """Adds ``equal_flops`` (the corpus's smallest total training FLOPs) and each model's
    ``bpb_at_equal_flops``."""
    out = []
    for corpus in best["corpus"].unique().sort():
        table = best.filter(pl.col("corpus") == corpus)
        budget = float((table["train_flops_per_base"] * table["bases"]).min())
        values = []
        for row in table.iter_rows(named=True):
            curve = _best_curve(curves, row)
            values.append(value_at(curve["train_flops"].to_numpy(), curve["bpb"].to_numpy(),
                                   budget))
        out.append(table.with_columns(pl.lit(budget).alias("equal_flops"),
                                      pl.Series("bpb_at_equal_flops", values)))
    return pl.concat(out)


def _best_curve(curves: pl.DataFrame, row: dict[str, Any]) -> pl.DataFrame:
    return curves.filter(
        (pl.col("corpus") == row["corpus"]) & (pl.col("model") == row["model"])
        & (pl.col("lr") == row["lr"]) & (pl.col("seed") == row["seed"])
    ).sort("bases_seen")


# --------------------------------------------------------------------------- outputs
def markdown_table(frame: pl.DataFrame, floats: int = 4) -> str:
    """A GitHub markdown table of ``frame`` (numbers rounded, large ones in e-notation)."""
    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        if isinstance(value, float):
            return f"{value:.3e}" if abs(value) >= 1e5 else f"{value:.{floats}g}"
        if isinstance(value, list):
            return ", ".join(cell(v) for v in value)
        return str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)


def plot_curves(curves: pl.DataFrame, best: pl.DataFrame, x: str, path: Path) -> None:
    """Held-out bits/base against ``x`` (bases_seen or train_flops), one panel per corpus."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = best["corpus"].unique().sort().to_list()
    fig, axes = plt.subplots(1, len(corpora), figsize=(5.5 * len(corpora), 4.2), squeeze=False)
    for ax, corpus in zip(axes[0], corpora, strict=True):
        for row in best.filter(pl.col("corpus") == corpus).iter_rows(named=True):
            curve = _best_curve(curves, row)
            style = "-" if row["family"] == "hnet" else "--"
            ax.plot(curve[x], curve["bpb"], style, marker="o", ms=3,
                    label=f"{row['model']} (lr {row['lr']:g})")
        ax.set_xscale("log")
        ax.set_title(corpus)
        ax.set_xlabel("bases (bytes) seen" if x == "bases_seen" else "training FLOPs")
        ax.set_ylabel("held-out bits per base (byte)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


RESULT_COLUMNS = [
    "corpus", "model", "tokenizer", "final_bpb", "bpb_at_equal_flops", "flops_per_base",
    "flops_per_base_target", "flops_vs_hnet", "params", "non_embedding_params", "bases_per_s",
    "bases_per_token", "compression", "lr", "lrs_tried",
]


def aggregate(root: str | Path, out: str | Path | None = None, command: str = "") -> dict:
    """Write results/curves/match/LR-grid CSVs, ``results.md`` and the plots into ``out``
    (default ``root``), with the runs' records (``archive_records``); returns the frames. Failed
    and incomplete runs are listed, never dropped."""
    root = Path(root)
    out = Path(out) if out is not None else root
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != root.resolve():
        archive_records(root, out)
    results, problems, curves = collect(root)
    if not results:
        raise FileNotFoundError(f"no finished run under {root / 'runs'}")
    replicates = seed_replicates(results)
    # LR choice and every figure use the tuning seed (0); other seeds only measure the spread.
    results = [r for r in results if int(r["seed"]) == TUNING_SEED]
    curves = curves.filter(pl.col("seed") == TUNING_SEED)
    if not results:
        raise FileNotFoundError(f"no finished seed-{TUNING_SEED} run under {root / 'runs'}")
    best = equal_flops(best_lr(results), curves)
    hnet_flops = best.filter(pl.col("family") == "hnet").group_by("corpus").agg(
        pl.col("flops_per_base").mean().alias("hnet_flops"))
    best = best.join(hnet_flops, on="corpus", how="left").with_columns(
        (pl.col("flops_per_base") / pl.col("hnet_flops")).alias("flops_vs_hnet"))
    match = bases_to_match(best, curves)
    grid = lr_grid(results)
    grid.write_csv(out / LR_GRID_CSV)
    if len(replicates):
        replicates.with_columns(
            pl.col("seeds").cast(pl.List(pl.String)).list.join(";"),
            pl.col("final_bpb_per_seed").cast(pl.List(pl.String)).list.join(";"),
        ).write_csv(out / SEEDS_CSV)
    extra = [c for c in best.columns
             if c.startswith("final_") and c.endswith("_bpb") and c != "final_bpb"]
    table = best.select(*RESULT_COLUMNS[:4], *extra, *RESULT_COLUMNS[4:])
    table.with_columns(pl.col("lrs_tried").cast(pl.List(pl.String)).list.join(";")).write_csv(
        out / RESULTS_CSV)
    curves.write_csv(out / CURVES_CSV)
    if len(match):
        match.write_csv(out / MATCH_CSV)
    plot_curves(curves, best, "bases_seen", out / PLOT_BASES)
    plot_curves(curves, best, "train_flops", out / PLOT_FLOPS)
    problems_frame = pl.DataFrame(problems) if problems else None
    parts = [f"# Data-efficiency sweep: {root.name}", ""]
    if command:
        parts += ["Made with:", "", "```", command, "```", ""]
    parts += ["## Final held-out bits per base (best LR per model)", "",
              markdown_table(table, floats=5),
              "", "FLOPs are forward FLOPs per base at the realised compression / tokens per "
              "base (`_target`: at the H-Net's target compression; training ~3x); "
              "`bpb_at_equal_flops` reads each curve at the corpus's smallest total training "
              "FLOPs.", ""]
    edge = grid.filter(~pl.col("best_lr_interior"))
    parts += ["## Learning-rate grid: final held-out bits per base at every LR tried", "",
              markdown_table(grid.drop("family"), floats=5), "",
              "The kept LR is the lowest final bits/base of its row; `best_lr_interior` is false "
              "where it is the smallest or largest LR tried (widen the grid there).", ""]
    if len(edge):
        parts += ["Kept LR at the edge of its grid: " + ", ".join(
            f"{r['corpus']}/{r['model']} ({r['best_lr']:g})"
            for r in edge.iter_rows(named=True)) + ".", ""]
    if len(replicates):
        parts += ["## Seed replicates (the tables above use seed 0)", "",
                  markdown_table(replicates, floats=5), "",
                  "`spread` = max - min final bits/base over the seeds of one (model, LR): "
                  "differences between models smaller than this are not resolved.", ""]
    if len(match):
        parts += ["## H-Net bases to match each baseline's final bits per base", "",
                  markdown_table(match), "", "ratio = baseline bases / H-Net bases to reach "
                  "the same held-out bits per base (> 1: the H-Net needs less data; – : not "
                  "reached within its budget).", ""]
    if problems_frame is not None:
        parts += ["## Failed or incomplete runs", "", markdown_table(problems_frame), ""]
    parts += [f"![bits per base vs bases]({PLOT_BASES})", "",
              f"![bits per base vs FLOPs]({PLOT_FLOPS})", ""]
    (out / RESULTS_MD).write_text("\n".join(parts))
    return {"results": table, "match": match, "problems": problems_frame, "curves": curves,
            "lr_grid": grid, "seeds": replicates}
