"""Reads bases straight from an uncompressed, faidx-indexed FASTA: one byte per base on disk.

Every process (rank, DataLoader worker) reads with ``os.pread`` through its own descriptor, so
the bases live once in the operating system's page cache, shared by all of them, and no process
holds a copy or a mapping that counts against its resident memory. A prepared genome
(:mod:`.prepare`: one line per record) reads a window as one ``pread``; any other uncompressed
FASTA (60-column lines, CRLF) as one ``pread`` of the lines it spans, with the line ends cut
out by a reshape.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class FaiReader:
    """``read(contig, start, end)``: the ASCII codes of ``contig[start:end]`` (checked by the
    caller), from ``path`` at the offsets of its ``.fai`` ``entries``."""

    def __init__(self, path: Path, entries: dict[str, tuple[int, int, int, int]]) -> None:
        self.path = path
        self.entries = entries  # name -> (length, offset, linebases, linewidth)
        self._fd = os.open(path, os.O_RDONLY)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, contig: str, start: int, end: int) -> np.ndarray:
        length, offset, linebases, linewidth = self.entries[contig]
        if end <= start:
            return np.empty(0, dtype=np.uint8)
        if linebases >= length:  # one line: the bases are contiguous
            return self._pread(offset + start, end - start)
        first, last = start // linebases, (end - 1) // linebases
        raw = self._pread(offset + first * linewidth, (last - first + 1) * linewidth)
        if raw.size < (last - first + 1) * linewidth:  # the file ends without a newline
            raw = np.concatenate((raw, np.zeros((last - first + 1) * linewidth - raw.size,
                                                dtype=np.uint8)))
        lines = raw.reshape(-1, linewidth)[:, :linebases].reshape(-1)
        skip = start - first * linebases
        return lines[skip:skip + end - start]

    def _pread(self, offset: int, n: int) -> np.ndarray:
        data = os.pread(self._fd, n, offset)
        while len(data) < n:  # pread may return less than asked for (signals, large reads)
            more = os.pread(self._fd, n - len(data), offset + len(data))
            if not more:
                break
            data += more
        return np.frombuffer(data, dtype=np.uint8)


def read_fai_entries(fai: Path) -> dict[str, tuple[int, int, int, int]]:
    """``{name: (length, offset, linebases, linewidth)}`` of a ``.fai`` file."""
    entries = {}
    with open(fai) as fh:
        for line in fh:
            name, length, offset, linebases, linewidth = line.rstrip("\n").split("\t")[:5]
            entries[name] = (int(length), int(offset), int(linebases), int(linewidth))
    return entries


__all__ = ["FaiReader", "read_fai_entries"]
