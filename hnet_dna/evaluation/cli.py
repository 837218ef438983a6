"""Subcommands ``hnet-dna embed``, ``track``, ``score-variants`` and ``probe``.

Each ``main_*(argv)`` parses its own arguments and returns a process exit code: 0 on success,
2 for bad input (one line naming the file/record/option: :class:`hnet_dna.errors.InputError`, a
missing or unreadable path, a full disk), 1 for an internal error (a bug: one line, the
traceback with ``-v``), so ``hnet_dna.cli`` only has to dispatch. Every output is checked before
any work and written through a temporary file (:mod:`hnet_dna.outputs`).
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from hnet_dna.errors import InputError
from hnet_dna.outputs import check_output, check_outputs
from hnet_dna.training.distributed import resolve_device

log = logging.getLogger("hnet_dna.evaluation")

#: OS errors on a user's path (missing input, unreadable file, full disk): reported as input.
_USER_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class _Formatter(argparse.HelpFormatter):
    """``--help`` shows every option's default (flags and unset options have none to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "%(default)" not in text):
            text += " (default: %(default)s)"
        return text


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=_Formatter)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _window(text: str) -> int:
    value = _positive_int(text)
    if value < MIN_WINDOW:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_WINDOW} bases to give the model context, got {value}")
    return value


