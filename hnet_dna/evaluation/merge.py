"""Gather the parts of a run in blocks into the outputs of the unsharded run.

``hnet-dna merge OUT`` (OUT: the ``--out`` of the sharded commands) checks that every block
of the plan is done (naming the shards that are not), then writes the command's outputs,
each through a temporary file: for ``score-variants`` the VCF (records in the input's order,
byte-identical to an unsharded run after the header; bgzip + tabix index for ``.vcf.gz``) and
the parquet table (``record`` numbered over the merged records: the file's own record index
in a whole-genome run); for ``embed`` and ``track`` the same files as the unsharded run.
Tables are streamed part by part (polars lazy scan to sink), so memory stays flat.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

from hnet_dna.errors import InputError
from hnet_dna.outputs import atomic_output, check_outputs

from .commands.common import command, new_parser
from .shards import PartStore

log = logging.getLogger(__name__)

_POLARS_TYPE = {"Integer": pl.Int64, "Float": pl.Float64}


# ---------------------------------------------------------------------------- score-variants
def _ordered_parts(store: PartStore) -> list[tuple[Path, int]]:
    """``(part, records)`` in the input file's order: contig rank, then block start."""
    keyed = []
    for b in store.blocks:
        path = store.part(b.index)
        head = pl.scan_parquet(path).select(pl.col("_rank").first(), pl.col("record").max(),
                                            pl.len()).collect()
        rank, last, n = head.row(0)
        if n:
            keyed.append(((rank, b.start), path, last + 1))
    keyed.sort(key=lambda t: t[0])
    return [(path, n) for _, path, n in keyed]


def _carry_types(lf: pl.LazyFrame, keys: Sequence[str], defs: dict) -> list[pl.Expr]:
    """The casts :class:`.vcf_scoring._InfoColumns` makes, decided over every part: a column
    whose values all fit its header Type is cast, any other stays text."""
    casts = []
    for k in keys:
        kind, number = defs[k].get("Type", "String"), defs[k].get("Number")
        if kind == "Flag":
            casts.append((pl.col(k) == "true").alias(k))
            continue
        target = _POLARS_TYPE.get(kind)
        if target is None or number not in ("1", "A", "R"):
            continue
        bad = lf.select((pl.col(k).is_not_null() & pl.col(k).cast(target, strict=False)
                         .is_null()).sum()).collect().item()
        if bad:
            log.warning("INFO %s is declared Type=%s but not every value is one; the table "
                        "keeps it as text", k, kind)
        else:
            casts.append(pl.col(k).cast(target))
    return casts


def merge_scores(store: PartStore):
    """The VCF and table of a ``score-variants`` run in blocks; returns its summary."""
    from hnet_dna.genomics.fasta import Genome

    from .variants import NONFINITE, SKIP_REASONS
    from .vcf_io import HeaderChecker, open_vcf, output_kind, split_line, write_vcf
    from .vcf_scoring import ScoreSummary, _length, default_outputs, output_paths, scored_header

    store.check_complete()
    opts = store.manifest["options"]
    vcf, genome = opts["vcf"], Genome(opts["fasta"])
    out_vcf, out_table = default_outputs(store.out)
    parts = _ordered_parts(store)
    offsets, total = [], 0
    for _, n in parts:
        offsets.append(total)
        total += n
    scans = [pl.scan_parquet(p).with_columns(pl.col("record") + off)
             for (p, _), off in zip(parts, offsets, strict=True)]
    empty = pl.scan_parquet(store.part(store.blocks[0].index)).head(0)
    lf = pl.concat(scans) if scans else empty
    header, _ = open_vcf(vcf)
    casts = _carry_types(lf, opts["info"], header.definitions["INFO"])
    table_lf = lf.drop("line", "_rank").with_columns(casts)
    counts = {s: int(n) for s, n in
              table_lf.group_by("status").len().collect().iter_rows()}
    alts = sum(counts.values())
    if alts and not counts.get("ok"):
        reasons = ", ".join(f"{counts[r]} {r}" for r in (*SKIP_REASONS, NONFINITE) if r in counts)
        raise InputError(f"{vcf}: none of {alts} ALTs could be scored ({reasons})")
    with_csq = "consequence" in lf.collect_schema().names()
    checker = HeaderChecker(header, quiet=True) if output_kind(out_vcf) == "bcf" else None
    contigs = {}
    if checker is not None:
        declared = {line.split("ID=", 1)[1].split(",")[0].split(">")[0]
                    for line in header.header if line.startswith("##contig=")}
        used = set(lf.select(pl.col("contig").unique()).collect()["contig"].to_list())
        contigs = {c: _length(genome, c) for c in sorted(used - declared)}

    def lines() -> Iterator[str]:
        yield from scored_header(header, with_csq)
        for path, _ in parts:
            for line in pl.read_parquet(path, columns=["line"])["line"].drop_nulls():
                if checker is not None:
                    checker.check(split_line(line)[0], 0)
                yield line

    index = output_paths(store.out, list(genome.contigs.values()))[2:]
    with atomic_output(out_table) as tmp:
        table_lf.sink_parquet(tmp)
        write_vcf(out_vcf, lines(), max_contig_length=max(genome.contigs.values(), default=0),
                  checker=checker, contig_lengths=contigs)
    edge = int(table_lf.select(pl.col("edge_padded").sum()).collect().item() or 0)
    records = int(sum(n for _, n in parts))
    return ScoreSummary(counts, records, out_vcf, out_table,
                        index[0] if index and index[0].exists() else None, edge)


