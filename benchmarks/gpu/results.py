"""The two files a ``gpu_check`` run leaves: ``gpu_check.json`` (everything measured) and
``gpu_check.md``, a short summary: the run's header and, per section, its own table (the
section module's ``summary``) or why it was skipped, failed or not reached."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.timing import REPO

NAME = "gpu_check"
DEFAULT_OUT = REPO / "benchmarks" / "results" / NAME

Summary = Callable[[dict[str, Any]], list[str]]


def fmt(x: Any, spec: str = ".3g") -> str:
    """A number in ``spec`` format; None as an empty table cell."""
    return "" if x is None else format(x, spec) if isinstance(x, float | int) else str(x)


def markdown(payload: dict[str, Any], summaries: Mapping[str, Summary]) -> str:
    """A short summary of the JSON (GPU rows say why they were skipped); ``summaries`` renders
    each section's result, in order."""
    sec = payload["sections"]
    env = sec.get("environment", {})
    plan = payload["plan"]
    device = env.get("gpu") or env.get("device", "?")
    lines = [f"# gpu_check: {payload['when']}", "",
             f"device `{device}`, torch {env.get('torch')}, commit {env.get('commit')}"
             f"{' (dirty)' if env.get('dirty') else ''}, {payload['seconds']:.0f} s of the"
             f" {plan['budget_s']:.0f} s budget", ""]
    if plan["smoke"] or device == "cpu":
        lines += [f"**{'Smoke run (tiny shapes)' if plan['smoke'] else 'No GPU'} on `{device}`:"
                  " these numbers test the script; they are not GPU readings.**", ""]
    for key, value in (env.get("fast_paths") or {}).items():
        lines.append(f"* {key}: {value}")
    for key, value in payload.get("kernels", {}).items():
        lines.append(f"* {key}: {str(value)[:300]}")
    for name in summaries:
        r = sec.get(name)
        lines += ["", f"## {name}", ""]
        if r is None:
            lines.append("not reached")
            continue
        if "skipped" in r or "error" in r:
            kind = "skipped" if "skipped" in r else "error"
            lines.append(f"{kind}: {r[kind]}")
            continue
        lines += summaries[name](r)
    return "\n".join(lines) + "\n"


def write(out_dir: Path, payload: dict[str, Any], summaries: Mapping[str, Summary]) -> None:
    """Rewrite ``gpu_check.json`` and ``gpu_check.md`` (temporary file, then rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in ((f"{NAME}.json", json.dumps(payload, indent=1, default=str) + "\n"),
                       (f"{NAME}.md", markdown(payload, summaries))):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out_dir / name)
