"""``hnet-dna score-variants``: zero-shot scores for every ALT of a VCF/BCF (or of every
possible SNV of a GFF's CDS), written as the input VCF plus INFO keys and a parquet table."""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl

from hnet_dna.errors import InputError
from hnet_dna.outputs import check_outputs
from hnet_dna.training.distributed import resolve_device

from ..regions import Shard, add_region_options, block_mode, resolve_shard
from .common import add_model_options, add_output_options, command, new_parser


def build_parser() -> argparse.ArgumentParser:
    p = new_parser("hnet-dna score-variants", (
        "Zero-shot scores (LLR, embedding distances) for every ALT of a VCF/BCF; writes the "
        "input VCF unchanged apart from added HNET_* INFO keys, and a parquet table."))
    add_model_options(p)
    p.add_argument("--vcf", help="VCF/BCF (plain, gzip or bgzip; indexed or not)")
    p.add_argument("--fasta", required=True, help="reference FASTA")
    add_output_options(p, "output VCF name (.vcf, .vcf.gz + index, .bcf) or prefix "
                          "(PREFIX.vcf.gz); table = .parquet",
                       overwrite_help="replace existing outputs (an input is never overwritten)")
    # an int, not window_size: vcf_scoring.check_options refuses a small window with its reason
    p.add_argument("--window", type=int, default=256, help="bases per REF window")
    p.add_argument("--depth", default="final", help="embedding depth for the distances")
    p.add_argument("--no-strand-average", action="store_true",
                   help="forward strand only (default: average forward and reverse)")
    p.add_argument("--gff", help="GFF3 or GTF with CDS features: add the coding consequence "
                                 "(Sequence Ontology terms)")
    p.add_argument("--genetic-code", type=int, default=1, help="NCBI translation table id")
    p.add_argument("--saturate-cds", action="store_true",
                   help="instead of --vcf, score every possible SNV in the --gff CDS "
                        "(subsampled with --max-sites)")
    p.add_argument("--max-sites", type=int, help="with --saturate-cds: random subset size")
    p.add_argument("--seed", type=int, default=0, help="with --max-sites: subsampling seed")
    p.add_argument("--info", default="",
                   help="comma-separated INFO keys copied into the table (e.g. AF,AA)")
    p.add_argument("--max-variants", type=int, help="stop after this many ALTs")
    p.add_argument("--label-positive", help="rule for label 1, e.g. 'AF<0.001'")
    p.add_argument("--label-negative", help="rule for label 0, e.g. 'AF>=0.05'")
    p.add_argument("--label-column", help="INFO key (from --info) holding 0/1 labels")
    add_region_options(p)
    return p