# ---------------------------------------------------------------------------- embed
def merge_embeddings(store: PartStore) -> str:
    """The pooled table (parquet, or npy + index.tsv) and boundary BED of ``embed`` in blocks:
    rows in the BED's order, as the unsharded run writes them."""
    from contextlib import ExitStack

    from .embed_io import output_paths, write_pooled
    from .embeddings import Boundary, write_boundaries_bed

    store.check_complete()
    opts, dims = store.manifest["options"], store.manifest["dims"]
    parts = [store.part(b.index) for b in store.blocks]
    frames = [f for f in (pl.read_parquet(p) for p in parts) if f.height]
    frame = (pl.concat(frames).sort("_index").drop("_index") if frames else
             pl.read_parquet(parts[0]).drop("_index"))
    with ExitStack() as stack:
        tmp = {path: stack.enter_context(atomic_output(path))
               for path in output_paths(store.out, list(dims), False)}
        write_pooled(store.out, frame, dims, target=tmp.__getitem__)
    done = f"embedded {frame.height} sequences -> {store.out}"
    if opts["boundaries_bed"]:
        bounds = [f for f in (pl.read_parquet(store.part(b.index, "_bounds"))
                              for b in store.blocks) if f.height]
        rows = pl.concat(bounds).iter_rows(named=True) if bounds else []
        n = write_boundaries_bed(opts["boundaries_bed"], (Boundary(**r) for r in rows))
        done += f", {opts['boundaries_bed']} ({n} boundaries)"
    return done


# ---------------------------------------------------------------------------- track
def merge_tracks(store: PartStore) -> dict[str, int]:
    """Every ``track`` output from the parts, runs that continue across block seams joined:
    the lines of the run done in one piece. Returns the lines per output."""
    from contextlib import ExitStack

    from hnet_dna.genomics.fasta import Genome

    from .embeddings import Boundary
    from .tracks import TrackWriter, signal_names, write_boundary_beds

    store.check_complete()
    opts, stages = store.manifest["options"], store.manifest["stages"]
    both = not opts["forward_only"]
    names = signal_names(stages, both)
    contigs = Genome(opts["fasta"]).contigs
    bounds: list[Boundary] = []
    with ExitStack() as stack:
        writer = TrackWriter(stack, str(store.out), names, contigs, opts["bigwig"])
        for b in store.blocks:
            by_signal = pl.read_parquet(store.part(b.index)).partition_by("signal",
                                                                          as_dict=True)
            for name in names:
                part = by_signal.get((name,))
                if part is None:
                    writer.add_runs(name, b.contig, [], [], [], join=not b.region_start)
                    continue
                writer.add_runs(name, b.contig, part["start"].to_list(), part["end"].to_list(),
                                part["text"].to_list(), join=not b.region_start)
            bounds += [Boundary(**r) for r in
                       pl.read_parquet(store.part(b.index, "_bounds")).iter_rows(named=True)]
        writer.finish()
        lines = dict(writer.lines)
    lines.update(write_boundary_beds(str(store.out), bounds, stages, both))
    return lines


# ---------------------------------------------------------------------------- command
MERGERS = {"score-variants": merge_scores, "embed": merge_embeddings, "track": merge_tracks}


def _parser() -> argparse.ArgumentParser:
    p = new_parser(
        "hnet-dna merge",
        "Gather the parts of `score-variants`, `embed` or `track` run with --shard I/N "
        "(every shard finished) into the outputs of the unsharded run, then remove "
        "OUT.parts.")
    p.add_argument("out", help="the --out given to the sharded commands")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--keep-parts", action="store_true", help="keep OUT.parts after merging")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log details; show the traceback of an internal error")
    return p


def _run(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    store = PartStore.load(args.out)
    name = store.manifest["command"]
    outputs = store.manifest.get("outputs") or []
    check_outputs(outputs, inputs=list(store.manifest["inputs"]), overwrite=args.overwrite)
    result = MERGERS[name](store)
    if not args.keep_parts:
        store.remove()
    print(f"merged {len(store.blocks)} blocks of {name}")
    if result is not None:
        print(result)
    return 0


main_merge = command(_parser, _run)
main_merge.__doc__ = "``hnet-dna merge``; returns the exit code."
