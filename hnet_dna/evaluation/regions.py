"""Region selection and the deterministic split of inference work into genomic blocks.

``--region chr:start-end`` (samtools style: 1-based, inclusive; ``chr`` alone is the whole
contig, ``chr:start`` runs to its end, thousands separators allowed) and ``--regions-bed``
(0-based half-open BED, plain or gzip) select the genome regions a command works on; names
resolve through the ``chr`` aliases to the FASTA's spelling. Overlapping regions and contigs
that the FASTA lacks are refused, naming both regions / the contig.

The work is cut into **blocks**: the selected regions (whole contigs by default) intersected
with a fixed grid of ``block_size`` bases per contig, in FASTA contig order (``track``: the
sorted order its outputs need). A block is the unit of sharding and of resuming: ``--shard
I/N`` takes the blocks ``I, I + N, I + 2N, ...`` (round-robin, so dense and sparse parts of a
genome spread over the shards); under ``torchrun`` (``WORLD_SIZE > 1``) rank ``RANK`` takes
``RANK/WORLD_SIZE`` and the GPU ``LOCAL_RANK``. The blocks do not depend on ``N``: a rerun
with another shard count reuses every finished block.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hnet_dna.errors import InputError
from hnet_dna.genomics.aliases import resolve_contig
from hnet_dna.genomics.intervals import Interval, read_bed

#: default block: about 1,500 variants of a whole-genome call set, 3,100 blocks on hg38
DEFAULT_BLOCK_SIZE = 1_000_000
_REGION = re.compile(r"^(?P<contig>[^:\s]+)(?::(?P<start>[\d,]+)(?:-(?P<end>[\d,]+))?)?$")


@dataclass(frozen=True)
class Block:
    """``contig[start:end]`` (0-based half-open), block number ``index`` of the plan."""

    index: int
    contig: str
    start: int
    end: int
    region_start: bool = True  # the block begins one of the selected regions (not a grid cut)


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based); ``device_index``: the GPU of a torchrun rank."""

    index: int = 0
    count: int = 1
    device_index: int | None = None

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_region(text: str, contigs: Mapping[str, int]) -> Interval:
    """``chr``, ``chr:start`` or ``chr:start-end`` (1-based inclusive) -> 0-based interval."""
    m = _REGION.match(text.strip())
    if m is None:
        raise InputError(f"--region {text!r}: expected CONTIG, CONTIG:START or "
                         "CONTIG:START-END (1-based, inclusive)")
    try:
        contig = resolve_contig(m["contig"], contigs, "the FASTA")
    except KeyError as err:
        raise InputError(f"--region {text!r}: {err.args[0]}") from None
    length = contigs[contig]
    start = int(m["start"].replace(",", "")) if m["start"] else 1
    end = int(m["end"].replace(",", "")) if m["end"] else length
    if start < 1 or end < start:
        raise InputError(f"--region {text!r}: need 1 <= START <= END (1-based, inclusive)")
    if start > length:
        raise InputError(f"--region {text!r}: START {start} is past the end of {contig} "
                         f"({length} bases)")
    return Interval(contig, start - 1, min(end, length), text)


def select_regions(regions: Sequence[str] = (), bed: str | os.PathLike | None = None,
                   contigs: Mapping[str, int] | None = None) -> list[Interval] | None:
    """The ``--region`` and ``--regions-bed`` selection, sorted in ``contigs`` order; None when
    nothing is selected (the whole genome). Overlaps are refused, naming both regions."""
    if not regions and bed is None:
        return None
    assert contigs is not None
    picked = [parse_region(r, contigs) for r in regions]
    if bed is not None:
        picked += [Interval(iv.contig, iv.start, iv.end, f"{bed} {iv.contig}:{iv.start}-"
                            f"{iv.end}") for iv in read_bed(bed, contigs)]
    if not picked:
        raise InputError(f"{bed}: no regions")
    order = {c: i for i, c in enumerate(contigs)}
    picked.sort(key=lambda iv: (order[iv.contig], iv.start, iv.end))
    for a, b in zip(picked, picked[1:], strict=False):
        if a.contig == b.contig and b.start < a.end:
            raise InputError(f"regions {a.label!r} ({a.contig}:{a.start + 1}-{a.end}) and "
                             f"{b.label!r} ({b.contig}:{b.start + 1}-{b.end}) overlap; give "
                             "disjoint regions (e.g. bedtools merge)")
    return picked


