"""Subcommands ``hnet-dna embed``, ``hnet-dna score-variants`` and ``hnet-dna probe``.

Each ``main_*(argv)`` parses its own arguments and returns a process exit code: 0 on success,
2 for bad input (the error is printed, naming the file/record), so ``hnet_dna.cli`` only has to
dispatch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import numpy as np
import polars as pl
import torch

log = logging.getLogger("hnet_dna.evaluation")

_INPUT_ERRORS = (FileNotFoundError, KeyError, ValueError, IndexError)


def _common(p: argparse.ArgumentParser, model_required: bool = True) -> None:
    p.add_argument("--model", required=model_required,
                   help="saved model folder or trainer run folder (newest step-N checkpoint)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)


def _run(main, argv: Sequence[str] | None) -> int:
    try:
        return main(argv)
    except _INPUT_ERRORS as err:
        # bad input (missing file, malformed record, unknown contig...): one clear line
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------- embed
def _embed_parser() -> argparse.ArgumentParser:
    from .embeddings import POOLS

    p = argparse.ArgumentParser(prog="hnet-dna embed", description=(
        "Pooled (and optionally per-base) embeddings of BED intervals of a FASTA, or of the "
        "sequences of a CSV/TSV (column 'sequence', optional 'name'), plus learned chunk "
        "boundaries as a BED track."))
    _common(p)
    src = p.add_argument_group("input (FASTA + BED, or a sequence table)")
    src.add_argument("--fasta")
    src.add_argument("--bed", help="intervals (0-based BED); needs --fasta")
    src.add_argument("--sequences", help="CSV/TSV with a 'sequence' column")
    p.add_argument("--out", required=True,
                   help="output: NAME.parquet, or NAME.npy (+ NAME.index.tsv)")
    p.add_argument("--depth", action="append",
                   help="encoder.S | main | decoder.S | final (repeatable; default final)")
    p.add_argument("--pool", choices=POOLS, default="mean")
    p.add_argument("--strand-average", action="store_true",
                   help="average forward and reverse-complement embeddings per base")
    p.add_argument("--window", type=int, default=1024,
                   help="bases per forward pass; longer sequences use sliding windows")
    p.add_argument("--overlap", type=int, default=256,
                   help="left context overlap between sliding windows (see embeddings docs)")
    p.add_argument("--per-base", action="store_true",
                   help="also write per-base arrays (NAME.DEPTH.per_base.npy, rows by index)")
    p.add_argument("--boundaries-bed", help="write the learned chunk boundaries here (BED6)")
    return p


def main_embed(argv: Sequence[str] | None = None) -> int:
    """``hnet-dna embed``; returns the exit code."""
    return _run(_main_embed, argv)


def _main_embed(argv: Sequence[str] | None) -> int:
    from .embed_io import EmbeddingWriter, iter_inputs
    from .embeddings import Embedder, boundaries, write_boundaries_bed
    from .runner import ModelRunner, load_model

    args = _embed_parser().parse_args(argv)
    _setup_logging(args.verbose)
    inputs, total = iter_inputs(args.fasta, args.bed, args.sequences)
    model = load_model(args.model, _device(args.device))
    embedder = Embedder(ModelRunner(model, args.batch_size), args.depth or ["final"], args.pool,
                        args.strand_average, args.window, args.overlap, args.per_base,
                        progress=not args.no_progress)
    writer = EmbeddingWriter(args.out, {d: embedder.dim(d) for d in embedder.depths},
                             per_base_total=total.bases if args.per_base else None)
    bounds = []
    for item, emb in zip(inputs.records, embedder.embed(inputs.sequences(), total.count),
                         strict=True):
        writer.add(item, emb)
        if args.boundaries_bed:
            bounds += boundaries(emb, item.contig, item.start)
    paths = writer.close()
    if args.boundaries_bed:
        n = write_boundaries_bed(args.boundaries_bed, bounds)
        paths.append(f"{args.boundaries_bed} ({n} boundaries)")
    print(f"embedded {total.count} sequences, {embedder.bases} bases in "
          f"{embedder.seconds:.1f} s ({embedder.bases_per_second:.0f} bases/s)")
    print("wrote " + ", ".join(map(str, paths)))
    return 0


# ---------------------------------------------------------------------------- score-variants
def _score_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hnet-dna score-variants", description=(
        "Zero-shot scores (LLR, embedding distances) for every ALT of a VCF/BCF; writes the "
        "input VCF unchanged apart from added HNET_* INFO keys, and a parquet table."))
    _common(p)
    p.add_argument("--vcf", help="VCF/BCF (plain, gzip or bgzip; indexed or not)")
    p.add_argument("--fasta", required=True, help="reference FASTA")
    p.add_argument("--out", required=True,
                   help="output VCF name (.vcf, .vcf.gz + index, .bcf) or prefix "
                        "(PREFIX.vcf.gz); table = .parquet")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs (an input is never overwritten)")
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--info", default="",
                   help="comma-separated INFO keys copied into the table (e.g. AF,AA)")
    p.add_argument("--max-variants", type=int, help="stop after this many ALTs")
    p.add_argument("--label-positive", help="rule for label 1, e.g. 'AF<0.001'")
    p.add_argument("--label-negative", help="rule for label 0, e.g. 'AF>=0.05'")
    p.add_argument("--label-column", help="INFO key (from --info) holding 0/1 labels")
    return p


def main_score_variants(argv: Sequence[str] | None = None) -> int:
    """``hnet-dna score-variants``; returns the exit code."""
    return _run(_main_score_variants, argv)


def _main_score_variants(argv: Sequence[str] | None) -> int:
    from hnet_dna.errors import InputError
    from hnet_dna.genomics.fasta import Genome
    from hnet_dna.outputs import check_outputs

    from .consequences import CONSEQUENCES, cds_snvs, read_cds_models
    from .metrics import label_by_rules, pairwise_class_aurocs, score_aucs
    from .vcf_scoring import (
        check_options,
        default_outputs,
        input_paths,
        output_paths,
        score_variants,
        write_sites_vcf,
    )

    p = _score_parser()
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    if (args.vcf is None) == (not args.saturate_cds):
        p.error("give exactly one of --vcf or --saturate-cds")
    if args.saturate_cds and not args.gff:
        p.error("--saturate-cds needs --gff")
    if (args.label_positive is None) != (args.label_negative is None):
        p.error("--label-positive and --label-negative go together")
    if args.max_sites is not None and args.max_sites < 1:
        raise InputError(f"--max-sites must be at least 1, got {args.max_sites}")
    check_options(args.window, args.batch_size, args.max_variants, args.genetic_code)
    genome = Genome(args.fasta)
    info = [k for k in args.info.split(",") if k]
    if args.label_column and args.label_column not in info:
        raise InputError(f"--label-column {args.label_column!r} is not in the table; "
                         "copy it with --info")
    vcf = args.vcf
    if args.saturate_cds:
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
    summary = score_variants(
        args.model, vcf, genome, args.out, window=args.window, gff=args.gff,
        genetic_code=args.genetic_code, depth=args.depth,
        strand_average=not args.no_strand_average, batch_size=args.batch_size, info=info,
        max_variants=args.max_variants, overwrite=args.overwrite,
        device=str(_device(args.device)), progress=not args.no_progress)
    table = summary.table
    print(summary)
    index = f", index {summary.index}" if summary.index else ""
    print(f"wrote {summary.vcf} ({summary.records} records{index}) and {summary.table_path} "
          f"({table.height} ALTs)")
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
        pairs = [(a, "synonymous_variant") for a in CONSEQUENCES[:7]]
        pairs.append(("synonymous_variant", "intron_variant"))
        aucs = pairwise_class_aurocs(scored, "consequence", "llr", pairs)
        print(aucs.filter((pl.col("n_low") > 0) & (pl.col("n_high") > 0)))
    return 0


# ---------------------------------------------------------------------------- probe
def _probe_parser() -> argparse.ArgumentParser:
    from .probing import HEADS
    from .task_builders import TASK_KINDS

    p = argparse.ArgumentParser(prog="hnet-dna probe", description=(
        "Probe frozen embeddings (logistic regression, MLP) against a k-mer baseline and a "
        "random-init control on the same splits; optionally fine-tune."))
    _common(p, model_required=False)
    p.add_argument("--task", help="csv:FOLDER (train/dev/test.csv) or gb:FOLDER (Genomic "
                                  f"Benchmarks), or build:KIND with KIND in {TASK_KINDS}")
    p.add_argument("--fasta", help="genome for build:KIND")
    p.add_argument("--gff", help="annotation for build:KIND")
    p.add_argument("--task-window", type=int, default=200, help="build: window length")
    p.add_argument("--max-per-class", type=int, help="build: cap per class and split")
    p.add_argument("--block", type=int, default=20_000, help="build: split block size")
    p.add_argument("--random-init", action="store_true",
                   help="also probe a randomly initialised model of the same architecture")
    p.add_argument("--no-kmer", action="store_true", help="skip the k-mer baseline")
    p.add_argument("--kmer-k", default="4,5,6", help="k values of the baseline")
    p.add_argument("--heads", default=",".join(HEADS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--depth", action="append", help="embedding depth(s); default final")
    p.add_argument("--pool", default="mean")
    p.add_argument("--strand-average", action="store_true")
    p.add_argument("--window", type=int, default=1024, help="embedding window")
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="also fine-tune the model end to end (0 = off)")
    p.add_argument("--finetune-lr", type=float, default=3e-4)
    p.add_argument("--out", help="per-seed results (.parquet); the summary is printed")
    return p


def main_probe(argv: Sequence[str] | None = None) -> int:
    """``hnet-dna probe``; returns the exit code."""
    return _run(_main_probe, argv)


def _main_probe(argv: Sequence[str] | None) -> int:
    from .embeddings import Embedder
    from .kmer_features import kmer_features
    from .probing import embed_task, finetune, probe_features, summarize
    from .runner import ModelRunner, load_model, random_init_model

    p = _probe_parser()
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    if not args.task:
        p.error("--task is required")
    task = _load_probe_task(args, p)
    print(f"task {task.name}: {task.summary()}")
    heads = [h for h in args.heads.split(",") if h]
    seeds = list(range(args.seeds))
    labels = {s: sp.labels for s, sp in task.splits.items()}
    rows: list[dict] = []
    if not args.no_kmer:
        ks = [int(k) for k in args.kmer_k.split(",")]
        feats = {s: kmer_features(sp.sequences, ks) for s, sp in task.splits.items()}
        rows += probe_features(f"kmer{''.join(map(str, ks))}", feats, labels, heads, seeds)
    models = []
    if args.model:
        device = _device(args.device)
        model = load_model(args.model, device)
        models.append(("hnet", model))
        if args.random_init:
            models.append(("hnet_random_init", random_init_model(model.config, 0, device)))
    elif args.random_init or args.finetune_epochs:
        p.error("--random-init and --finetune-epochs need --model")
    for name, model in models:
        embedder = Embedder(ModelRunner(model, args.batch_size), args.depth or ["final"],
                            args.pool, args.strand_average, args.window, min(256, args.window - 1),
                            progress=not args.no_progress)
        feats = embed_task(embedder, task)
        print(f"{name}: embedded at {embedder.bases_per_second:.0f} bases/s")
        rows += probe_features(name, feats, labels, heads, seeds)
        if args.finetune_epochs:
            for seed in seeds:
                m = finetune(model, task, args.finetune_epochs, args.finetune_lr,
                             args.batch_size, seed=seed, progress=not args.no_progress)
                rows.append({"features": name, "head": "finetune", "seed": seed, **m})
    if not rows:
        p.error("nothing to probe: give --model and/or keep the k-mer baseline")
    table = pl.DataFrame(rows)
    if args.out:
        table.write_parquet(args.out)
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, float_precision=4):
        print(summarize(table))
    return 0


def _load_probe_task(args, p: argparse.ArgumentParser):
    from .tasks import load_task

    if args.task.startswith("build:"):
        from hnet_dna.genomics.fasta import Genome

        from .task_builders import build_task

        if not (args.fasta and args.gff):
            p.error("build:KIND needs --fasta and --gff")
        return build_task(args.task.split(":", 1)[1], Genome(args.fasta), args.gff,
                          window=args.task_window, block=args.block,
                          max_per_class=args.max_per_class)
    return load_task(args.task)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m hnet_dna.evaluation.cli
    commands = {"embed": main_embed, "score-variants": main_score_variants, "probe": main_probe}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m hnet_dna.evaluation.cli {{{','.join(commands)}}} ...")
        sys.exit(2)
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
