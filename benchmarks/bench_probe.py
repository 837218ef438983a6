"""Time of ``hnet-dna probe`` heads on a GUE-sized task: the old probe against the current one.

Usage::

    python benchmarks/bench_probe.py                       # 10k train / 2k dev / 6k test
    python benchmarks/bench_probe.py --old-train 2000      # also time the old code path on 2k
    python benchmarks/bench_probe.py --threads 2 --out benchmarks/results/probe.json

Task: 100-base windows of two bundled yeast genomes (*S. kudriavzevii* = 0 vs *S. mikatae* = 1),
a real label of the "fungi species" kind in GUE+. Windows are drawn at random positions without
N; contigs are dealt to train / dev / test, so no split shares a chromosome. The task is written
as GUE CSVs (``sequence,label``) and read back through ``load_task``, as the CLI does.

Heads timed (wall clock and process CPU time, after the features exist):

* ``kmer456 logreg``: current = sparse L2-normalised 4/5/6-mer counts, C chosen on dev;
  old = dense per-block frequencies, standardised, ``LogisticRegressionCV`` 7 C x 5 folds, lbfgs,
  ``max_iter=3000`` (the code before issue 12 §4, reproduced here verbatim);
* ``hnet logreg``: with ``--model``, the pooled final embeddings of that model (embedding time
  reported apart). Without one, a stand-in of the same shape as the paper DNA H-Net's pooled
  embedding (``--dims``, 512): ``tanh`` of a fixed random projection of each sequence's 3-6-mer
  frequencies, i.e. dense, correlated features of the real sequences. Embedding 18k sequences
  with even a tiny H-Net takes hours on 2 busy cores, and the head's cost depends only on the
  feature matrix's shape and conditioning.

The old path is slow: ``--old-train N`` times it on the first N training rows (test unchanged)
and also prints it scaled linearly to the full train size, a rough estimate only (on 1k rows it
over-estimated the measured 10k time by 45 %); ``--old-train 10000`` measures it. MCC of both
paths is reported next to the time. The old CLI fitted the logreg once per seed (3 by default);
the times here are for one fit.

Measured (``benchmarks/results/probe.json``, 2 cores shared with other jobs, load ~10): old
k-mer logreg 258 s + dense features 55 s, old embedding logreg 38 s; new: 4.7 s features +
32 s k-mer logreg, 17 s embedding logreg; MCC 0.5540 -> 0.5547 and 0.2673 -> 0.2663.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def build_species_task(folder: Path, n_train: int, n_dev: int, n_test: int, length: int,
                       seed: int = 0) -> None:
    """Write train/dev/test.csv of the two-species task described in the module docstring."""
    from hnet_dna.genomics.corpora import BUNDLED_DIR
    from hnet_dna.genomics.fasta import Genome

    rng = np.random.default_rng(seed)
    genomes = [Genome(next(BUNDLED_DIR.glob(f"{sp}*_genomic.fna.gz"))) for sp in ("Skud", "Smik")]
    # per species: contigs shuffled, the first ~60 % of bases to train, ~12 % dev, rest test
    fractions = {"train": 0.6, "dev": 0.12, "test": 0.28}
    wanted = {"train": n_train, "dev": n_dev, "test": n_test}
    rows: dict[str, list[str]] = {s: [] for s in fractions}
    for label, genome in enumerate(genomes):
        contigs = list(genome.contigs)
        rng.shuffle(contigs)
        total = sum(genome.contigs.values())
        assigned, acc = {s: [] for s in fractions}, 0
        edges = np.cumsum(list(fractions.values())) * total
        for c in contigs:
            split = list(fractions)[int(np.searchsorted(edges, acc, side="right"))]
            assigned[split].append(c)
            acc += genome.contigs[c]
        for split, n in wanted.items():
            pool = assigned[split] or contigs  # a tiny genome: fall back to all contigs
            sizes = np.array([genome.contigs[c] for c in pool], dtype=float)
            got = 0
            while got < n // 2:
                c = pool[rng.choice(len(pool), p=sizes / sizes.sum())]
                start = int(rng.integers(0, genome.contigs[c] - length))
                seq = genome.fetch(c, start, start + length).upper()
                if "N" in seq:
                    continue
                rows[split].append(f"{seq},{label}")
                got += 1
    for split, lines in rows.items():
        order = rng.permutation(len(lines))
        (folder / f"{split}.csv").write_text(
            "sequence,label\n" + "\n".join(lines[i] for i in order) + "\n")


def old_kmer_features(sequences, ks=(4, 5, 6)) -> np.ndarray:
    """The k-mer features before issue 12 §4: dense float32, per-block frequencies."""
    from hnet_dna.evaluation.kmer_features import kmer_counts, kmer_dim
    from hnet_dna.genomics.alphabet import encode

    out = np.zeros((len(sequences), kmer_dim(ks)), dtype=np.float32)
    for i, seq in enumerate(sequences):
        ids = encode(seq)[0]
        col = 0
        for k in ks:
            c = kmer_counts(ids, k)
            out[i, col:col + 4**k] = c / c.sum() if c.sum() > 0 else c
            col += 4**k
    return out


def old_logreg(X, y, Xtest, seed: int = 0) -> np.ndarray:
    """The logreg head before issue 12 §4; returns test probabilities."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = make_pipeline(StandardScaler(), LogisticRegressionCV(
            Cs=np.logspace(-4, 2, 7), cv=StratifiedKFold(5, shuffle=True, random_state=seed),
            scoring="neg_log_loss", max_iter=3000)).fit(X, y)
    return clf.predict_proba(Xtest)


