"""hnet_dna's import graph, read from the source with ``ast``: no cycles, and the layering
docs/architecture.md states ("Imports only run downward").

Every import statement of every module counts: module level, inside functions, under
``TYPE_CHECKING`` and in ``try`` blocks alike, since a function-local import only hides a
circle, it does not untie it. ``from pkg import name`` is an arrow to the submodule
``pkg.name`` when there is one, else to ``pkg`` itself; relative imports are resolved against
the importing module's package. The implicit import of a module's parent packages is not an
arrow (every module would otherwise depend on ``hnet_dna/__init__.py``).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "hnet_dna"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Arrow:
    """``source`` imports ``target`` at ``source``'s file, line ``line``."""
    source: str
    target: str
    line: int


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool
              ) -> Iterator[tuple[str, str | None]]:
    """(module, name or None) pairs one import statement names, relative ones resolved."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, None
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    for alias in node.names:
        yield base, alias.name


def import_arrows(files: dict[str, Path], package: str = PACKAGE) -> list[Arrow]:
    """Every arrow between modules of ``files`` (see the module docstring for what counts)."""
    arrows = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for base, name in _imported(node, module, is_package):
                if base != package and not base.startswith(package + "."):
                    continue
                target = f"{base}.{name}" if name and f"{base}.{name}" in files else base
                assert target in files, f"{path}:{node.lineno} imports {target}, not a module"
                if target != module:
                    arrows.append(Arrow(module, target, node.lineno))
    return arrows


def import_cycles(arrows: list[Arrow]) -> list[list[Arrow]]:
    """The import circles: in each strongly connected group of modules (Tarjan), the shortest
    circle through each of its modules, each circle once."""
    graph: dict[str, dict[str, Arrow]] = {}
    for arrow in arrows:
        graph.setdefault(arrow.source, {}).setdefault(arrow.target, arrow)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = {stack.pop()}
            while node not in group:
                group.add(stack.pop())
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)

    cycles: dict[frozenset[Arrow], list[Arrow]] = {}
    for group in groups:
        for start in sorted(group):
            cycle = _shortest_cycle(graph, group, start)
            cycles.setdefault(frozenset(cycle), cycle)
    return sorted(cycles.values(), key=lambda c: (len(c), c[0].source))


def _shortest_cycle(graph: dict[str, dict[str, Arrow]], group: set[str], start: str
                    ) -> list[Arrow]:
    """The shortest circle from ``start`` back to it inside ``group`` (breadth-first), begun at
    its alphabetically first module so that one circle reads the same from any start."""
    previous: dict[str, Arrow] = {}
    queue = deque([start])
    while queue and start not in previous:
        node = queue.popleft()
        for nxt, arrow in sorted(graph.get(node, {}).items()):
            if nxt in group and nxt not in previous:
                previous[nxt] = arrow
                queue.append(nxt)
    cycle, node = [], start
    while not cycle or node != start:
        cycle.append(previous[node])
        node = previous[node].source
    cycle.reverse()
    first = min(range(len(cycle)), key=lambda i: cycle[i].source)
    return cycle[first:] + cycle[:first]


def describe(cycle: list[Arrow], files: dict[str, Path], root: Path = ROOT) -> str:
    """``a (a.py:line) -> b (b.py:line) -> a``: each module with the line of its import."""
    steps = [f"{a.source} ({files[a.source].relative_to(root)}:{a.line})" for a in cycle]
    return " -> ".join([*steps, cycle[0].source])


# The layers of docs/architecture.md, lowest first. A module may import its own subpackage (or
# module) and any lower layer; peers of one layer stay apart (model/ knows nothing about DNA).
LAYERS = [
    {"hnet_dna.errors", "hnet_dna._version", "hnet_dna.progress"},
    {"hnet_dna.outputs", "hnet_dna.conf"},
    {"hnet_dna.model", "hnet_dna.genomics"},
    {"hnet_dna.training"},
    {"hnet_dna.baselines", "hnet_dna.evaluation"},
    {"hnet_dna.convert"},
    {"hnet_dna.cli", "hnet_dna"},  # the entry point and the package's lazy model API
]


def unit(module: str) -> str:
    """The layered unit a module belongs to: its top-level subpackage or module."""
    return ".".join(module.split(".")[:2])


def layer(module: str) -> int:
    (rank,) = [i for i, units in enumerate(LAYERS) if unit(module) in units]
    return rank


@pytest.fixture(scope="module")
def files() -> dict[str, Path]:
    return module_files()


@pytest.fixture(scope="module")
def arrows(files) -> list[Arrow]:
    return import_arrows(files)


def test_no_import_cycles(files, arrows):
    cycles = import_cycles(arrows)
    assert not cycles, "import cycles in hnet_dna:\n" + "\n".join(
        describe(c, files) for c in cycles)


def test_imports_run_downward(files, arrows):
    unplaced = sorted({unit(m) for m in files} - set().union(*LAYERS))
    assert not unplaced, f"place {unplaced} in a layer of LAYERS (and docs/architecture.md)"
    upward = [a for a in arrows
              if unit(a.source) != unit(a.target) and layer(a.target) >= layer(a.source)]
    assert not upward, "imports that do not run downward:\n" + "\n".join(
        f"{files[a.source].relative_to(ROOT)}:{a.line}: {a.source} -> {a.target}"
        for a in upward)


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return module_files(root, "pkg")


def test_the_walk_finds_hidden_and_relative_cycles(tmp_path):
    """The checker itself: a circle closed by a function-local relative import, one through
    ``from pkg import submodule`` and one under TYPE_CHECKING are all found, a one-way
    ``from pkg import name`` (a package attribute) is not a circle."""
    files = _write(tmp_path, {
        "pkg/__init__.py": "VERSION = 1\n",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "def f():\n    from .a import thing\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "from pkg.sub import d\nfrom pkg import VERSION\n",
        "pkg/sub/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                        "    from ..sub.c import x\n",
        "pkg/e.py": "import pkg.a\n",
    })
    arrows = import_arrows(files, "pkg")
    assert {(a.source, a.target) for a in arrows} == {
        ("pkg.a", "pkg.b"), ("pkg.b", "pkg.a"), ("pkg.sub.c", "pkg.sub.d"),
        ("pkg.sub.c", "pkg"), ("pkg.sub.d", "pkg.sub.c"), ("pkg.e", "pkg.a")}
    found = [describe(c, files, tmp_path) for c in import_cycles(arrows)]
    assert found == ["pkg.a (pkg/a.py:1) -> pkg.b (pkg/b.py:2) -> pkg.a",
                     "pkg.sub.c (pkg/sub/c.py:1) -> pkg.sub.d (pkg/sub/d.py:3) -> pkg.sub.c"]

