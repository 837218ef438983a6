"""End-to-end VCF scoring: read, check, score in batches, write the annotated VCF and a table.

:func:`score_variants` is the whole job (the ``hnet-dna score-variants`` command wraps it).

The output VCF is the input passed through byte for byte (:mod:`.vcf_io`: INFO, FORMAT and
sample columns, QUAL/FILTER, IDs and header lines are never re-encoded) with ``HNET_*`` keys
appended to each record's INFO (``Number=A``, one value per ALT, ``.`` where an ALT has no
score) and our ``##INFO`` lines appended to the header. ``HNET_STATUS`` says for each ALT
whether it was scored (``ok``), why not (a skip reason of :mod:`.variants`), or that the model
gave a non-finite number (``nonfinite``; no number is written). A record whose ALT is ``.``
has no per-ALT slot and is copied unchanged; the table still lists it. The parquet table has
one row per ALT, skipped ones included (scores null), so nothing disappears silently.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from hnet_dna.errors import InputError
from hnet_dna.genomics.fasta import Genome
from hnet_dna.outputs import atomic_output, check_free_space, check_outputs
from hnet_dna.progress import progress as progress_bar

from .consequences import ConsequenceAnnotator
from .regions import DEFAULT_BLOCK_SIZE
from .scoring import SCORE_COLUMNS, VariantScorer
from .variants import (
    NONFINITE,
    SKIP_REASONS,
    SkipCounter,
    Variant,
    VariantReader,
    flanks,
    variant_windows,
)
from .vcf_io import (
    HeaderChecker,
    VCFText,
    append_info,
    index_path,
    info_header_lines,
    info_items,
    open_vcf,
    output_kind,
    split_line,
    write_vcf,
)

log = logging.getLogger(__name__)

INFO_FIELDS: dict[str, tuple[str, str]] = {
    "HNET_LLR": ("Float", "H-Net log-likelihood ratio ALT vs REF window (nats, strand-averaged; "
                          "negative = ALT less likely)"),
    "HNET_LLR_MEAN": ("Float", "H-Net per-base mean log-likelihood difference ALT - REF from "
                               "the variant onward (strand-averaged)"),
    "HNET_COS": ("Float", "H-Net cosine distance between REF and ALT window embeddings"),
    "HNET_L2": ("Float", "H-Net L2 distance between REF and ALT window embeddings"),
    "HNET_STATUS": ("String", "H-Net scoring status per ALT: ok, nonfinite (model output "
                              "NaN/inf) or the skip reason"),
    "HNET_CSQ": ("String", "Most severe consequence of the ALT by VEP's rules, from "
                           "the GFF/GTF transcript models (Sequence Ontology term)"),
}
_INFO_SCORE = {"HNET_LLR": "llr", "HNET_LLR_MEAN": "llr_mean", "HNET_COS": "cos_dist",
               "HNET_L2": "l2_dist"}
MIN_WINDOW = 3  # one base each side of an SNV
_BASE_SCHEMA = {
    "record": pl.Int64, "alt_index": pl.Int64, "contig": pl.String, "pos": pl.Int64,
    "id": pl.String, "ref": pl.String, "alt": pl.String, "status": pl.String,
    "norm_pos": pl.Int64, "norm_ref": pl.String, "norm_alt": pl.String, "kind": pl.String,
    "edge_padded": pl.Boolean,
}
_POLARS_TYPE = {"Integer": pl.Int64, "Float": pl.Float64, "Flag": pl.Boolean}


def score_vcf(
    vcf: str | os.PathLike,
    genome: Genome,
    scorer: VariantScorer,
    window: int,
    annotator: ConsequenceAnnotator | None = None,
    carry_info: Sequence[str] = (),
    batch_variants: int = 128,
    max_variants: int | None = None,
    progress: bool = True,
    records: Iterable[tuple[int, str]] | None = None,
    checker: HeaderChecker | None = None,
    typed: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[pl.DataFrame, SkipCounter]:
    """Score every ALT of ``vcf``; returns the per-ALT table and the skip counts.

    ``records``/``checker``: score these raw records of ``vcf`` only (one block; see
    :class:`.variants.VariantReader`). ``typed=False`` keeps the ``carry_info`` columns as
    text (block tables are typed once, when they are merged). Batches never span the
    ``block_size`` grid of :mod:`.regions`, so a run over the whole file and a run in blocks
    or shards (:mod:`.sharded`) batch the same variants together and give the same bits.

    ``carry_info``: INFO keys copied into the table from the raw INFO text (per-ALT value for
    ``Number=A`` keys, typed by the header when every value fits, else kept as text), e.g.
    ``AF`` for labels. ``max_variants`` stops after that many ALTs (scored or not), at a record
    boundary. An ALT whose scores are not finite gets status ``nonfinite`` and null scores.
    """
    counter = SkipCounter()
    rows: list[dict] = []
    pending: list[tuple[dict, Variant]] = []
    reader = VariantReader(vcf, genome, window, counter, records, checker)
    carry = _InfoColumns(reader.vcf.definitions["INFO"], carry_info, vcf)
    bar = progress_bar(unit="alt", desc="score", disable=not progress)
    last_block: tuple[str | None, int] | None = None

    def flush() -> None:
        if not pending:
            return
        pairs = [variant_windows(genome, v, window) for _, v in pending]
        sides = [flanks(v, window) for _, v in pending]
        for (row, _), s in zip(pending, scorer.score(pairs, sides), strict=True):
            if s.finite:
                row.update(vars(s))
            else:
                row["status"] = NONFINITE
                counter[NONFINITE] += 1
        bar.update(len(pending))
        pending.clear()

    for n, v in enumerate(reader):
        if max_variants is not None and n >= max_variants and v.alt_index == 0:
            break  # stop at a record boundary so every written record has all its ALTs
        row = {"record": v.record, "alt_index": v.alt_index, "contig": v.contig,
               "pos": v.vcf_pos, "id": v.vcf_id, "ref": v.vcf_ref, "alt": v.vcf_alt,
               "status": v.status, "norm_pos": v.pos + 1 if v.status == "ok" else None,
               "norm_ref": v.ref or None, "norm_alt": v.alt or None,
               "kind": v.kind if v.status == "ok" else None, "edge_padded": v.edge_padded}
        row.update(dict.fromkeys(SCORE_COLUMNS))
        if annotator is not None:
            row["consequence"] = (annotator.annotate(v.ref_contig, v.pos, v.ref, v.alt)
                                  if v.status == "ok" else None)
        row.update(carry.values(v))
        rows.append(row)
        if v.status == "ok":
            block = (v.ref_contig, v.pos // block_size)
            if block != last_block:  # batches never span blocks: see the docstring
                flush()
                last_block = block
            pending.append((row, v))
            if len(pending) >= batch_variants:
                flush()
    flush()
    bar.close()
    schema = dict(_BASE_SCHEMA) | dict.fromkeys(SCORE_COLUMNS, pl.Float64)
    if annotator is not None:
        schema["consequence"] = pl.String
    schema |= dict.fromkeys(carry.keys, pl.String)
    table = pl.DataFrame(rows, schema=schema)
    return (carry.typed(table) if typed else table), counter


class _InfoColumns:
    """Copies selected INFO values per ALT from the raw INFO text."""

    def __init__(self, defs: dict[str, dict[str, str]], keys: Sequence[str], vcf) -> None:
        self.keys, self.defs, self.vcf = list(keys), defs, vcf
        missing = [k for k in self.keys if k not in defs]
        if missing:
            raise InputError(f"{vcf}: INFO field(s) {missing} not declared in the header "
                             f"(declared: {sorted(defs)[:20]})")

    def values(self, v: Variant) -> dict:
        if not self.keys:
            return {}
        raw = dict(info_items(v.info))
        out: dict[str, str | None] = {}
        for k in self.keys:
            if k not in raw:
                out[k] = None
                continue
            value = raw[k]
            if value is None:  # a flag
                out[k] = "true"
                continue
            parts = value.split(",")
            number = self.defs[k].get("Number")
            if number == "A" and len(parts) > v.alt_index:
                value = parts[v.alt_index]
            elif number == "R" and len(parts) > v.alt_index + 1:
                value = parts[v.alt_index + 1]
            out[k] = None if value == "." else value
        return out

    def typed(self, table: pl.DataFrame) -> pl.DataFrame:
        """Columns cast to their header Type; a column whose values do not fit stays text."""
        for k in self.keys:
            kind = self.defs[k].get("Type", "String")
            target = _POLARS_TYPE.get(kind)
            if target is None or (kind != "Flag" and self.defs[k].get("Number") not in
                                  ("1", "A", "R")):
                continue
            try:
                column = (table[k] == "true") if target == pl.Boolean else \
                    table[k].cast(target, strict=True)
                table = table.with_columns(column.alias(k))
            except pl.exceptions.InvalidOperationError:
                log.warning("%s: INFO %s is declared Type=%s but not every value is one; "
                            "the table keeps it as text", self.vcf, k, kind)
        return table


def _number(x) -> str:
    if x is None or not np.isfinite(x):
        return "."
    return f"{x:.6g}"


def scored_header(header: VCFText, with_csq: bool) -> list[str]:
    """The header of the scored VCF: the input's with our ``##INFO`` lines before ``#CHROM``."""
    fields = {k: ("A", kind, desc) for k, (kind, desc) in INFO_FIELDS.items()
              if with_csq or k != "HNET_CSQ"}
    return [*header.header[:-1], *info_header_lines(fields, header.newline), header.header[-1]]


