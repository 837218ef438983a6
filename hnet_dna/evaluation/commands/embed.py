"""``hnet-dna embed``: pooled (and per-base) embeddings of sequences, and their learned chunk
boundaries as BED."""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from hnet_dna.outputs import atomic_output
from hnet_dna.training.distributed import resolve_device

from ..regions import Shard, add_region_options, block_mode, resolve_shard
from .common import (
    add_model_options,
    add_output_options,
    add_window_options,
    check_outputs_and_space,
    check_window,
    command,
    new_parser,
)


def build_parser() -> argparse.ArgumentParser:
    from ..embeddings import POOLS

    p = new_parser("hnet-dna embed", (
        "Pooled (and optionally per-base) embeddings of BED intervals of a FASTA, or of the "
        "sequences of a CSV/TSV (column 'sequence', optional 'name'), plus learned chunk "
        "boundaries as a BED track. Minus-strand BED regions (column 6) are embedded as their "
        "reverse complement."))
    add_model_options(p)
    src = p.add_argument_group("input (FASTA + BED, or a sequence table)")
    src.add_argument("--fasta", help="reference FASTA (plain or bgzip) for --bed")
    src.add_argument("--bed", help="intervals (0-based BED; strand in column 6); needs --fasta")
    src.add_argument("--sequences", help="CSV/TSV with a 'sequence' column")
    add_output_options(p, "output: NAME.parquet, or NAME.npy (+ NAME.index.tsv)")
    p.add_argument("--depth", action="append",
                   help="encoder.S | main | decoder.S | final (repeatable; default final)")
    p.add_argument("--pool", choices=POOLS, default="mean", help="how bases are pooled")
    p.add_argument("--strand-average", action="store_true",
                   help="average forward and reverse-complement embeddings per base")
    add_window_options(
        p, "bases per forward pass; longer sequences use sliding windows",
        "left context overlap between sliding windows (see embeddings docs)")
    p.add_argument("--per-base", action="store_true",
                   help="also write per-base arrays (NAME.DEPTH.per_base.npy, rows by index)")
    p.add_argument("--boundaries-bed", help="write the learned chunk boundaries here (BED6)")
    add_region_options(p)
    return p


def run(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    from ..embed_io import EmbeddingWriter, iter_inputs, output_paths
    from ..embeddings import Embedder, boundaries, boundaries_bed_outputs, write_boundaries_bed
    from ..runner import PerBaseForward, load_model

    check_window(p, args.window, args.overlap)
    depths = args.depth or ["final"]
    if block_mode(args):
        return run_blocks(args, p, depths)
    inputs, total = iter_inputs(args.fasta, args.bed, args.sequences)
    model = load_model(args.model, resolve_device(args.device))
    embedder = Embedder(PerBaseForward(model, args.batch_size), depths, args.pool,
                        args.strand_average, args.window, args.overlap, args.per_base,
                        progress=not args.no_progress)
    dims = {d: embedder.dim(d) for d in embedder.depths}
    # every output checked (and a rough size estimate) before any compute
    written = output_paths(args.out, depths, args.per_base)
    outs = written + (boundaries_bed_outputs(args.boundaries_bed) if args.boundaries_bed else [])
    per_base_bytes = total.bases * sum(dims.values()) * 4 if args.per_base else 0
    source = [args.fasta, args.bed, args.sequences]
    source += [f"{args.fasta}.{ext}" for ext in ("fai", "gzi") if args.fasta]
    check_outputs_and_space(outs, source, args.overwrite,
                            per_base_bytes + total.count * sum(dims.values()) * 4)
    bounds = []
    with ExitStack() as stack:
        tmp = {path: stack.enter_context(atomic_output(path)) for path in written}
        writer = EmbeddingWriter(args.out, dims, total.bases if args.per_base else None,
                                 target=tmp.__getitem__)
        # groups end at block-grid cells, as in a run in blocks (--shard): same batches
        keys = ((r.contig, r.start // args.block_size) for r in inputs.records)
        embedded = embedder.embed(inputs.sequences(), total.count,
                                  keys if args.fasta else None)
        for item, emb in zip(inputs.records, embedded, strict=True):
            writer.add(item, emb)
            if args.boundaries_bed:
                bounds += boundaries(emb, item.contig, item.start, item.strand)
        paths = [str(x) for x in writer.close()]
        if args.boundaries_bed:
            n = write_boundaries_bed(args.boundaries_bed, bounds)
            paths.append(f"{args.boundaries_bed} ({n} boundaries)")
    print(f"embedded {total.count} sequences, {embedder.bases} bases in "
          f"{embedder.seconds:.1f} s ({embedder.bases_per_second:.0f} bases/s)")
    print("wrote " + ", ".join(paths))
    return 0


def run_blocks(args: argparse.Namespace, p: argparse.ArgumentParser, depths: list[str]) -> int:
    """``embed --fasta --bed`` with ``--region``/``--regions-bed``/``--shard`` or torchrun."""
    from ..sharded import embed_blocks

    if not (args.fasta and args.bed) or args.sequences:
        p.error("--region/--regions-bed/--shard need --fasta with --bed")
    if args.per_base:
        p.error("--per-base is not available with --region/--regions-bed/--shard")
    done = embed_blocks(
        args.model, args.fasta, args.bed, args.out, shard=resolve_shard(args.shard) or Shard(),
        regions=args.region or (), regions_bed=args.regions_bed, block_size=args.block_size,
        depths=depths, pool=args.pool, strand_average=args.strand_average, window=args.window,
        overlap=args.overlap, boundaries_bed=args.boundaries_bed, batch_size=args.batch_size,
        overwrite=args.overwrite, device=args.device, progress=not args.no_progress)
    if done:
        print(done)
    return 0


main = command(build_parser, run)
main.__doc__ = "``hnet-dna embed``; returns the exit code."
