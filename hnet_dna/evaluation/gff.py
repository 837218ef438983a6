"""GFF3 and GTF reading: feature lines with parsed attributes, errors naming file and line.

The dialect is taken from the ``##gff-version`` line, else from the first feature line's
attributes (GTF: ``key "value";``, GFF3: ``key=value;``). GFF3 values are percent-decoded and
multi-valued (``Parent=a,b``) values are kept whole here (:func:`parents` splits them). GTF
attributes are read as ``key "value"`` pairs (a repeated key keeps its values comma-joined);
so that one reader serves both, a GTF line also gets ``Parent``: its ``transcript_id`` (its
``gene_id`` for ``transcript`` lines), and ``ID`` for ``gene``/``transcript`` lines.

A file in neither dialect, or an attribute that cannot be read, is refused with the file and
line (nothing is silently left out). gffutils was not used: it builds an SQLite database of the
whole file, where the consequence and task builders need one streaming pass over the lines.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator
from urllib.parse import unquote

from hnet_dna.errors import InputError
from hnet_dna.genomics.records import is_gzip

__all__ = ["GFFFormatError", "iter_gff", "parents"]


class GFFFormatError(InputError):
    """Malformed GFF/GTF line; the message names the file and 1-based line."""


_KEY_VALUE = r'([A-Za-z_][\w.-]*)\s+(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^;\s"]+))'  # key "value"
_GTF_ITEM = re.compile(r"\s*" + _KEY_VALUE + r"\s*$")
# one pair from a position on, up to its ';': a quoted value may hold ';' (NCBI's notes do)
_GTF_PAIR = re.compile(r"[\s;]*" + _KEY_VALUE + r"\s*(?:;|$)")
_GTF_END = re.compile(r"[\s;]*$")


def _open_text(path: str | os.PathLike):
    return gzip.open(path, "rt") if is_gzip(path) else open(path)


def _attr_items(text: str) -> list[str]:
    """The non-empty ``;``-separated items of an attribute column (``.`` has none)."""
    return [] if text.strip() == "." else [item for item in text.split(";") if item.strip()]


def _gff3_attrs(text: str, where: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for item in _attr_items(text):
        if "=" not in item:
            raise GFFFormatError(f"{where}: GFF3 attribute {item.strip()!r} is not key=value "
                                 "(a GTF file? its attributes read key \"value\";)")
        key, value = item.split("=", 1)
        attrs[key.strip()] = value  # percent-decoded by the users, after splitting at ','
    return attrs


def _gtf_attrs(text: str, cols: list[str], where: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    items = [_GTF_ITEM.match(item) for item in _attr_items(text)]
    if not all(items):  # a ';' inside a quoted value splits it: scan pair by pair instead
        items, pos = [], 0
        while not _GTF_END.match(text, pos):
            m = _GTF_PAIR.match(text, pos)
            if m is None:
                item = text[pos:].strip(" \t;").split(";", 1)[0].strip()
                raise GFFFormatError(f"{where}: GTF attribute {item!r} is not key \"value\"")
            items.append(m)
            pos = m.end()
    for m in items:
        key, value = m.group(1), m.group(2) if m.group(2) is not None else m.group(3)
        attrs[key] = f"{attrs[key]},{value}" if key in attrs else value
    feature = cols[2]
    if feature in ("CDS", "exon", "stop_codon", "start_codon") and "transcript_id" not in attrs:
        raise GFFFormatError(f"{where}: GTF {feature} line without transcript_id")
    if feature == "gene" and "gene_id" in attrs:
        attrs.setdefault("ID", attrs["gene_id"])
    elif feature == "transcript" and "transcript_id" in attrs:
        attrs.setdefault("ID", attrs["transcript_id"])
        if "gene_id" in attrs:
            attrs.setdefault("Parent", attrs["gene_id"])
    elif "transcript_id" in attrs:
        attrs.setdefault("Parent", attrs["transcript_id"])
    return attrs


def _dialect_of(attributes: str) -> str:
    first = next((i.strip() for i in attributes.split(";") if i.strip()), "")
    if _GTF_ITEM.match(first) and "=" not in first.split(None, 1)[0]:
        return "gtf"
    return "gff3"


def iter_gff(path: str | os.PathLike) -> Iterator[tuple[int, list[str], dict[str, str]]]:
    """``(line number, 9 columns, attributes)`` of every feature line of a GFF3/GTF file."""
    dialect: str | None = None
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.startswith("##FASTA"):
                break
            if line.startswith("##gff-version"):
                version = line.split()[1] if len(line.split()) > 1 else ""
                dialect = "gff3" if version.startswith("3") else "gtf"
                continue
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\r\n").split("\t")
            where = f"{path}:{lineno}"
            if len(cols) != 9:
                raise GFFFormatError(f"{where}: expected 9 tab-separated columns, "
                                     f"got {len(cols)}")
            if dialect is None:
                dialect = _dialect_of(cols[8])
            attrs = _gtf_attrs(cols[8], cols, where) if dialect == "gtf" else \
                _gff3_attrs(cols[8], where)
            if dialect == "gff3":
                attrs = {k: v if k in ("Parent", "ID") else unquote(v) for k, v in attrs.items()}
            yield lineno, cols, attrs


def parents(attrs: dict[str, str]) -> list[str]:
    """The ``Parent`` ids of a feature (``Parent=a,b``: a CDS shared by two transcripts)."""
    value = attrs.get("Parent")
    return [unquote(p) for p in value.split(",") if p] if value else []