def scored_record(line: str, rows: Sequence[dict], with_csq: bool) -> str:
    """The raw record ``line`` with the ``HNET_*`` keys of its table ``rows`` (one per ALT)."""
    cols, end = split_line(line)
    if cols[4] == ".":  # ALT '.': Number=A fields have no slot (the table has it)
        return line
    rows = sorted(rows, key=lambda r: r["alt_index"])
    added = {key: ",".join(_number(r[col]) for r in rows) for key, col in _INFO_SCORE.items()}
    added["HNET_STATUS"] = ",".join(r["status"] for r in rows)
    if with_csq:
        added["HNET_CSQ"] = ",".join(r["consequence"] or "." for r in rows)
    cols[7] = append_info(cols[7], added)
    return "\t".join(cols) + end


def scored_lines(vcf: str | os.PathLike, table: pl.DataFrame,
                 checker: HeaderChecker | None = None) -> Iterator[str]:
    """The lines of the scored VCF: ``vcf`` byte for byte plus the ``HNET_*`` keys of
    ``table``. Stops after the last record in ``table`` (``max_variants``)."""
    per_record: dict[int, list[dict]] = {}
    for row in table.iter_rows(named=True):
        per_record.setdefault(row["record"], []).append(row)
    with_csq = "consequence" in table.columns
    header, records = open_vcf(vcf)
    yield from scored_header(header, with_csq)
    for i, (lineno, line) in enumerate(records):
        rows = per_record.get(i)
        if rows is None:  # past max_variants: the table ends here, so does the output
            break
        if checker is not None:
            checker.check(split_line(line)[0], lineno)
        yield scored_record(line, rows, with_csq)


