"""``score-variants``, ``embed`` and ``track`` in blocks (regions, shards, resume).

Each ``*_blocks`` function plans the blocks of its command (:mod:`.regions`), opens the parts
folder (:mod:`.shards`), computes this shard's unfinished blocks with the command's own
scorer / embedder, writes one part per block, and merges (:mod:`.merge`) when it is the
process that should. The unsharded commands are untouched; the parts hold exactly what they
would have written for the block's records, bases or intervals.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from hnet_dna.errors import InputError
from hnet_dna.genomics.fasta import Genome
from hnet_dna.outputs import check_outputs
from hnet_dna.progress import progress as progress_bar

from .regions import Block, Shard, genome_blocks, select_regions
from .shards import PartStore, finish, model_files, run_blocks, shard_device

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- score-variants
def score_variants_blocks(
    model, vcf: str | os.PathLike, genome: Genome, out: str | os.PathLike, *,
    shard: Shard, regions: Sequence[str] = (), regions_bed: str | None = None,
    block_size: int, window: int, gff: str | None = None, genetic_code: int = 1,
    depth: str = "final", strand_average: bool = True, batch_size: int = 16,
    info: Sequence[str] = (), overwrite: bool = False, device: str = "auto",
    progress: bool = True,
):
    """:func:`.vcf_scoring.score_variants` over the blocks of this shard; returns its
    :class:`~.vcf_scoring.ScoreSummary` when this process merged, else None."""
    from .consequences import ConsequenceAnnotator, read_cds_models
    from .merge import merge_scores
    from .runner import PerBaseForward, load_model
    from .scoring import VariantScorer
    from .vcf_io import HeaderChecker, open_vcf
    from .vcf_regions import (
        foreign_contigs,
        stream_blocks,
        tabix_blocks,
        tabix_index,
        with_foreign,
    )
    from .vcf_scoring import (
        INFO_FIELDS,
        _InfoColumns,
        check_options,
        input_paths,
        output_paths,
        score_vcf,
        scored_record,
    )

    check_options(window, batch_size, None, genetic_code)
    sources = input_paths(vcf, genome.path, gff, regions_bed)
    check_outputs(output_paths(out, list(genome.contigs.values())), inputs=sources,
                  overwrite=overwrite)
    header, _ = open_vcf(vcf)
    taken = sorted(k for k in INFO_FIELDS if k in header.definitions["INFO"])
    if taken:
        raise InputError(f"{vcf}: INFO {taken} already in the header (scored before?); "
                         "score the original VCF")
    _InfoColumns(header.definitions["INFO"], info, vcf)
    selection = select_regions(regions, regions_bed, genome.contigs)
    plan = genome_blocks(genome.contigs, selection, block_size)
    if selection is None:
        plan = with_foreign(plan, foreign_contigs(vcf, genome))
    options = {"vcf": str(Path(vcf).resolve()), "fasta": str(genome.path.resolve()),
               "gff": gff and str(Path(gff).resolve()), "model": str(model),
               "regions": list(regions), "regions_bed": regions_bed, "block_size": block_size,
               "window": window, "genetic_code": genetic_code, "depth": depth,
               "strand_average": strand_average, "batch_size": batch_size, "info": list(info)}
    outputs = [str(x) for x in output_paths(out, list(genome.contigs.values()))]
    store = PartStore.create(out, "score-variants", options,
                             [vcf, genome.path, gff, regions_bed, *model_files(model)], plan,
                             shards=shard.count, outputs=outputs)
    index = None if header.is_bcf else tabix_index(vcf)

    def work(todo: list[Block]) -> None:
        annotator = None
        if gff is not None:
            annotator = ConsequenceAnnotator(genome, read_cds_models(gff, genome.contigs),
                                             genetic_code)
        net = model
        if isinstance(net, (str, os.PathLike)):
            from hnet_dna.training.distributed import resolve_device

            net = load_model(net, resolve_device(shard_device(device, shard)))
        scorer = VariantScorer(PerBaseForward(net, batch_size), depth,
                               strand_average=strand_average)
        checker = HeaderChecker(header)
        wanted = {b.index for b in todo}
        source = (tabix_blocks(vcf, genome, todo, plan, index) if index is not None else
                  stream_blocks(vcf, genome, plan, whole_genome=selection is None))
        bar = progress_bar(total=len(todo), unit="block", desc=f"score {shard}",
                   disable=not progress)
        for found in source:
            if found.block.index not in wanted:
                continue  # another shard's, or done before
            lines: list[str] = []

            def tee(records=found.records, lines=lines):
                for lineno, line in records:
                    lines.append(line)
                    yield lineno, line
            table, _ = score_vcf(vcf, genome, scorer, window, annotator, info,
                                 records=tee(), checker=checker, typed=False, progress=False,
                                 block_size=block_size)
            store.write(found.block.index, _with_lines(table, lines, annotator is not None,
                                                       found.rank, scored_record))
            wanted.discard(found.block.index)
            bar.update()
        empty, _ = score_vcf(vcf, genome, scorer, window, annotator, info, records=[],
                             checker=checker, typed=False, progress=False)
        for i in sorted(wanted):  # blocks without a record
            store.write(i, _with_lines(empty, [], annotator is not None, -1, scored_record))
            bar.update()
        bar.close()

    run_blocks(store, shard, work)
    return finish(store, shard, lambda: merge_scores(store))


def _with_lines(table: pl.DataFrame, lines: list[str], with_csq: bool, rank: int,
                scored_record) -> pl.DataFrame:
    """A block's table plus its scored VCF lines (``line``, on each record's first ALT row)
    and the file rank of its contig (``_rank``: merge order)."""
    per_record: dict[int, list[dict]] = {}
    for row in table.iter_rows(named=True):
        per_record.setdefault(row["record"], []).append(row)
    column: list[str | None] = [None] * table.height
    first = 0
    for i, rows in sorted(per_record.items()):
        column[first] = scored_record(lines[i], rows, with_csq)
        first += len(rows)
    return table.with_columns(pl.Series("line", column, dtype=pl.String),
                              pl.lit(rank, dtype=pl.Int64).alias("_rank"))


# ---------------------------------------------------------------------------- embed
def embed_blocks(
    model, fasta: str, bed: str, out: str | os.PathLike, *, shard: Shard,
    regions: Sequence[str] = (), regions_bed: str | None = None, block_size: int,
    depths: Sequence[str], pool: str, strand_average: bool, window: int, overlap: int,
    boundaries_bed: str | None = None, batch_size: int = 16, overwrite: bool = False,
    device: str = "auto", progress: bool = True,
) -> str | None:
    """``hnet-dna embed --fasta --bed`` over the blocks of this shard: a BED interval belongs
    to the block holding its start. Returns the merge summary when this process merged."""
    from hnet_dna.training.distributed import resolve_device

    from .embed_io import EmbeddingWriter, iter_inputs, output_paths
    from .embeddings import Embedder, boundaries, boundaries_bed_outputs
    from .merge import merge_embeddings
    from .runner import PerBaseForward, load_model
    from .vcf_regions import _Locator

    inputs, _ = iter_inputs(fasta, bed, None)
    genome = inputs.genome
    selection = select_regions(regions, regions_bed, genome.contigs)
    plan = genome_blocks(genome.contigs, selection, block_size)
    locate = _Locator(plan, genome)
    by_block: dict[int, list[int]] = {}
    for i, rec in enumerate(inputs.records):
        block = locate.find(rec.contig, rec.start)
        if block is not None:
            by_block.setdefault(block.index, []).append(i)
    outputs = output_paths(out, depths, False)
    outputs += boundaries_bed_outputs(boundaries_bed) if boundaries_bed else []
    sources = [fasta, bed, regions_bed, f"{fasta}.fai", f"{fasta}.gzi"]
    check_outputs(outputs, inputs=[s for s in sources if s], overwrite=overwrite)
    net = load_model(model, resolve_device(shard_device(device, shard)))
    embedder = Embedder(PerBaseForward(net, batch_size), depths, pool, strand_average, window,
                        overlap, progress=False)
    dims = {d: embedder.dim(d) for d in embedder.depths}
    options = {"fasta": str(Path(fasta).resolve()), "bed": str(Path(bed).resolve()),
               "model": str(model), "regions": list(regions), "regions_bed": regions_bed,
               "block_size": block_size, "depths": list(depths), "pool": pool,
               "strand_average": strand_average, "window": window, "overlap": overlap,
               "boundaries_bed": boundaries_bed, "batch_size": batch_size}
    store = PartStore.create(out, "embed", options, [fasta, bed, regions_bed,
                                                     *model_files(model)],
                             plan, shards=shard.count, outputs=[str(p) for p in outputs],
                             dims=dims)

    def work(todo: list[Block]) -> None:
        for block in progress_bar(todo, unit="block", desc=f"embed {shard}", disable=not progress):
            items = by_block.get(block.index, [])
            recs = [inputs.records[i] for i in items]
            writer = EmbeddingWriter(out, dims)
            bounds = []
            embedded = embedder.embed(inputs.sequences(items), len(recs))
            for rec, emb in zip(recs, embedded, strict=True):
                writer.add(rec, emb)
                bounds += boundaries(emb, rec.contig, rec.start, rec.strand)
            frame = writer.frame().with_columns(pl.Series("_index", items, dtype=pl.Int64))
            extra = {"_bounds": _bounds_frame(bounds)} if boundaries_bed else None
            store.write(block.index, frame, extra)

    run_blocks(store, shard, work)
    return finish(store, shard, lambda: merge_embeddings(store))



# ---------------------------------------------------------------------------- track
_BOUNDS_SCHEMA = {"contig": pl.String, "position": pl.Int64, "stage": pl.Int64,
                  "prob": pl.Float64, "strand": pl.String}


def _bounds_frame(bounds) -> pl.DataFrame:
    return pl.DataFrame([vars(b) for b in bounds], schema=_BOUNDS_SCHEMA)


def track_blocks_run(
    model, fasta: str, bed: str | None, out: str, *, shard: Shard, regions: Sequence[str] = (),
    regions_bed: str | None = None, block_size: int, window: int, overlap: int,
    forward_only: bool = False, bigwig: bool = True, batch_size: int = 16,
    overwrite: bool = False, device: str = "auto", progress: bool = True,
) -> dict[str, int] | None:
    """``hnet-dna track`` over the blocks of this shard (the tracked regions, or their bases
    in the selection, cut into blocks computed with the whole region's windows); returns the
    lines per output when this process merged."""
    from hnet_dna.training.distributed import resolve_device

    from .embeddings import Embedder, boundaries
    from .merge import merge_tracks
    from .runner import PerBaseForward, load_model
    from .tracks import runs, signals, track_block, track_blocks, track_outputs, track_regions

    genome = Genome(fasta)
    pairs = track_blocks(track_regions(genome, bed),
                         select_regions(regions, regions_bed, genome.contigs), block_size)
    if not pairs:
        raise InputError("the --region/--regions-bed selection holds no tracked base")
    net = load_model(model, resolve_device(shard_device(device, shard)))
    stages, both = net.config.num_stages, not forward_only
    outs = track_outputs(out, stages, both, bigwig)
    sources = [fasta, f"{fasta}.fai", f"{fasta}.gzi", bed, regions_bed]
    check_outputs(outs, inputs=[s for s in sources if s], overwrite=overwrite)
    options = {"fasta": str(Path(fasta).resolve()), "bed": bed and str(Path(bed).resolve()),
               "model": str(model), "regions": list(regions), "regions_bed": regions_bed,
               "block_size": block_size, "window": window, "overlap": overlap,
               "forward_only": forward_only, "bigwig": bigwig, "batch_size": batch_size}
    store = PartStore.create(out, "track", options, [fasta, bed, regions_bed,
                                                     *model_files(model)],
                             [b for b, _ in pairs], shards=shard.count,
                             outputs=[str(p) for p in outs], stages=stages)
    parent = {b.index: r for b, r in pairs}
    embedder = Embedder(PerBaseForward(net, batch_size), [], "mean", both, window, overlap,
                        progress=False, logp=True)

    def work(todo: list[Block]) -> None:
        for block in progress_bar(todo, unit="block", desc=f"track {shard}", disable=not progress):
            emb = track_block(embedder, genome, block, parent[block.index])
            rows: dict[str, list] = {"signal": [], "start": [], "end": [], "text": []}
            for name, values in signals(emb).items():
                starts, ends, _, printed = runs(values)
                rows["signal"] += [name] * len(printed)
                rows["start"] += (starts + block.start).tolist()
                rows["end"] += (ends + block.start).tolist()
                rows["text"] += printed
            frame = pl.DataFrame(rows, schema={"signal": pl.String, "start": pl.Int64,
                                               "end": pl.Int64, "text": pl.String})
            bounds = _bounds_frame(boundaries(emb, block.contig, block.start))
            store.write(block.index, frame, {"_bounds": bounds})

    run_blocks(store, shard, work)
    return finish(store, shard, lambda: merge_tracks(store))
