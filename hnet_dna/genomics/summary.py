"""What opening a corpus needs to know about a genome's sequence, without reading it again.

Splitting a genome into N-free intervals needs its N runs, and the corpus log its IUPAC
ambiguity counts: one pass over the sequence. :class:`GenomeSummary` holds both, per record,
and is saved beside the genome's faidx index (``<fai stem>.hnet.json``), so the next open of
the genome, in any process, reads a few kB instead of the sequence: opening a corpus then costs
time and memory in proportion to its records, not its bases.

A saved summary is trusted only while it describes the same data: the sequence file's size
and mtime and the index's digest are recorded in it and compared on load (a stale summary is
recomputed, never used).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .alphabet import ENCODE_TABLE, N, count_ambiguity

log = logging.getLogger(__name__)

VERSION = 1
SUFFIX = ".hnet.json"

Runs = list[tuple[int, int]]


@dataclass
class GenomeSummary:
    """Per record: half-open N runs (any case, and the IUPAC codes that read as N) and the
    counts of ambiguity codes other than N (zeros left out)."""

    n_runs: dict[str, Runs] = field(default_factory=dict)
    ambiguity: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"n_runs": {k: [list(r) for r in v] for k, v in self.n_runs.items()},
                "ambiguity": self.ambiguity}

    @classmethod
    def from_json(cls, data: dict) -> GenomeSummary:
        return cls({k: [tuple(r) for r in v] for k, v in data["n_runs"].items()},
                   {k: dict(v) for k, v in data["ambiguity"].items()})


class RunScanner:
    """Streaming N-run and ambiguity counter over one record's bases, fed in chunks."""

    def __init__(self) -> None:
        self.runs: Runs = []
        self.ambiguity: dict[str, int] = {}
        self.position = 0

    def add(self, raw: np.ndarray) -> None:
        """Add the next chunk of ASCII codes (validated elsewhere)."""
        pos = np.flatnonzero(ENCODE_TABLE[raw] == N)
        if pos.size:
            pos += self.position
            breaks = np.flatnonzero(np.diff(pos) > 1)
            starts = pos[np.concatenate(([0], breaks + 1))].tolist()
            ends = (pos[np.concatenate((breaks, [pos.size - 1]))] + 1).tolist()
            for s, e in zip(starts, ends, strict=True):
                if self.runs and self.runs[-1][1] == s:  # run continues from the last chunk
                    self.runs[-1] = (self.runs[-1][0], e)
                else:
                    self.runs.append((s, e))
        for code, n in count_ambiguity(raw).items():
            self.ambiguity[code] = self.ambiguity.get(code, 0) + n
        self.position += len(raw)


def scan(contigs: dict[str, int], fetch: Callable[[str, int, int], np.ndarray],
         chunk: int = 1 << 22, progress: Callable[[int], None] | None = None) -> GenomeSummary:
    """One pass over every record through ``fetch(contig, start, end)`` (ASCII codes)."""
    summary = GenomeSummary()
    for contig, length in contigs.items():
        scanner = RunScanner()
        for a in range(0, length, chunk):
            b = min(a + chunk, length)
            scanner.add(fetch(contig, a, b))
            if progress is not None:
                progress(b - a)
        add_record(summary, contig, scanner)
    return summary


def add_record(summary: GenomeSummary, contig: str, scanner: RunScanner) -> None:
    summary.n_runs[contig] = scanner.runs
    if scanner.ambiguity:
        summary.ambiguity[contig] = dict(sorted(scanner.ambiguity.items()))


# ----------------------------------------------------------------------------- on disk
def summary_path(fai: Path) -> Path:
    """``genome.fa.fai`` -> ``genome.fa.hnet.json``."""
    return fai.with_name(fai.name.removesuffix(".fai") + SUFFIX)


def fingerprint(data: Path, fai: Path) -> dict:
    """What must not change for a saved summary to stay true."""
    st = data.stat()
    return {"version": VERSION, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "fai_sha1": hashlib.sha1(fai.read_bytes()).hexdigest()}


def load_summary(data: Path, fai: Path) -> GenomeSummary | None:
    """The saved summary of ``data`` indexed by ``fai``, or None when absent or stale."""
    path = summary_path(fai)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("data") != fingerprint(data, fai):
        log.info("%s: summary is stale (the data or its index changed); rescanning", path)
        return None
    return GenomeSummary.from_json(saved)


def save_summary(data: Path, fai: Path, summary: GenomeSummary,
                 extra: dict | None = None) -> Path | None:
    """Write the summary beside ``fai`` (temp file + rename); None when the folder is read-only
    (the summary is then recomputed by the next open, which costs time, not correctness)."""
    path = summary_path(fai)
    payload = {"data": fingerprint(data, fai), **(extra or {}), **summary.to_json()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(payload))
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        log.info("%s: not saved (%s); the next open scans the genome again", path, err.strerror)
        return None
    return path


def runs_within(runs: Iterable[tuple[int, int]], start: int, end: int) -> Runs:
    """The parts of ``runs`` inside ``[start, end)``, in the same coordinates."""
    return [(max(s, start), min(e, end)) for s, e in runs if s < end and e > start]


__all__ = ["GenomeSummary", "RunScanner", "load_summary", "runs_within", "save_summary", "scan",
           "summary_path"]