def _device_arg(name: str) -> str:
    """Validate ``--device`` at parse time: a known device type that exists here."""
    try:
        resolve_device(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name


MIN_WINDOW = 8


def _common(p: argparse.ArgumentParser, model_required: bool = True) -> None:
    p.add_argument("--model", required=model_required,
                   help="saved model folder, trainer run folder (newest step-N checkpoint) or "
                        "Hugging Face Hub repository org/name[@revision]")
    p.add_argument("--device", default="auto", type=_device_arg,
                   help="auto | cpu | cuda[:i] (checked before any work)")
    p.add_argument("--batch-size", type=_positive_int, default=16,
                   help="windows per forward pass")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log progress details; show the traceback of an internal error")


def _setup_logging(verbose: bool) -> None:
    """Logging, and torch's threads from the CPUs this process was given (logged with -v)."""
    from hnet_dna.training.resources import setup_threads

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    setup_threads()


def _run(main, argv: Sequence[str] | None) -> int:
    """Run a subcommand: bad input -> one line, exit 2; a bug -> one line, exit 1 (traceback
    with ``-v``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(argv)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except _USER_OS_ERRORS as err:
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno == errno.ENOSPC:  # atomic_output: "disk full while writing PATH"
            print(f"error: {err.strerror or err}", file=sys.stderr)
            return 2
        return _internal(err, args)
    except Exception as err:  # noqa: BLE001 - everything else is a bug in hnet_dna
        return _internal(err, args)


def _internal(err: BaseException, args: list[str]) -> int:
    if "-v" in args or "--verbose" in args:
        traceback.print_exc()
    print(f"internal error (a bug in hnet_dna, please report it): {type(err).__name__}: {err}"
          + ("" if "-v" in args or "--verbose" in args else "; rerun with -v for the traceback"),
          file=sys.stderr)
    return 1


def _check_outputs(paths: Sequence, inputs: Sequence, overwrite: bool,
                   free_bytes: int = 0) -> list[Path]:
    """Every output of a command checked before any work (see :mod:`hnet_dna.outputs`), plus
    a rough free-space estimate for all of them together."""
    checked = check_outputs(paths, inputs=[i for i in inputs if i is not None],
                            overwrite=overwrite)
    if checked and free_bytes > 0:
        check_output(checked[0], inputs=[], overwrite=True, min_free_bytes=free_bytes,
                     what="outputs starting with")
    return checked


# ---------------------------------------------------------------------------- embed
def _embed_parser() -> argparse.ArgumentParser:
    from .embeddings import POOLS

    p = _parser("hnet-dna embed", (
        "Pooled (and optionally per-base) embeddings of BED intervals of a FASTA, or of the "
        "sequences of a CSV/TSV (column 'sequence', optional 'name'), plus learned chunk "
        "boundaries as a BED track. Minus-strand BED regions (column 6) are embedded as their "
        "reverse complement."))
    _common(p)
    src = p.add_argument_group("input (FASTA + BED, or a sequence table)")
    src.add_argument("--fasta", help="reference FASTA (plain or bgzip) for --bed")
    src.add_argument("--bed", help="intervals (0-based BED; strand in column 6); needs --fasta")
    src.add_argument("--sequences", help="CSV/TSV with a 'sequence' column")
    p.add_argument("--out", required=True,
                   help="output: NAME.parquet, or NAME.npy (+ NAME.index.tsv)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--depth", action="append",
                   help="encoder.S | main | decoder.S | final (repeatable; default final)")
    p.add_argument("--pool", choices=POOLS, default="mean", help="how bases are pooled")
    p.add_argument("--strand-average", action="store_true",
                   help="average forward and reverse-complement embeddings per base")
    p.add_argument("--window", type=_window, default=1024,
                   help="bases per forward pass; longer sequences use sliding windows")
    p.add_argument("--overlap", type=int, default=256,
                   help="left context overlap between sliding windows (see embeddings docs)")
    p.add_argument("--per-base", action="store_true",
                   help="also write per-base arrays (NAME.DEPTH.per_base.npy, rows by index)")
    p.add_argument("--boundaries-bed", help="write the learned chunk boundaries here (BED6)")
    return p


def _check_window(p: argparse.ArgumentParser, window: int, overlap: int) -> None:
    if not 0 <= overlap < window:
        p.error(f"--overlap must be >= 0 and smaller than --window ({window}), got {overlap}")


def main_embed(argv: Sequence[str] | None = None) -> int:
    """``hnet-dna embed``; returns the exit code."""
    return _run(_main_embed, argv)


def _main_embed(argv: Sequence[str] | None) -> int:
    from contextlib import ExitStack

    from hnet_dna.outputs import atomic_output

    from .embed_io import EmbeddingWriter, iter_inputs, output_paths
    from .embeddings import Embedder, boundaries, boundaries_bed_outputs, write_boundaries_bed
    from .runner import PerBaseForward, load_model

    p = _embed_parser()
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    _check_window(p, args.window, args.overlap)
    depths = args.depth or ["final"]
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
    _check_outputs(outs, source, args.overwrite,
                   per_base_bytes + total.count * sum(dims.values()) * 4)
    bounds = []
    with ExitStack() as stack:
        tmp = {path: stack.enter_context(atomic_output(path)) for path in written}
        writer = EmbeddingWriter(args.out, dims, total.bases if args.per_base else None,
                                 target=tmp.__getitem__)
        for item, emb in zip(inputs.records, embedder.embed(inputs.sequences(), total.count),
                             strict=True):
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


# ---------------------------------------------------------------------------- track
def _track_parser() -> argparse.ArgumentParser:
    p = _parser("hnet-dna track", (
        "Genome-browser tracks: per-base log-likelihood (forward and strand-averaged) and "
        "per-stage boundary probability as bedGraph + bigWig, and the learned chunk "
        "boundaries as sorted, bgzipped, tabix-indexed BED6 per stage and strand."))
    _common(p)
    p.add_argument("--fasta", required=True, help="reference FASTA (plain or bgzip)")
    p.add_argument("--bed", help="regions to track (disjoint; default: every whole contig)")
    p.add_argument("--out", required=True,
                   help="output prefix: PREFIX.logp.fwd.bedGraph, PREFIX.logp.fwd.bw, ...")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--window", type=_window, default=1024,
                   help="bases per forward pass; longer regions use sliding windows")
    p.add_argument("--overlap", type=int, default=256,
                   help="left context overlap between sliding windows")
    p.add_argument("--forward-only", action="store_true",
                   help="forward strand only (half the work; no .mean / .rev / minus tracks)")
    p.add_argument("--no-bigwig", action="store_true", help="bedGraph only")
    return p


def main_track(argv: Sequence[str] | None = None) -> int:
    """``hnet-dna track``; returns the exit code."""
    return _run(_main_track, argv)


def _main_track(argv: Sequence[str] | None) -> int:
    from hnet_dna.genomics.fasta import Genome

    from .embeddings import Embedder
    from .runner import PerBaseForward, load_model
    from .tracks import BYTES_PER_BASE, signal_names, track_outputs, track_regions, write_tracks

    p = _track_parser()
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    _check_window(p, args.window, args.overlap)
    genome = Genome(args.fasta)
    regions = track_regions(genome, args.bed)
    model = load_model(args.model, resolve_device(args.device))
    stages, both = model.config.num_stages, not args.forward_only
    outs = track_outputs(args.out, stages, both, bigwig=not args.no_bigwig)
    bases = sum(r.end - r.start for r in regions)
    _check_outputs(outs, [args.fasta, f"{args.fasta}.fai", f"{args.fasta}.gzi", args.bed],
                   args.overwrite,
                   bases * BYTES_PER_BASE * len(signal_names(stages, both)))
    embedder = Embedder(PerBaseForward(model, args.batch_size), [], "mean", both, args.window,
                        args.overlap, progress=not args.no_progress, logp=True)
    lines = write_tracks(embedder, genome, regions, args.out, bigwig=not args.no_bigwig)
    print(f"tracked {len(regions)} regions, {bases} bases in {embedder.seconds:.1f} s "
          f"({embedder.bases_per_second:.0f} bases/s)")
    for name, n in lines.items():
        print(f"  {args.out}.{name}: {n} lines")
    print(f"wrote {len(outs)} files: " + ", ".join(str(o) for o in outs))
    return 0


# ---------------------------------------------------------------------------- score-variants
def _score_parser() -> argparse.ArgumentParser:
    p = _parser("hnet-dna score-variants", (
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
    p.add_argument("--seed", type=int, default=0, help="with --max-sites: subsampling seed")
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
        device=str(resolve_device(args.device)), progress=not args.no_progress)
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
    from .tasks import TASK_ROOT_ENV

    p = _parser("hnet-dna probe", (
        "Probe frozen embeddings (logistic regression, MLP) against a k-mer baseline and a "
        "random-init control on the same splits; optionally fine-tune. Several --task give one "
        "summary table."))
    _common(p, model_required=False)
    p.add_argument("--task", action="append", required=True, metavar="SPEC",
                   help="required, repeatable: csv:FOLDER (train/dev/test.csv), gb:FOLDER "
                        "(Genomic Benchmarks), gue:NAME or nt:NAME (under --task-root), or "
                        f"build:KIND with KIND in {TASK_KINDS}")
    p.add_argument("--task-root", default=None,
                   help=f"folder holding GUE / NT task folders (default: ${TASK_ROOT_ENV})")
    p.add_argument("--fasta", help="genome for build:KIND")
    p.add_argument("--gff", help="annotation for build:KIND")
    p.add_argument("--task-window", type=_positive_int, default=200,
                   help="build: window length")
    p.add_argument("--max-per-class", type=_positive_int, help="build: cap per class and split")
    p.add_argument("--block", type=_positive_int, default=20_000, help="build: split block size")
    p.add_argument("--random-init", action="store_true",
                   help="also probe a randomly initialised model of the same architecture")
    p.add_argument("--no-kmer", action="store_true", help="skip the k-mer baseline")
    p.add_argument("--kmer-k", default="4,5,6",
                   help="comma-separated k values of the baseline (each 1-8)")
    p.add_argument("--heads", default=",".join(HEADS), help=f"comma-separated, of {HEADS}")
    p.add_argument("--seeds", type=_positive_int, default=3,
                   help="seeds per head (logreg with a dev split is deterministic: one fit)")
    p.add_argument("--depth", action="append", help="embedding depth(s); default final")
    p.add_argument("--pool", default="mean", help="mean | chunk_mean | last")
    p.add_argument("--strand-average", action="store_true",
                   help="average forward and reverse-complement embeddings")
    p.add_argument("--window", type=_window, default=1024, help="embedding window")
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="also fine-tune the model end to end (0 = off)")
    p.add_argument("--finetune-lr", type=float, default=3e-4, help="fine-tuning learning rate")
    p.add_argument("--out", help="per-seed results of every task (.parquet); the summary is "
                                 "printed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def main_probe(argv: Sequence[str] | None = None) -> int:
    """``hnet-dna probe``; returns the exit code."""
    return _run(_main_probe, argv)


def _main_probe(argv: Sequence[str] | None) -> int:
    from hnet_dna.model.build import build_model
    from hnet_dna.outputs import atomic_output

    from .embeddings import POOLS, Embedder
    from .kmer_features import check_ks, kmer_features
    from .probing import HEADS, embed_task, finetune, probe_features, summarize
    from .runner import PerBaseForward, load_model

    p = _probe_parser()
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    heads = [h for h in args.heads.split(",") if h]
    if not heads or set(heads) - set(HEADS):
        p.error(f"--heads: choose from {HEADS}, got {args.heads!r}")
    if args.pool not in POOLS:
        p.error(f"--pool: choose from {POOLS}, got {args.pool!r}")
    try:
        ks = check_ks(int(k) for k in args.kmer_k.split(","))
    except ValueError as err:  # not integers, or out of range
        p.error(str(err) if isinstance(err, InputError) else
                f"--kmer-k: comma-separated integers, got {args.kmer_k!r}")
    if args.finetune_epochs < 0:
        p.error("--finetune-epochs must be >= 0")
    if not args.model and (args.random_init or args.finetune_epochs):
        p.error("--random-init and --finetune-epochs need --model")
    if not args.model and args.no_kmer:
        p.error("nothing to probe: give --model and/or keep the k-mer baseline")
    # every task read and checked, and the output checked, before any compute
    tasks = [_load_probe_task(spec, args, p) for spec in args.task]
    for task in tasks:
        task.require_every_class()
    if args.out:
        if Path(args.out).suffix != ".parquet":
            p.error(f"--out must end in .parquet, got {args.out}")
        sources = [src for t in tasks for src in t.sources.values()]
        _check_outputs([args.out], [*sources, args.fasta, args.gff], args.overwrite)
    models = []
    if args.model:
        device = resolve_device(args.device)
        model = load_model(args.model, device)
        models.append(("hnet", model))
        if args.random_init:
            control = build_model(model.config, seed=0, device=device).eval()
            models.append(("hnet_random_init", control))
    seeds = list(range(args.seeds))
    progress = not args.no_progress
    rows: list[dict] = []
    for task in tasks:
        print(f"task {task.name}: {task.summary()}")
        labels = {s: sp.labels for s, sp in task.splits.items()}
        task_rows: list[dict] = []
        if not args.no_kmer:
            feats = {s: kmer_features(sp.sequences, ks) for s, sp in task.splits.items()}
            task_rows += probe_features(f"kmer{''.join(map(str, ks))}", feats, labels, heads,
                                        seeds, progress=progress)
        for name, model in models:
            embedder = Embedder(PerBaseForward(model, args.batch_size), args.depth or ["final"],
                                args.pool, args.strand_average, args.window,
                                min(256, args.window // 4), progress=progress)
            feats = embed_task(embedder, task)
            print(f"{name}: embedded at {embedder.bases_per_second:.0f} bases/s")
            task_rows += probe_features(name, feats, labels, heads, seeds, progress=progress)
            if args.finetune_epochs:
                for seed in seeds:
                    m = finetune(model, task, args.finetune_epochs, args.finetune_lr,
                                 args.batch_size, seed=seed, progress=progress)
                    task_rows.append({"features": name, "head": "finetune", "seed": seed, **m})
        rows += [{"task": task.name, **r} for r in task_rows]
    table = pl.DataFrame(rows)
    if args.out:
        with atomic_output(args.out) as tmp:
            table.write_parquet(tmp)
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, float_precision=4, tbl_rows=-1):
        print(summarize(table))
    return 0


def _load_probe_task(spec: str, args, p: argparse.ArgumentParser):
    from .tasks import load_task

    if spec.startswith("build:"):
        from hnet_dna.genomics.fasta import Genome

        from .task_builders import TASK_KINDS, build_task

        kind = spec.split(":", 1)[1]
        if kind not in TASK_KINDS:
            p.error(f"--task {spec}: choose build:KIND with KIND in {TASK_KINDS}")
        if not (args.fasta and args.gff):
            p.error("build:KIND needs --fasta and --gff")
        return build_task(kind, Genome(args.fasta), args.gff, window=args.task_window,
                          block=args.block, max_per_class=args.max_per_class)
    return load_task(spec, args.task_root)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m hnet_dna.evaluation.cli
    commands = {"embed": main_embed, "track": main_track, "score-variants": main_score_variants,
                "probe": main_probe}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m hnet_dna.evaluation.cli {{{','.join(commands)}}} ...")
        sys.exit(2)
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