def plan_blocks(regions: Sequence[tuple[str, int, int]], block_size: int = DEFAULT_BLOCK_SIZE
                ) -> list[Block]:
    """``(contig, start, end)`` regions (in output order) cut at multiples of ``block_size``."""
    if block_size < 1:
        raise InputError(f"--block-size must be at least 1, got {block_size}")
    blocks: list[Block] = []
    for contig, start, end in regions:
        a = start
        while a < end:
            b = min((a // block_size + 1) * block_size, end)
            blocks.append(Block(len(blocks), contig, a, b, a == start))
            a = b
    return blocks


def genome_blocks(contigs: Mapping[str, int], selection: Sequence[Interval] | None,
                  block_size: int = DEFAULT_BLOCK_SIZE) -> list[Block]:
    """Blocks of the selection, or of every whole contig, in FASTA contig order."""
    regions = ([(c, 0, n) for c, n in contigs.items()] if selection is None else
               [(iv.contig, iv.start, iv.end) for iv in selection])
    return plan_blocks(regions, block_size)


def shard_blocks(blocks: Sequence[Block], shard: Shard) -> list[Block]:
    """The blocks of ``shard``: round-robin by block number."""
    return [b for b in blocks if b.index % shard.count == shard.index]


def parse_shard(text: str) -> Shard:
    """``I/N`` with ``0 <= I < N`` (argparse type of ``--shard``)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"expected I/N (shard I of N, 0-based), got {text!r}")
    i, n = int(m[1]), int(m[2])
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"need 0 <= I < N, got {text!r} (a SLURM array "
                                         "--array=0-(N-1) gives I=$SLURM_ARRAY_TASK_ID)")
    return Shard(i, n)


def resolve_shard(shard: Shard | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """``--shard``, or the torchrun rank (``RANK``/``WORLD_SIZE``, GPU ``LOCAL_RANK``) when the
    command runs under torchrun with several processes; None for a single process."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return shard
    if shard is not None:
        raise InputError(f"--shard {shard} under torchrun (WORLD_SIZE={world}): the ranks "
                         "shard the work themselves; drop --shard")
    return Shard(int(env["RANK"]), world, int(env.get("LOCAL_RANK", "0")))


def _block_size(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of bases, got {value}")
    return value


def add_region_options(p: argparse.ArgumentParser) -> None:
    """``--region``, ``--regions-bed``, ``--shard`` and ``--block-size`` (one definition for
    ``score-variants``, ``embed`` and ``track``)."""
    g = p.add_argument_group("regions and shards (whole-genome runs; see README)")
    g.add_argument("--region", action="append", metavar="CHR[:START-END]",
                   help="work on this region only (1-based inclusive, samtools style; "
                        "repeatable)")
    g.add_argument("--regions-bed", metavar="BED",
                   help="work on these regions only (0-based half-open BED)")
    g.add_argument("--shard", type=parse_shard, metavar="I/N",
                   help="do shard I of N (0-based) of the genome blocks and leave the parts "
                        "for `hnet-dna merge`; automatic under torchrun")
    g.add_argument("--block-size", type=_block_size, default=DEFAULT_BLOCK_SIZE,
                   help="bases per block: the unit of sharding and of resuming")


def block_mode(args: argparse.Namespace) -> bool:
    """Whether the command works in blocks (regions, shards or torchrun ranks given)."""
    return bool(args.region or args.regions_bed or args.shard is not None
                or int(os.environ.get("WORLD_SIZE", "1")) > 1)
