"""Run metrics: one JSON object per line (``split`` = train | eval | baseline), read with polars,
plotted to PNG (train/eval bits per base and bases per chunk against the step)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import polars as pl

from hnet_dna.errors import InputError
from hnet_dna.outputs import atomic_output

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"
PLOT_NAME = "metrics.png"


class MetricsWriter:
    """Appends records to ``<run_dir>/metrics.jsonl`` (appending keeps a resumed run's history).

    A run that restarts at step s (from a checkpoint, or from scratch at 0) first drops the
    records after s (:meth:`truncate_after`), so each step is logged once.
    """

    def __init__(self, run_dir: str | Path, truncate_after_step: int | None = None) -> None:
        self.path = Path(run_dir) / METRICS_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_after_step is not None:
            self.truncate_after(truncate_after_step)

    def write(self, split: str, step: int, values: dict[str, Any]) -> None:
        record = {"split": split, "step": step}
        record.update({k: _jsonable(v) for k, v in values.items()})
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop the records after ``step`` (the steps a restarted run repeats), atomically.

        A last line cut short by a killed process is dropped too (logged); a damaged line
        elsewhere is an error naming the file and line.
        """
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        kept = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record_step = json.loads(line)["step"]
            except (json.JSONDecodeError, KeyError, TypeError):
                if number == len(lines):
                    log.warning("%s:%d: dropped a record cut short by a killed process",
                                self.path, number)
                    continue
                raise InputError(f"{self.path}:{number}: not a metrics record") from None
            if record_step <= step:
                kept.append(line)
        dropped = sum(1 for line in lines if line.strip()) - len(kept)
        if dropped:
            log.info("%s: dropped %d record(s) after step %d (repeated by this run)",
                     self.path, dropped, step)
            with atomic_output(self.path) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # tensors / numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; null reads back as a polars null
    return value


def read_metrics(path: str | Path) -> pl.DataFrame:
    """All records of a run folder (or a metrics file) as one frame; absent fields are null."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    # Train, eval and baseline records carry different fields: infer the schema from all rows.
    return pl.read_ndjson(path, infer_schema_length=None)


def plot_metrics(path: str | Path, out: str | Path | None = None) -> Path:
    """PNG with bits per base (train and eval) and bases per chunk per stage against the step."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters
    import matplotlib.pyplot as plt

    frame = read_metrics(path)
    run_dir = Path(path) if Path(path).is_dir() else Path(path).parent
    out = Path(out) if out is not None else run_dir / PLOT_NAME
    fig, (ax_bpb, ax_bpc) = plt.subplots(1, 2, figsize=(11, 4))
    for split, column, style in (
        ("train", "bpb", "-"),
        ("eval", "bpb", "o-"),
        ("eval", "bpb_upper", "s--"),
    ):
        rows = frame.filter(pl.col("split") == split)
        if column in rows.columns and rows[column].drop_nulls().len():
            rows = rows.drop_nulls(column)
            ax_bpb.plot(rows["step"], rows[column], style, label=f"{split} {column}")
    baselines = frame.filter(pl.col("split") == "baseline")
    if "bpb" in baselines.columns and baselines.height:
        # Reference lines: the weakest (usually order 0) and the best Markov model.
        baselines = baselines.sort("bpb")
        picks = {0: "black", baselines.height - 1: "gray"}
        for index, color in picks.items():
            row = baselines.row(index, named=True)
            ax_bpb.axhline(row["bpb"], ls=":", lw=1, color=color, label=row["name"])
    ax_bpb.set(xlabel="step", ylabel="bits per base", title="bits per base")
    ax_bpb.legend()
    train = frame.filter(pl.col("split") == "train")
    for column in sorted(c for c in frame.columns if c.startswith("bases_per_chunk_s")):
        rows = train.drop_nulls(column)
        ax_bpc.plot(rows["step"], rows[column], label=column.replace("bases_per_chunk_", "stage "))
    ax_bpc.set(xlabel="step", ylabel="bases per chunk", title="realised compression")
    if ax_bpc.lines:
        ax_bpc.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