def _length(genome: Genome, contig: str) -> int:
    """Length of the FASTA record ``contig`` refers to (aliases resolved), 0 if none."""
    try:
        return genome.contigs[genome.resolve(contig)]
    except KeyError:
        return 0


def write_scored_vcf(vcf: str | os.PathLike, out: str | os.PathLike, table: pl.DataFrame,
                     genome: Genome) -> int:
    """Write ``vcf`` with the ``HNET_*`` INFO fields from ``table``; returns records written.

    Text for ``.vcf``, bgzip + tabix/CSI index for ``.gz``/``.bgz``, BCF for ``.bcf`` (a typed
    format: contigs used by records but not in the header are declared, with their length
    from ``genome``, and mis-declared fields are declared as strings so their values survive).
    """
    header, _ = open_vcf(vcf)
    taken = sorted(k for k in INFO_FIELDS if k in header.definitions["INFO"])
    if taken:
        raise InputError(f"{vcf}: INFO {taken} already in the header (scored before?); "
                         "score the original VCF")
    checker, contigs = None, {}
    if output_kind(out) == "bcf":
        checker = HeaderChecker(header, quiet=True)
        declared = {line.split("ID=", 1)[1].split(",")[0].split(">")[0]
                    for line in header.header if line.startswith("##contig=")}
        used = set(table["contig"].unique().to_list()) if table.height else set()
        contigs = {c: _length(genome, c) for c in sorted(used - declared)}
    lines = scored_lines(vcf, table, checker)
    write_vcf(out, lines, max_contig_length=max(genome.contigs.values(), default=0),
              checker=checker,
              contig_lengths=contigs)
    return int(table["record"].n_unique()) if table.height else 0