def stand_in_features(task, dims: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Dense float32 ``tanh(F W)``: F = 3-6-mer frequencies, W a fixed Gaussian projection."""
    from hnet_dna.evaluation.kmer_features import kmer_features

    ks = (3, 4, 5, 6)
    w = None
    out = {}
    for split, sp in task.splits.items():
        f = kmer_features(sp.sequences, ks)
        if w is None:
            w = np.random.default_rng(seed).normal(0, 4.0, (f.shape[1], dims))
        out[split] = np.tanh(f @ w).astype(np.float32)
    return out


def timed(fn, *args, **kwargs):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--train", type=int, default=10_000, help="training sequences")
    ap.add_argument("--dev", type=int, default=2_000, help="dev sequences")
    ap.add_argument("--test", type=int, default=6_000, help="test sequences")
    ap.add_argument("--length", type=int, default=100, help="bases per sequence")
    ap.add_argument("--old-train", type=int, default=0,
                    help="also time the old code path on this many training rows (0 = skip)")
    ap.add_argument("--model", help="saved model for the H-Net features (default: a stand-in)")
    ap.add_argument("--dims", type=int, default=512, help="stand-in feature dimensions")
    ap.add_argument("--threads", type=int, default=2, help="BLAS / torch threads")
    ap.add_argument("--no-hnet", action="store_true", help="k-mer heads only")
    ap.add_argument("--out", help="write the results here as JSON")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import torch

    from hnet_dna.evaluation.kmer_features import kmer_features
    from hnet_dna.evaluation.metrics import classification_metrics
    from hnet_dna.evaluation.probing import probe_features
    from hnet_dna.evaluation.tasks import load_task

    torch.set_num_threads(args.threads)
    results: dict = {"config": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        build_species_task(Path(tmp), args.train, args.dev, args.test, args.length)
        task = load_task(f"csv:{tmp}")
    y = {s: sp.labels for s, sp in task.splits.items()}
    print(f"task: {task.summary()}")

    feats, w, c = timed(lambda: {s: kmer_features(sp.sequences, (4, 5, 6))
                                 for s, sp in task.splits.items()})
    results["kmer_features_s"] = w
    [row], w2, c2 = timed(probe_features, "kmer456", feats, y, ("logreg",), (0,))
    results["new_kmer_logreg"] = {"wall_s": w + w2, "cpu_s": c + c2, "mcc": row["mcc"],
                                  "C": row["C"]}
    print(f"new kmer456 logreg: {w + w2:.1f} s wall ({w:.1f} s features), MCC {row['mcc']:.4f}")

    if not args.no_hnet:
        if args.model:
            from hnet_dna.evaluation.embeddings import Embedder
            from hnet_dna.evaluation.probing import embed_task
            from hnet_dna.evaluation.runner import PerBaseForward, load_model

            emb = Embedder(PerBaseForward(load_model(args.model), 64), ["final"], progress=False)
            hfeats, w, _ = timed(embed_task, emb, task)
            results["hnet_embed_s"] = w
            print(f"hnet embeddings ({hfeats['train'].shape[1]} dims): {w:.1f} s")
        else:
            hfeats = stand_in_features(task, args.dims)
        [row], w, c = timed(probe_features, "hnet", hfeats, y, ("logreg",), (0,))
        results["new_hnet_logreg"] = {"wall_s": w, "cpu_s": c, "mcc": row["mcc"], "C": row["C"],
                                      "dims": int(hfeats["train"].shape[1])}
        print(f"new hnet logreg ({hfeats['train'].shape[1]} dims): {w:.1f} s wall, "
              f"MCC {row['mcc']:.4f}")

    if args.old_train:
        n = args.old_train
        scale = len(task.splits["train"]) / n
        ofeats, w, c = timed(lambda: {s: old_kmer_features(sp.sequences)
                                      for s, sp in task.splits.items()})
        proba, w2, c2 = timed(old_logreg, ofeats["train"][:n], y["train"][:n], ofeats["test"])
        m = classification_metrics(y["test"], proba.argmax(1), proba)
        results["old_kmer_logreg"] = {"train_rows": n, "features_s": w, "fit_wall_s": w2,
                                      "fit_cpu_s": c2, "mcc": m["mcc"],
                                      "fit_wall_s_scaled": w2 * scale}
        print(f"old kmer456 logreg on {n} train rows: {w2:.1f} s fit (x{scale:.1f} -> "
              f">= {w2 * scale:.0f} s at full size), MCC {m['mcc']:.4f}")
        if not args.no_hnet:
            proba, w, c = timed(old_logreg, hfeats["train"][:n], y["train"][:n], hfeats["test"])
            m = classification_metrics(y["test"], proba.argmax(1), proba)
            results["old_hnet_logreg"] = {"train_rows": n, "fit_wall_s": w, "fit_cpu_s": c,
                                          "mcc": m["mcc"], "fit_wall_s_scaled": w * scale}
            print(f"old hnet logreg on {n} train rows: {w:.1f} s (x{scale:.1f} -> "
                  f">= {w * scale:.0f} s), MCC {m['mcc']:.4f}")
        # the new path on the same reduced train set: MCC comparable to the old one
        sub = {"train": feats["train"][:n], "dev": feats["dev"], "test": feats["test"]}
        suby = {"train": y["train"][:n], "dev": y["dev"], "test": y["test"]}
        [row] = probe_features("kmer456", sub, suby, ("logreg",), (0,))
        results["new_kmer_logreg_same_rows"] = {"train_rows": n, "mcc": row["mcc"]}
        print(f"new kmer456 logreg on the same {n} train rows: MCC {row['mcc']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
