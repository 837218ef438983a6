"""VCF text in and out without re-encoding: what a user gave us comes back byte-identical.

Records are read as the raw lines of the file (plain, gzip or bgzip text; BCF through pysam,
rendered as htslib's VCF text) and written back with our ``HNET_*`` keys appended to the raw
INFO column (``.`` is replaced), our ``##INFO`` lines appended to the meta-information, and
each line's own ending (``\\n`` or ``\\r\\n``) kept. Nothing is parsed through the typed header
definitions, so a header that mis-declares a field (a free-text INFO value under
``Type=Integer``, a ``Number`` that the values do not follow, an undeclared key) cannot change
the output; :class:`HeaderChecker` warns once per such field.

The output format follows the name: ``.vcf`` text, ``.vcf.gz``/``.vcf.bgz`` bgzip text with a
tabix index (CSI when a contig is longer than tabix's 2^29 limit), ``.bcf`` BCF. BCF is a
typed format: there the text is encoded by htslib, and fields that the header mis-declares are
declared ``Number=.,Type=String`` in the BCF header so that their values survive.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hnet_dna.errors import InputError
from hnet_dna.genomics.records import is_gzip
from hnet_dna.outputs import atomic_output

log = logging.getLogger(__name__)

TABIX_MAX_POS = 2**29  # positions beyond this need a CSI index
_DEFINITION = re.compile(r"^##(INFO|FORMAT)=<(.*)>\s*$")
_ITEM = re.compile(r'([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|[^,]*)')


class VCFFormatError(InputError):
    """Malformed VCF; the message names the file and 1-based line."""


@dataclass
class VCFText:
    """Header lines (raw, line endings included) of a VCF and the way to read its records."""

    path: Path
    header: list[str]
    is_bcf: bool = False
    newline: str = "\n"
    definitions: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    @property
    def samples(self) -> list[str]:
        return self.header[-1].rstrip("\r\n").split("\t")[9:]


def _parse_definitions(header: Iterable[str]) -> dict[str, dict[str, dict[str, str]]]:
    defs: dict[str, dict[str, dict[str, str]]] = {"INFO": {}, "FORMAT": {}}
    for line in header:
        m = _DEFINITION.match(line)
        if m:
            items = {k: v.strip('"') for k, v in _ITEM.findall(m.group(2))}
            if "ID" in items:
                defs[m.group(1)][items["ID"]] = items
    return defs


def _magic(path: Path) -> tuple[bool, bytes]:
    """(gzip-compressed, first bytes of the content)."""
    if is_gzip(path):
        with gzip.open(path, "rb") as fh:
            try:
                return True, fh.read(5)
            except (OSError, EOFError) as err:
                raise VCFFormatError(f"{path}: not a readable gzip/bgzip file ({err})") from None
    with open(path, "rb") as fh:
        return False, fh.read(5)


@contextmanager
def _quiet_htslib():
    """htslib prints 'Could not retrieve index file' for an unindexed VCF/BCF although nothing
    is wrong (we read it from start to end); its real errors reach us as exceptions."""
    import pysam

    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


def _text_lines(path: Path, gz: bool) -> Iterator[str]:
    # newline="" keeps \r\n; surrogateescape round-trips bytes that are not UTF-8
    opener = gzip.open if gz else open
    with opener(path, "rt", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        try:
            yield from fh
        except (OSError, EOFError) as err:
            raise VCFFormatError(f"{path}: compressed data is corrupt or truncated ({err})"
                                 ) from None


def _bcf_lines(path: Path) -> Iterator[str]:
    import pysam

    with _quiet_htslib(), pysam.VariantFile(str(path)) as vf:
        yield from str(vf.header).splitlines(keepends=True)
        for rec in vf:
            yield str(rec)


def open_vcf(path: str | os.PathLike) -> tuple[VCFText, Iterator[tuple[int, str]]]:
    """The header of ``path`` and an iterator of ``(1-based line number, raw line)`` records.

    Plain, gzip or bgzip VCF text, or BCF. Raises :class:`VCFFormatError` for a file that is
    not VCF (no ``#CHROM`` line before the first record).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such VCF file")
    gz, head = _magic(path)
    is_bcf = head.startswith(b"BCF")
    lines = _bcf_lines(path) if is_bcf else _text_lines(path, gz)
    header: list[str] = []
    lineno = 0
    for line in lines:
        lineno += 1
        if line.startswith("##"):
            header.append(line)
            continue
        if line.startswith("#CHROM"):
            header.append(line)
            break
        raise VCFFormatError(f"{path}:{lineno}: expected a '##' or '#CHROM' header line before "
                             f"the records, got {line[:40]!r}")
    else:
        raise VCFFormatError(f"{path}: no '#CHROM' header line; is this a VCF?")
    if not header[0].startswith("##fileformat=VCF"):
        raise VCFFormatError(f"{path}:1: the first line must be ##fileformat=VCFv4.x")
    newline = "\r\n" if header[-1].endswith("\r\n") else "\n"
    vcf = VCFText(path, header, is_bcf, newline, _parse_definitions(header))

    def records() -> Iterator[tuple[int, str]]:
        n = lineno
        for line in lines:
            n += 1
            if line.strip():
                yield n, line
    return vcf, records()


def split_line(line: str) -> tuple[list[str], str]:
    """``(columns, line ending)`` of a raw record line; ``"\\t".join(cols) + end == line``."""
    end = "\r\n" if line.endswith("\r\n") else ("\n" if line.endswith("\n") else "")
    return line[: len(line) - len(end)].split("\t"), end


def info_items(info: str) -> Iterator[tuple[str, str | None]]:
    """``(key, raw value or None for a flag)`` of a raw INFO column."""
    if info == ".":
        return
    for item in info.split(";"):
        if item:
            key, eq, value = item.partition("=")
            yield key, value if eq else None


def append_info(info: str, added: Mapping[str, str]) -> str:
    """The raw INFO text with ``added`` appended (``.`` is replaced)."""
    extra = ";".join(f"{k}={v}" for k, v in added.items())
    if not extra:
        return info
    return extra if info == "." else f"{info};{extra}"


# ------------------------------------------------------------------------ header checks
def _fits(value: str, kind: str) -> bool:
    if value == ".":
        return True
    if kind == "Integer":
        return re.fullmatch(r"[+-]?\d+", value) is not None
    if kind == "Float":
        try:
            float(value)
        except ValueError:
            return False
    return True


def record_where(path, lineno: int, cols: list[str] | None = None) -> str:
    """Where a record is, for messages: ``file:line``; records read through a tabix index have no
    line number (``lineno`` 0), so they are named by ``file: record CHROM:POS``."""
    if lineno > 0 or not cols or len(cols) < 2:
        return f"{path}:{lineno}" if lineno > 0 else f"{path}"
    return f"{path}: record {cols[0]}:{cols[1]}"


class HeaderChecker:
    """Notices INFO/FORMAT values that their header definition does not describe and warns
    once per field (the values are passed through unchanged all the same).

    ``misdeclared`` collects the ``(INFO|FORMAT, ID)`` pairs noticed; BCF output re-declares
    them as strings. FORMAT values are checked in the first ``format_records`` records only
    (every sample of every record would cost more than the scoring of a large cohort).
    """

    def __init__(self, vcf: VCFText, format_records: int = 200, quiet: bool = False) -> None:
        self.vcf, self.defs, self.quiet = vcf, vcf.definitions, quiet
        self.misdeclared: set[tuple[str, str]] = set()
        self.undeclared: set[tuple[str, str]] = set()
        self.flags: set[tuple[str, str]] = set()  # undeclared keys seen without a value
        self.filters: set[str] = set()  # FILTER values without a ##FILTER line
        self._declared_filters = {m.group(1) for line in vcf.header
                                  if (m := re.match(r"##FILTER=<ID=([^,>]+)", line))}
        self.format_records = format_records
        self._n = 0

    def _warn(self, section: str, key: str, problem: str, where: str) -> None:
        target = self.undeclared if problem.startswith("is not declared") else self.misdeclared
        if (section, key) in target:
            return
        target.add((section, key))
        if not self.quiet:
            log.warning("%s: %s %s %s; its values are passed through unchanged",
                        where, section, key, problem)

    def _check(self, section: str, key: str, value: str | None, n_alts: int, where: str,
               ) -> None:
        d = self.defs[section].get(key)
        if d is None:
            if value is None:
                self.flags.add((section, key))
            self._warn(section, key, "is not declared in the header", where)
            return
        kind, number = d.get("Type", "String"), d.get("Number", ".")
        if kind == "Flag":
            if value is not None:
                self._warn(section, key, f"is declared Type=Flag but has the value {value!r} "
                           f"(header defect)", where)
            return
        if value is None:
            self._warn(section, key, f"is declared Type={kind} but appears as a flag "
                       "(header defect)", where)
            return
        if value == ".":
            return
        parts = value.split(",")
        bad = next((p for p in parts if not _fits(p, kind)), None)
        if bad is not None:
            self._warn(section, key, f"is declared Type={kind} but has the value {bad!r} "
                       "(header defect)", where)
            return
        expected = {"A": n_alts, "R": n_alts + 1}.get(number)
        if expected is None and number.isdigit():
            expected = int(number)
        if expected is not None and len(parts) != expected:
            self._warn(section, key, f"is declared Number={number} but has {len(parts)} "
                       f"value(s) {value[:40]!r} (header defect)", where)

    def check(self, cols: list[str], lineno: int) -> None:
        where = record_where(self.vcf.path, lineno, cols)
        n_alts = 0 if cols[4] == "." else cols[4].count(",") + 1
        if cols[6] not in (".", "PASS"):
            self.filters.update(f for f in cols[6].split(";")
                                if f not in self._declared_filters)
        for key, value in info_items(cols[7]):
            self._check("INFO", key, value, n_alts, where)
        self._n += 1
        if len(cols) > 9 and self._n <= self.format_records:
            keys = cols[8].split(":")
            for sample in cols[9:]:
                for key, value in zip(keys, sample.split(":"), strict=False):
                    if key != "GT" and ("FORMAT", key) not in self.misdeclared:
                        # Number=A/R/G depend on ploidy; check the type only
                        d = self.defs["FORMAT"].get(key)
                        if d is None:
                            self._warn("FORMAT", key, "is not declared in the header", where)
                        elif d.get("Type") in ("Integer", "Float") and not all(
                                _fits(p, d["Type"]) for p in value.split(",")):
                            self._warn("FORMAT", key, f"is declared Type={d['Type']} but has "
                                       f"the value {value[:40]!r} (header defect)", where)


# ------------------------------------------------------------------------ writing
def info_header_lines(fields: Mapping[str, tuple[str, str, str]], newline: str) -> list[str]:
    """``##INFO`` lines for ``{ID: (Number, Type, Description)}``."""
    return [f'##INFO=<ID={k},Number={n},Type={t},Description="{d}">{newline}'
            for k, (n, t, d) in fields.items()]


def output_kind(path: str | os.PathLike) -> str:
    """``vcf``, ``vcf.gz`` (bgzip + index) or ``bcf`` from the output name."""
    name = str(path)
    if name.endswith(".bcf"):
        return "bcf"
    if name.endswith((".gz", ".bgz")):
        return "vcf.gz"
    return "vcf"


def index_path(path: str | os.PathLike, max_contig_length: int = 0) -> Path | None:
    """The index written next to a bgzipped output (``.tbi``, ``.csi`` for long contigs)."""
    if output_kind(path) != "vcf.gz":
        return None
    return Path(f"{path}.{'csi' if max_contig_length > TABIX_MAX_POS else 'tbi'}")


class VCFWriter:
    """Write header and record lines to ``path`` whole or not at all (see the module doc).

    Use as a context manager; lines go to a temporary file beside ``path``; on a clean exit it
    is converted (BCF), indexed (bgzip) and renamed into place.
    """

    def __init__(self, path: str | os.PathLike, *, max_contig_length: int = 0,
                 checker: HeaderChecker | None = None,
                 contig_lengths: Mapping[str, int] | None = None) -> None:
        self.path = Path(path)
        self.kind = output_kind(path)
        self.index = index_path(path, max_contig_length)
        # BCF: filled while the lines are written; read when the text is complete
        self.checker = checker
        self.contig_lengths = contig_lengths or {}
        self.indexed = False

    def write_all(self, lines: Iterable[str]) -> None:
        """Write every line (header first) and put the file(s) into place."""
        with atomic_output(self.path) as tmp:
            if self.kind == "vcf":
                with open(tmp, "w", newline="", encoding="utf-8",
                          errors="surrogateescape") as fh:
                    fh.writelines(lines)
            elif self.kind == "vcf.gz":
                self._write_bgzip(tmp, lines)
            else:
                self._write_bcf(tmp, lines)

    def _write_bgzip(self, tmp: Path, lines: Iterable[str]) -> None:
        import pysam

        with pysam.BGZFile(str(tmp), "wb") as fh:
            for line in lines:
                fh.write(line.encode("utf-8", "surrogateescape"))
        assert self.index is not None
        try:
            with atomic_output(self.index) as tmp_index, _quiet_htslib():
                pysam.tabix_index(str(tmp), preset="vcf", force=True, index=str(tmp_index),
                                  csi=self.index.suffix == ".csi")
            self.indexed = True
        except (OSError, ValueError) as err:
            # an unsorted input cannot be indexed; the VCF itself is still complete
            self.index.unlink(missing_ok=True)  # never leave a stale index of an older file
            log.warning("%s: not indexed (%s); sort it (bcftools sort) to index it",
                        self.path, str(err).strip() or type(err).__name__)

    def _write_bcf(self, tmp: Path, lines: Iterable[str]) -> None:
        import pysam

        raw, fixed = tmp.with_name(tmp.name + ".vcf"), tmp.with_name(tmp.name + ".h.vcf")
        text = {"newline": "", "encoding": "utf-8", "errors": "surrogateescape"}
        try:
            with open(raw, "w", **text) as fh:
                fh.writelines(lines)
            strings = set(self.checker.misdeclared) if self.checker else set()
            with open(raw, **text) as src, open(fixed, "w", **text) as dst:
                for line in src:
                    if line.startswith("##") and strings:
                        line = self._as_string(line, strings)
                    elif line.startswith("#CHROM"):
                        dst.writelines(self._missing_contigs())
                        dst.writelines(self._undeclared())
                    dst.write(line)
            with _quiet_htslib(), pysam.VariantFile(str(fixed)) as vin, \
                    pysam.VariantFile(str(tmp), "wb", header=vin.header) as out:
                for rec in vin:
                    out.write(rec)
        finally:
            raw.unlink(missing_ok=True)
            fixed.unlink(missing_ok=True)

    @staticmethod
    def _as_string(line: str, strings: set[tuple[str, str]]) -> str:
        m = _DEFINITION.match(line)
        if not m:
            return line
        items = dict(_ITEM.findall(m.group(2)))
        if (m.group(1), items.get("ID")) not in strings:
            return line
        body = re.sub(r"Number=[^,>]*", "Number=.", m.group(2))
        body = re.sub(r"Type=[^,>]*", "Type=String", body)
        end = line[len(line.rstrip("\r\n")):]
        return f"##{m.group(1)}=<{body}>{end}"

    def _undeclared(self) -> list[str]:
        """Definitions for keys the input uses without declaring them (BCF needs them)."""
        if self.checker is None:
            return []
        lines = []
        for section, key in sorted(self.checker.undeclared):
            kind = "Number=0,Type=Flag" if (section, key) in self.checker.flags else \
                "Number=.,Type=String"
            if (section, key) == ("INFO", "END"):  # htslib sizes records through END
                kind = "Number=1,Type=Integer"
            lines.append(f'##{section}=<ID={key},{kind},Description="not declared in the '
                         'input header">\n')
        lines += [f'##FILTER=<ID={f},Description="not declared in the input header">\n'
                  for f in sorted(self.checker.filters)]
        return lines

    def _missing_contigs(self) -> list[str]:
        return [f"##contig=<ID={name},length={n}>\n" if n else f"##contig=<ID={name}>\n"
                for name, n in self.contig_lengths.items()]


def write_vcf(path: str | os.PathLike, lines: Iterable[str], **kw) -> VCFWriter:
    """Write ``lines`` to ``path`` through :class:`VCFWriter`; returns the writer (``indexed``
    says whether a ``.tbi``/``.csi`` index was written)."""
    writer = VCFWriter(path, **kw)
    writer.write_all(lines)
    return writer
