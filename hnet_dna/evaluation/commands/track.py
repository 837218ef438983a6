"""``hnet-dna track``: per-base log-likelihood and chunk-boundary browser tracks."""

from __future__ import annotations

import argparse

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
    p = new_parser("hnet-dna track", (
        "Genome-browser tracks: per-base log-likelihood (forward and strand-averaged) and "
        "per-stage boundary probability as bedGraph + bigWig, and the learned chunk "
        "boundaries as sorted, bgzipped, tabix-indexed BED6 per stage and strand."))
    add_model_options(p)
    p.add_argument("--fasta", required=True, help="reference FASTA (plain or bgzip)")
    p.add_argument("--bed", help="regions to track (disjoint; default: every whole contig)")
    add_output_options(p, "output prefix: PREFIX.logp.fwd.bedGraph, PREFIX.logp.fwd.bw, ...")
    add_window_options(p, "bases per forward pass; longer regions use sliding windows",
                       "left context overlap between sliding windows")
    p.add_argument("--forward-only", action="store_true",
                   help="forward strand only (half the work; no .mean / .rev / minus tracks)")
    p.add_argument("--no-bigwig", action="store_true", help="bedGraph only")
    add_region_options(p)
    return p


def run(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    from hnet_dna.genomics.fasta import Genome

    from ..embeddings import Embedder
    from ..runner import PerBaseForward, load_model
    from ..tracks import BYTES_PER_BASE, signal_names, track_outputs, track_regions, write_tracks

    check_window(p, args.window, args.overlap)
    if block_mode(args):
        return run_blocks(args)
    genome = Genome(args.fasta)
    regions = track_regions(genome, args.bed)
    model = load_model(args.model, resolve_device(args.device))
    stages, both = model.config.num_stages, not args.forward_only
    outs = track_outputs(args.out, stages, both, bigwig=not args.no_bigwig)
    bases = sum(r.end - r.start for r in regions)
    check_outputs_and_space(
        outs, [args.fasta, f"{args.fasta}.fai", f"{args.fasta}.gzi", args.bed], args.overwrite,
        bases * BYTES_PER_BASE * len(signal_names(stages, both)))
    embedder = Embedder(PerBaseForward(model, args.batch_size), [], "mean", both, args.window,
                        args.overlap, progress=not args.no_progress, logp=True)
    lines = write_tracks(embedder, genome, regions, args.out, bigwig=not args.no_bigwig,
                         block_size=args.block_size)
    print(f"tracked {len(regions)} regions, {bases} bases in {embedder.seconds:.1f} s "
          f"({embedder.bases_per_second:.0f} bases/s)")
    for name, n in lines.items():
        print(f"  {args.out}.{name}: {n} lines")
    print(f"wrote {len(outs)} files: " + ", ".join(str(o) for o in outs))
    return 0


def run_blocks(args: argparse.Namespace) -> int:
    """``track`` with ``--region``/``--regions-bed``/``--shard`` or under torchrun."""
    from ..sharded import track_blocks_run

    lines = track_blocks_run(
        args.model, args.fasta, args.bed, args.out, shard=resolve_shard(args.shard) or Shard(),
        regions=args.region or (), regions_bed=args.regions_bed, block_size=args.block_size,
        window=args.window, overlap=args.overlap, forward_only=args.forward_only,
        bigwig=not args.no_bigwig, batch_size=args.batch_size, overwrite=args.overwrite,
        device=args.device, progress=not args.no_progress)
    for name, n in (lines or {}).items():
        print(f"  {args.out}.{name}: {n} lines")
    return 0


main = command(build_parser, run)
main.__doc__ = "``hnet-dna track``; returns the exit code."
