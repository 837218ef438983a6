"""Record selection of ``score-variants`` in blocks on a whole-genome-sized VCF: time and peak
memory to stream N records and dispatch them to blocks, and to fetch one shard's blocks
through a tabix index (issue 21). Run on its own:

    python benchmarks/bench_shards.py --records 4500000 [--folder /tmp/bench_shards]

The VCF is the real excerpt's 769 records (tests/data/evaluation/chr20_excerpt.vcf) repeated
on as many contigs as needed (the FASTA has only the first, so every other record is outside
the FASTA, as for a region selection of one chromosome); each record is classified exactly as
``score-variants --region`` / ``--shard`` classify them, without scoring.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import pysam

from hnet_dna.evaluation.regions import Shard, genome_blocks, select_regions, shard_blocks
from hnet_dna.evaluation.vcf_regions import stream_blocks, tabix_blocks
from hnet_dna.genomics.fasta import Genome

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "evaluation"


def make_vcf(path: Path, records: int) -> int:
    lines = (DATA / "chr20_excerpt.vcf").read_text().splitlines(keepends=True)
    head = [x for x in lines if x.startswith("#")]
    body = [x for x in lines if not x.startswith("#")]
    copies = -(-records // len(body))
    with open(path, "w") as fh:
        fh.writelines(head[:-1])
        fh.writelines(f"##contig=<ID=c{k:05d},length=30000>\n" for k in range(1, copies))
        fh.write(head[-1])
        fh.writelines(body)
        for k in range(1, copies):
            fh.write("".join(f"c{k:05d}" + x[1:] for x in body))
    return copies * len(body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=4_500_000)
    p.add_argument("--folder", default="/tmp/bench_shards")
    p.add_argument("--shards", type=int, default=100)
    args = p.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    vcf = folder / "big.vcf"
    t0 = time.perf_counter()
    n = make_vcf(vcf, args.records)
    made = time.perf_counter() - t0
    genome = Genome(DATA / "chr20_excerpt.fa", backend="memory")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # stream: every record read and placed; a region of the one FASTA contig selected
    plan = genome_blocks(genome.contigs, select_regions(["z"], None, genome.contigs), 10_000)
    t0 = time.perf_counter()
    kept = sum(sum(1 for _ in found.records) for found in stream_blocks(vcf, genome, plan, False))
    stream_s = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # tabix: one shard of the whole-genome plan fetched through the index
    gz = folder / "big.vcf.gz"
    t0 = time.perf_counter()
    pysam.tabix_compress(str(vcf), str(gz), force=True)
    pysam.tabix_index(str(gz), preset="vcf", force=True)
    index_s = time.perf_counter() - t0
    full = genome_blocks(genome.contigs, None, 10_000)
    mine = shard_blocks(full, Shard(0, 1))
    t0 = time.perf_counter()
    fetched = sum(sum(1 for _ in f.records)
                  for f in tabix_blocks(gz, genome, mine, full, Path(f"{gz}.tbi")))
    tabix_s = time.perf_counter() - t0
    result = {"records": n, "vcf_mb": round(vcf.stat().st_size / 2**20), "make_s": round(made, 1),
              "stream_s": round(stream_s, 1), "stream_records_per_s": round(n / stream_s),
              "stream_kept": kept, "peak_rss_before_mb": round(rss0),
              "peak_rss_after_stream_mb": round(rss1), "bgzip_tabix_s": round(index_s, 1),
              "tabix_fetch_s": round(tabix_s, 2), "tabix_fetched": fetched}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