def write_sites_vcf(path: str | os.PathLike, sites, genome: Genome) -> int:
    """Write ``(contig, pos0, ref, alt)`` sites as a minimal VCF (e.g. saturation SNVs)."""
    n = 0

    def lines() -> Iterator[str]:
        nonlocal n
        yield "##fileformat=VCFv4.2\n"
        yield from (f"##contig=<ID={c},length={length}>\n"
                    for c, length in genome.contigs.items())
        yield "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        for contig, pos, ref, alt in sites:
            n += 1
            yield f"{contig}\t{pos + 1}\t.\t{ref}\t{alt}\t.\t.\t.\n"

    write_vcf(path, lines())
    return n


def default_outputs(out: str | os.PathLike) -> tuple[Path, Path]:
    """``(vcf, parquet)`` paths from an output prefix or a ``.vcf[.gz]`` name."""
    out = Path(out)
    name = out.name
    for suffix in (".vcf.gz", ".vcf.bgz", ".vcf", ".bcf"):
        if name.endswith(suffix):
            return out, out.with_name(name[: -len(suffix)] + ".parquet")
    return out.with_name(name + ".vcf.gz"), out.with_name(name + ".parquet")


def output_paths(out: str | os.PathLike, genome_lengths: Sequence[int] = ()) -> list[Path]:
    """Every file ``score_variants`` writes for ``out``: VCF, table and (bgzip) the index."""
    vcf, table = default_outputs(out)
    index = index_path(vcf, max(genome_lengths, default=0))
    return [vcf, table] + ([index] if index is not None else [])


def input_paths(*paths: str | os.PathLike | None) -> list[Path]:
    """The inputs and their index files: outputs that resolve to any of them are refused."""
    found: list[Path] = []
    for p in paths:
        if p is None:
            continue
        found.append(Path(p))
        found += [Path(f"{p}{s}") for s in (".tbi", ".csi", ".fai", ".gzi")
                  if Path(f"{p}{s}").exists()]
    return found


def check_options(window: int, batch_size: int, max_variants: int | None,
                  genetic_code: int) -> None:
    """Refuse option values that cannot work, before anything is read or computed."""
    from Bio.Data import CodonTable

    if window < MIN_WINDOW:
        raise InputError(f"--window {window} is too small to score anything: a window holds "
                         f"the variant and at least one base each side (minimum {MIN_WINDOW})")
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    if max_variants is not None and max_variants < 1:
        raise InputError(f"--max-variants must be at least 1, got {max_variants} (omit it to "
                         "score every variant)")
    if genetic_code not in CodonTable.unambiguous_dna_by_id:
        raise InputError(f"--genetic-code {genetic_code} is not an NCBI translation table; "
                         f"known: {sorted(CodonTable.unambiguous_dna_by_id)}")


