"""Sequence classification tasks: loaders for CSV (GUE / Nucleotide Transformer) and Genomic
Benchmarks folders. Builders from a FASTA + GFF live in :mod:`task_builders`.

Task specs (``load_task``): ``csv:FOLDER``, ``gb:FOLDER``, a bare folder (sniffed), or a
benchmark task by name, ``gue:NAME`` / ``nt:NAME``, looked up under a task root (``--task-root``
or the ``HNET_DNA_TASK_ROOT`` environment variable): the folder ``NAME`` (which may include its
parents, ``prom/prom_core_all``) holding ``train.csv`` and ``test.csv``, at most three levels
below the root, so the root may be the ``GUE`` folder itself or any folder above it.

Every loader checks its input and raises :class:`TaskFormatError` naming the file, line and
what is wrong; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from hnet_dna.errors import InputError
from hnet_dna.genomics.alphabet import InvalidBaseError, encode

TASK_ROOT_ENV = "HNET_DNA_TASK_ROOT"
NAMED_KINDS = ("gue", "nt")
SPLIT_ALIASES = {"train": ("train",), "dev": ("dev", "valid", "val"), "test": ("test",)}


class TaskFormatError(InputError):
    """Bad task input; the message names the file (and 1-based line where there is one)."""


@dataclass
class TaskSplit:
    sequences: list[str]
    labels: np.ndarray  # int64 class indices
    names: list[str] = field(default_factory=list)  # e.g. "contig:start-end(strand)"

    def __len__(self) -> int:
        return len(self.sequences)


@dataclass
class Task:
    name: str
    splits: dict[str, TaskSplit]
    classes: list[str]
    sources: dict[str, str] = field(default_factory=dict)  # split -> file or folder read

    def require_every_class(self, splits: tuple[str, ...] = ("train", "dev", "test")) -> None:
        """Refuse a split that lacks a class: its metrics (MCC, F1, AUROC) would be undefined."""
        for split in splits:
            if split not in self.splits:
                continue
            present = set(np.unique(self.splits[split].labels).tolist())
            missing = [c for i, c in enumerate(self.classes) if i not in present]
            if missing:
                where = self.sources.get(split, f"task {self.name}")
                raise TaskFormatError(
                    f"{where}: the {split} split has no example of class(es) {missing}; "
                    "its metrics would be undefined")

    def summary(self) -> dict[str, dict[str, int]]:
        return {s: {c: int((sp.labels == i).sum()) for i, c in enumerate(self.classes)}
                for s, sp in self.splits.items()}


def _check_sequence(seq: str | None, where: str) -> str:
    if seq is None or not seq.strip():
        raise TaskFormatError(f"{where}: empty sequence")
    seq = seq.strip()
    try:
        encode(seq)
    except InvalidBaseError as err:
        raise TaskFormatError(f"{where}: invalid base {err.char!r} at sequence position "
                              f"{err.position} (0-based)") from None
    return seq


def read_sequence_table(path: str | os.PathLike, require: tuple[str, ...] = ("sequence",)
                        ) -> pl.DataFrame:
    """A CSV/TSV (by extension; ``.tsv``/``.txt`` = tab) with a header, all columns as text.

    Checks no column name repeats, the ``require`` columns exist and every ``sequence`` is
    non-empty ACGT/IUPAC.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskFormatError(f"{path}: file not found")
    sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    raw = path.read_bytes()
    if b"\0" in raw[:1 << 16]:
        raise TaskFormatError(f"{path}: a binary file, not a {'TSV' if sep == chr(9) else 'CSV'} "
                              "text table")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise TaskFormatError(f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x} at "
                              f"offset {err.start})") from None
    # polars renames a repeated column (label -> label_duplicated_0) and reads the first: which
    # one the user meant is unknown, so a repeated name is refused
    end = raw.find(b"\n")
    first = raw[: end if end >= 0 else len(raw)].decode("utf-8").rstrip("\r")
    header = next(csv.reader([first], delimiter=sep), [])
    for name, n in Counter(header).items():
        if n > 1:
            raise TaskFormatError(f"{path}:1: column {name!r} appears {n} times in the header")
    try:
        df = pl.read_csv(io.BytesIO(raw), separator=sep, infer_schema=False)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as err:
        raise TaskFormatError(f"{path}: cannot parse as {'TSV' if sep == chr(9) else 'CSV'}: "
                              f"{err}") from None
    missing = [c for c in require if c not in df.columns]
    if missing:
        raise TaskFormatError(f"{path}: missing column(s) {missing}; header is {df.columns} "
                              f"(expected a header line with {list(require)})")
    if df.height == 0:
        raise TaskFormatError(f"{path}: no data rows")
    if "sequence" in df.columns:
        # line = row + 2: the header is line 1
        seqs = [_check_sequence(s, f"{path}:{i + 2}") for i, s in enumerate(df["sequence"])]
        df = df.with_columns(pl.Series("sequence", seqs))
    return df


def _labels(df: pl.DataFrame, path: Path) -> list[str]:
    out = []
    for i, value in enumerate(df["label"]):
        if value is None or not value.strip():
            raise TaskFormatError(f"{path}:{i + 2}: empty label")
        out.append(value.strip())
    return out


def _class_order(values: set[str]) -> list[str]:
    """Integer labels sort numerically ('2' < '10'), others alphabetically."""
    try:
        return sorted(values, key=int)
    except ValueError:
        return sorted(values)


def _find_split(folder: Path, split: str, suffixes: tuple[str, ...]) -> Path | None:
    for name in SPLIT_ALIASES[split]:
        for suffix in suffixes:
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return None