def check_args(args: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    """Option combinations and values, before anything is read."""
    from ..vcf_scoring import check_options

    if (args.vcf is None) == (not args.saturate_cds):
        p.error("give exactly one of --vcf or --saturate-cds")
    if args.saturate_cds and not args.gff:
        p.error("--saturate-cds needs --gff")
    if (args.label_positive is None) != (args.label_negative is None):
        p.error("--label-positive and --label-negative go together")
    if args.max_sites is not None and args.max_sites < 1:
        raise InputError(f"--max-sites must be at least 1, got {args.max_sites}")
    check_options(args.window, args.batch_size, args.max_variants, args.genetic_code)


def info_keys(args: argparse.Namespace) -> list[str]:
    """The ``--info`` keys; ``--label-column`` must be one of them."""
    info = [k for k in args.info.split(",") if k]
    if args.label_column and args.label_column not in info:
        raise InputError(f"--label-column {args.label_column!r} is not in the table; "
                         "copy it with --info")
    return info


def run(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    from hnet_dna.genomics.fasta import Genome

    from ..vcf_scoring import score_variants

    check_args(args, p)
    genome = Genome(args.fasta)
    info = info_keys(args)
    if block_mode(args):
        return run_blocks(args, p, genome, info)
    vcf = saturation_sites(args, genome) if args.saturate_cds else args.vcf
    summary = score_variants(
        args.model, vcf, genome, args.out, window=args.window, gff=args.gff,
        genetic_code=args.genetic_code, depth=args.depth,
        strand_average=not args.no_strand_average, batch_size=args.batch_size, info=info,
        max_variants=args.max_variants, overwrite=args.overwrite,
        device=str(resolve_device(args.device)), progress=not args.no_progress,
        block_size=args.block_size)
    report(args, summary)
    return 0


def report(args: argparse.Namespace, summary) -> None:
    """Counts, files written and the evaluations of a finished run."""
    print(summary)
    index = f", index {summary.index}" if summary.index else ""
    print(f"wrote {summary.vcf} ({summary.records} records{index}) and {summary.table_path} "
          f"({summary.table.height} ALTs)")
    print_evaluations(args, summary.table)


def run_blocks(args: argparse.Namespace, p: argparse.ArgumentParser, genome,
               info: list[str]) -> int:
    """``score-variants`` with ``--region``/``--regions-bed``/``--shard`` or under torchrun:
    this shard's blocks; the outputs when this process merges (:mod:`..sharded`)."""
    from ..sharded import score_variants_blocks

    if args.saturate_cds or args.max_variants is not None:
        p.error("--region/--regions-bed/--shard work on a --vcf, without --max-variants")
    summary = score_variants_blocks(
        args.model, args.vcf, genome, args.out, shard=resolve_shard(args.shard) or Shard(),
        regions=args.region or (), regions_bed=args.regions_bed,
        block_size=args.block_size, window=args.window, gff=args.gff,
        genetic_code=args.genetic_code, depth=args.depth,
        strand_average=not args.no_strand_average, batch_size=args.batch_size, info=info,
        overwrite=args.overwrite, device=args.device, progress=not args.no_progress)
    if summary is not None:
        summary.table = pl.read_parquet(summary.table_path)
        report(args, summary)
    return 0


def saturation_sites(args: argparse.Namespace, genome) -> str:
    """``--saturate-cds``: write every CDS SNV (or ``--max-sites`` of them) as a sites VCF
    beside the output; returns its path. Every output is checked first."""
    from ..consequences import cds_snvs, read_cds_models
    from ..vcf_scoring import default_outputs, input_paths, output_paths, write_sites_vcf

    out_vcf = default_outputs(args.out)[0]
    vcf = out_vcf.with_name(out_vcf.name.split(".")[0] + ".sites.vcf")
    # every output of the command is checked before any of them is written
    check_outputs([vcf, *output_paths(args.out, list(genome.contigs.values()))],
                  inputs=input_paths(args.fasta, args.gff), overwrite=args.overwrite)
    sites = list(cds_snvs(genome, read_cds_models(args.gff, genome.contigs)))
    if args.max_sites and args.max_sites < len(sites):
        keep = np.sort(np.random.default_rng(args.seed).choice(len(sites), args.max_sites,
                                                               replace=False))
        sites = [sites[i] for i in keep]
    print(f"saturation: {write_sites_vcf(vcf, sites, genome)} SNVs in CDS -> {vcf}")
    return vcf


def print_evaluations(args: argparse.Namespace, table: pl.DataFrame) -> None:
    """AUROCs of the scores against the requested labels, and per consequence class."""
    from ..consequences import HIGH_OR_MODERATE
    from ..metrics import label_by_rules, pairwise_class_aurocs, score_aucs

    if args.label_positive:
        labelled = label_by_rules(table, args.label_positive, args.label_negative)
        print(f"label 1: {args.label_positive}, label 0: {args.label_negative}")
        print(score_aucs(labelled))
    if args.label_column:
        print(score_aucs(table.with_columns(pl.col(args.label_column).cast(pl.Int64)),
                         label=args.label_column))
    if args.gff is not None:
        scored = table.filter(pl.col("status") == "ok")
        print(scored.group_by("consequence").agg(pl.len(), pl.col("llr").mean())
              .sort("consequence"))
        pairs = [(a, "synonymous_variant") for a in HIGH_OR_MODERATE]
        pairs.append(("synonymous_variant", "intron_variant"))
        aucs = pairwise_class_aurocs(scored, "consequence", "llr", pairs)
        print(aucs.filter((pl.col("n_low") > 0) & (pl.col("n_high") > 0)))


main = command(build_parser, run)
main.__doc__ = "``hnet-dna score-variants``; returns the exit code."
