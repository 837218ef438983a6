"""Minimal GFF3 reading: feature lines with parsed attributes, errors naming file and line."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from urllib.parse import unquote

from hnet_dna.errors import InputError


class GFFFormatError(InputError):
    """Malformed GFF line; the message names the file and 1-based line."""


def _open_text(path: str | os.PathLike):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gz else open(path)


def iter_gff(path: str | os.PathLike) -> Iterator[tuple[int, list[str], dict[str, str]]]:
    """``(line number, 9 columns, attributes)`` of every feature line of a GFF3 file."""
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.startswith("##FASTA"):
                break
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\r\n").split("\t")
            if len(cols) != 9:
                raise GFFFormatError(f"{path}:{lineno}: expected 9 tab-separated columns, "
                                     f"got {len(cols)}")
            attrs = {}
            for item in cols[8].split(";"):
                if "=" in item:
                    key, value = item.split("=", 1)
                    attrs[key.strip()] = unquote(value)
            yield lineno, cols, attrs