@dataclass
class ScoreSummary:
    """What :func:`score_variants` did: ALTs per status, files written, the per-ALT table."""

    counts: dict[str, int]
    records: int
    vcf: Path
    table_path: Path
    index: Path | None
    edge_padded: int = 0
    table: pl.DataFrame = field(default=None, repr=False)  # type: ignore[assignment]
    seconds: float = float("nan")  # reading, checking and scoring in this process (not writing)

    @property
    def scored(self) -> int:
        return self.counts.get("ok", 0)

    @property
    def alts(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        counter = SkipCounter({k: v for k, v in self.counts.items() if k != "ok"})
        counter["edge_padded"] = self.edge_padded
        text = counter.summary(self.scored)
        if self.seconds > 0:  # unknown (NaN) for a merge of parts scored elsewhere / before
            text += (f"\n{self.alts} ALTs in {self.seconds:.1f} s "
                     f"({self.alts / self.seconds:.1f} variants/s)")
        return text


def _nothing_scored(vcf, counter: SkipCounter, table: pl.DataFrame, genome: Genome) -> str:
    reasons = ", ".join(f"{counter[r]} {r}" for r in (*SKIP_REASONS, NONFINITE) if counter[r])
    msg = f"{vcf}: none of {table.height} ALTs could be scored ({reasons})"
    if counter["missing_contig"]:
        vcf_contigs = table.filter(pl.col("status") == "missing_contig")["contig"].unique()
        msg += (f"; VCF contigs {sorted(vcf_contigs.to_list())[:5]} are not FASTA records "
                f"{list(genome.contigs)[:5]} (nor their chr/no-chr aliases)")
    if counter[NONFINITE]:
        msg += "; the model gave NaN/inf scores (are its weights finite?)"
    return msg


def score_variants(
    model,
    vcf: str | os.PathLike,
    fasta: str | os.PathLike | Genome,
    out: str | os.PathLike,
    *,
    window: int = 256,
    gff: str | os.PathLike | None = None,
    genetic_code: int = 1,
    depth: str = "final",
    strand_average: bool = True,
    batch_size: int = 16,
    info: Sequence[str] = (),
    max_variants: int | None = None,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> ScoreSummary:
    """Score every ALT of ``vcf`` with ``model`` and write ``out`` (VCF) and its parquet table.

    ``model``: an ``HNetForCausalLM`` or a saved model / run folder. ``out``: a ``.vcf``,
    ``.vcf.gz`` (bgzip + index) or ``.bcf`` name, or a prefix (``PREFIX.vcf.gz``); the table
    is ``PREFIX.parquet``. Every output is checked before any work (refused when it is an
    input, exists without ``overwrite``, or cannot be written) and written whole or not at all.
    Raises :class:`~hnet_dna.errors.InputError` for bad input, and when there were ALTs but
    none could be scored (nothing is written then).
    """
    from .consequences import ConsequenceAnnotator, read_cds_models
    from .runner import PerBaseForward, load_model

    check_options(window, batch_size, max_variants, genetic_code)
    genome = fasta if isinstance(fasta, Genome) else Genome(fasta)
    out_vcf, out_table, *out_index = check_outputs(
        output_paths(out, list(genome.contigs.values())),
        inputs=input_paths(vcf, genome.path, gff), overwrite=overwrite)
    header, _ = open_vcf(vcf)  # a VCF that is not one fails here, before the model loads
    taken = sorted(k for k in INFO_FIELDS if k in header.definitions["INFO"])
    if taken:
        raise InputError(f"{vcf}: INFO {taken} already in the header (scored before?); "
                         "score the original VCF")
    _InfoColumns(header.definitions["INFO"], info, vcf)
    annotator = None
    if gff is not None:
        annotator = ConsequenceAnnotator(genome, read_cds_models(gff, genome.contigs),
                                         genetic_code)
    if isinstance(model, (str, os.PathLike)):
        from hnet_dna.training.distributed import resolve_device

        model = load_model(model, resolve_device(device or "auto"))
    scorer = VariantScorer(PerBaseForward(model, batch_size), depth, strand_average=strand_average)
    started = time.perf_counter()
    table, counter = score_vcf(vcf, genome, scorer, window, annotator, info,
                               max_variants=max_variants, progress=progress,
                               block_size=block_size)
    seconds = time.perf_counter() - started
    scored = int((table["status"] == "ok").sum())
    if table.height and not scored:
        raise InputError(_nothing_scored(vcf, counter, table, genome))
    # the table (its in-memory size bounds its parquet) and the VCF (about the input's size)
    check_free_space(out_table, table.estimated_size() + Path(vcf).stat().st_size,
                     what="outputs starting with")
    with atomic_output(out_table) as tmp:
        table.write_parquet(tmp)
        records = write_scored_vcf(vcf, out_vcf, table, genome)
    counts = {s: int(n) for s, n in table["status"].value_counts().iter_rows()}
    index = out_index[0] if out_index and out_index[0].exists() else None
    return ScoreSummary(counts, records, out_vcf, out_table, index, counter["edge_padded"],
                        table, seconds)
