"""Print pyproject.toml's dependencies (plus the ``dev`` extra) pinned at their lowest allowed
versions, one requirement a line, for ``make test-min``."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def lowest(requirement: str) -> str:
    """``numpy>=1.26`` -> ``numpy==1.26``; a requirement without a lower bound is an error."""
    req = Requirement(requirement)
    floors = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
    if len(floors) != 1:
        raise ValueError(f"{requirement!r}: expected exactly one lower bound (>=, == or ~=)")
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}=={floors[0]}"


def lowest_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return [lowest(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


if __name__ == "__main__":
    sys.stdout.write("".join(f"{line}\n" for line in lowest_requirements()))