def load_csv_task(folder: str | os.PathLike, name: str | None = None) -> Task:
    """GUE / NT layout: ``train.csv``, optional ``dev.csv`` (or ``valid``/``val``), ``test.csv``,
    each with a ``sequence,label`` header (``.tsv`` also accepted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TaskFormatError(f"{folder}: not a folder (expected train.csv, dev.csv, test.csv)")
    raw: dict[str, tuple[list[str], list[str], Path]] = {}
    for split in ("train", "dev", "test"):
        path = _find_split(folder, split, (".csv", ".tsv"))
        if path is None:
            if split == "dev":
                continue
            raise TaskFormatError(f"{folder}: no {split}.csv (GUE/NT layout: train.csv, "
                                  "dev.csv, test.csv with a 'sequence,label' header)")
        df = read_sequence_table(path, ("sequence", "label"))
        raw[split] = (df["sequence"].to_list(), _labels(df, path), path)
    classes = _class_order(set(raw["train"][1]))
    if len(classes) < 2:
        raise TaskFormatError(f"{raw['train'][2]}: a single class {classes} in train")
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, (seqs, labels, path) in raw.items():
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise TaskFormatError(f"{path}: label(s) {unknown} do not occur in train")
        splits[split] = TaskSplit(seqs, np.array([index[x] for x in labels], dtype=np.int64))
    return Task(name or folder.name, splits, classes,
                {split: str(path) for split, (_, _, path) in raw.items()})


def load_genomic_benchmarks(folder: str | os.PathLike, name: str | None = None) -> Task:
    """Genomic Benchmarks layout: ``train/<class>/*.txt`` and ``test/<class>/*.txt``, one
    sequence per file; class names are the folder names (sorted)."""
    folder = Path(folder)
    splits: dict[str, tuple[list[str], list[str], list[str]]] = {}
    for split in ("train", "test"):
        d = folder / split
        if not d.is_dir():
            raise TaskFormatError(f"{folder}: no {split}/ folder (Genomic Benchmarks layout: "
                                  "train/<class>/*.txt, test/<class>/*.txt)")
        seqs, labels, names = [], [], []
        class_dirs = sorted(p for p in d.iterdir() if p.is_dir())
        if not class_dirs:
            raise TaskFormatError(f"{d}: no class folders")
        for cdir in class_dirs:
            files = sorted(cdir.glob("*.txt"))
            if not files:
                raise TaskFormatError(f"{cdir}: no .txt sequence files")
            for f in files:
                seqs.append(_check_sequence(f.read_text(), str(f)))
                labels.append(cdir.name)
                names.append(f.stem)
        splits[split] = (seqs, labels, names)
    classes = sorted(set(splits["train"][1]))
    extra = sorted(set(splits["test"][1]) - set(classes))
    if extra:
        raise TaskFormatError(f"{folder / 'test'}: class folder(s) {extra} missing from train/")
    if len(classes) < 2:
        raise TaskFormatError(f"{folder / 'train'}: a single class folder {classes}")
    index = {c: i for i, c in enumerate(classes)}
    return Task(name or folder.name, {
        s: TaskSplit(seqs, np.array([index[x] for x in labels], dtype=np.int64), names)
        for s, (seqs, labels, names) in splits.items()
    }, classes, {s: str(folder / s) for s in splits})


def find_named_task(kind: str, name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of benchmark task ``name`` (``gue:NAME`` / ``nt:NAME``) under ``root``
    (default: ``$HNET_DNA_TASK_ROOT``); see the module docstring."""
    root = root or os.environ.get(TASK_ROOT_ENV)
    if not root:
        raise TaskFormatError(f"{kind}:{name}: give the folder holding the {kind.upper()} tasks "
                              f"with --task-root or {TASK_ROOT_ENV}")
    root = Path(root)
    if not root.is_dir():
        raise TaskFormatError(f"task root {root}: not a folder")
    if not name or ".." in Path(name).parts or Path(name).is_absolute():
        raise TaskFormatError(f"{kind}:{name}: give a task name such as prom_core_all")
    found = sorted({d for pattern in (name, f"*/{name}", f"*/*/{name}", f"*/*/*/{name}")
                    for d in root.glob(pattern)
                    if d.is_dir() and _find_split(d, "train", (".csv", ".tsv"))})
    if not found:
        raise TaskFormatError(f"{kind}:{name}: no folder {name!r} with a train.csv under {root}")
    if len(found) > 1:
        raise TaskFormatError(f"{kind}:{name}: ambiguous under {root}: "
                              f"{[str(d.relative_to(root)) for d in found]}; give more of the "
                              "path, e.g. prom/prom_core_all")
    return found[0]


def load_task(spec: str, root: str | os.PathLike | None = None) -> Task:
    """``csv:FOLDER``, ``gb:FOLDER``, ``gue:NAME`` or ``nt:NAME`` (under ``root``); a bare
    folder is sniffed (``train.csv`` -> CSV, ``train/`` -> Genomic Benchmarks)."""
    kind, _, path = spec.partition(":")
    if kind in NAMED_KINDS:
        return load_csv_task(find_named_task(kind, path, root), name=f"{kind}:{path}")
    if not path:
        folder = Path(spec)
        if _find_split(folder, "train", (".csv", ".tsv")):
            return load_csv_task(folder)
        if (folder / "train").is_dir():
            return load_genomic_benchmarks(folder)
        raise TaskFormatError(f"{folder}: neither a CSV task (train.csv) nor a Genomic "
                              "Benchmarks folder (train/<class>/)")
    if kind == "csv":
        return load_csv_task(path)
    if kind == "gb":
        return load_genomic_benchmarks(path)
    raise TaskFormatError(f"unknown task kind {kind!r} in {spec!r}; use csv:FOLDER, gb:FOLDER, "
                          "gue:NAME or nt:NAME")
