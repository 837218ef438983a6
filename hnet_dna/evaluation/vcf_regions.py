"""The raw records of a VCF that fall in each genomic block (``score-variants`` in blocks).

A record belongs to the block holding its ``POS`` (a deletion that runs into the next block
still belongs to one block only). Records are the raw lines of :mod:`.vcf_io`, never
re-encoded. Two ways in, the same records and order out:

* **tabix**: a bgzipped VCF with a ``.tbi``/``.csi`` index beside it is read per block
  (``pysam.TabixFile.fetch``): a shard reads only its own blocks;
* **stream**: anything else (plain, gzip, BCF, no index) is read start to end, one record at a
  time, and each record dispatched to its block: memory holds one block, whatever the file size.

Working in blocks needs a sorted VCF (each contig's records together, ``POS`` ascending, as
``bcftools sort`` writes and as an index guarantees), so that a block's records are contiguous
and the merged shards come back in the file's own order; an unsorted file is refused at the
first out-of-order record. Contigs keep the file's order (``rank``: first appearance, or index
order), which need not be the FASTA's. Records on contigs that the FASTA lacks (scored as
``missing_contig``) form one block per contig in a whole-genome run; they must be declared
(``##contig`` or the index) so that every shard knows the blocks before reading.
"""

from __future__ import annotations

import bisect
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hnet_dna.errors import InputError
from hnet_dna.genomics.fasta import Genome

from .regions import Block
from .vcf_io import VCFFormatError, _quiet_htslib, open_vcf, record_where

#: block end of a contig the FASTA lacks (its length is unknown)
UNBOUNDED = 2**62


def tabix_index(vcf: str | os.PathLike) -> Path | None:
    """The ``.tbi``/``.csi`` index of a bgzipped VCF text file, if there is one."""
    for suffix in (".tbi", ".csi"):
        p = Path(f"{vcf}{suffix}")
        if p.is_file():
            return p
    return None


def declared_contigs(vcf: str | os.PathLike) -> list[str]:
    """Contigs the VCF names up front: its index's, else its ``##contig`` lines."""
    index = tabix_index(vcf)
    if index is not None:
        import pysam

        with _quiet_htslib(), pysam.TabixFile(str(vcf), index=str(index)) as tbx:
            return list(tbx.contigs)
    header, _ = open_vcf(vcf)
    return [line.split("ID=", 1)[1].split(",")[0].split(">")[0]
            for line in header.header if line.startswith("##contig=") and "ID=" in line]


def foreign_contigs(vcf: str | os.PathLike, genome: Genome) -> list[str]:
    """Contigs declared by the VCF that resolve to no FASTA record, sorted by name."""
    out = []
    for name in declared_contigs(vcf):
        try:
            genome.resolve(name)
        except KeyError:
            out.append(name)
    return sorted(set(out))


def with_foreign(blocks: Sequence[Block], foreign: Sequence[str]) -> list[Block]:
    """The genome blocks plus one unbounded block per foreign contig (whole-genome runs)."""
    n = len(blocks)
    return list(blocks) + [Block(n + i, c, 0, UNBOUNDED) for i, c in enumerate(foreign)]


@dataclass
class BlockRecords:
    """The records of one block: ``rank`` of its contig in the file, raw ``(lineno, line)``."""

    block: Block
    rank: int
    records: Iterator[tuple[int, str]]


class _Locator:
    """Finds the block of ``(VCF contig, POS)`` among the planned blocks."""

    def __init__(self, blocks: Sequence[Block], genome: Genome) -> None:
        self.genome = genome
        self.starts: dict[str, list[int]] = {}
        self.blocks: dict[str, list[Block]] = {}
        for b in blocks:
            self.starts.setdefault(b.contig, []).append(b.start)
            self.blocks.setdefault(b.contig, []).append(b)
        self._names: dict[str, str | None] = {}

    def fasta_name(self, contig: str) -> str | None:
        """The FASTA record of a VCF contig (aliases resolved), None if there is none."""
        if contig not in self._names:
            try:
                self._names[contig] = self.genome.resolve(contig)
            except KeyError:
                self._names[contig] = None
        return self._names[contig]

    def open_end(self, b: Block) -> bool:
        """Whether ``b`` is its contig's last block and reaches the contig end: it also takes
        the records past the end (REF running off the contig: ``out_of_range``)."""
        return b is self.blocks[b.contig][-1] and b.end >= self.genome.contigs.get(b.contig, 0)

    def find(self, contig: str, pos0: int) -> Block | None:
        name = self.fasta_name(contig) or contig
        starts = self.starts.get(name)
        if starts is None:
            return None
        i = bisect.bisect_right(starts, pos0) - 1
        if i < 0:
            return None
        b = self.blocks[name][i]
        return b if pos0 < b.end or self.open_end(b) else None


_UNSORTED = "the VCF is not sorted; --region/--shard need a sorted VCF (bcftools sort -Oz -W)"


def stream_blocks(vcf: str | os.PathLike, genome: Genome, blocks: Sequence[Block],
                  whole_genome: bool) -> Iterator[BlockRecords]:
    """Read ``vcf`` start to end; yield each block that has records, in file order.

    A block's records iterator must be used before the next block is asked for (the rest of
    it is skipped then). A record outside every block is skipped (a region selection); in a
    ``whole_genome`` run a record on an undeclared foreign contig is an error.
    """
    _, records = open_vcf(vcf)
    locate = _Locator(blocks, genome)
    ranks: dict[str, int] = {}
    last = {"contig": None, "pos": 0}

    def key(lineno: int, line: str) -> tuple[Block, int] | None:
        head = line.split("\t", 2)
        where = record_where(vcf, lineno, head)
        if len(head) < 3:
            raise VCFFormatError(f"{where}: expected at least 8 tab-separated columns")
        contig = head[0]
        try:
            pos = int(head[1])
        except ValueError:
            raise VCFFormatError(f"{where}: POS {head[1]!r} is not an integer") from None
        if contig != last["contig"]:
            if contig in ranks:
                raise InputError(f"{where}: records of contig {contig} appear again after "
                                 f"{last['contig']}: {_UNSORTED}")
            ranks[contig] = len(ranks)
            last["contig"] = contig
        elif pos < last["pos"]:
            raise InputError(f"{where}: POS {pos} after {last['pos']} on {contig}: {_UNSORTED}")
        last["pos"] = pos
        block = locate.find(contig, pos - 1)
        if block is None:
            if whole_genome and locate.fasta_name(contig) is None:
                raise InputError(f"{where}: contig {contig} is neither a FASTA record nor "
                                 "declared in the VCF header (##contig); a sharded run needs "
                                 "every contig known before it reads: declare it or index "
                                 "the VCF")
            return None
        return block, ranks[contig]

    tagged = ((lineno, line, key(lineno, line)) for lineno, line in records)
    selected = (t for t in tagged if t[2] is not None)
    seen: set[int] = set()
    for _, group in itertools.groupby(selected, key=lambda t: t[2][0].index):
        lineno, line, (block, rank) = next(group)
        if block.index in seen:  # two VCF contigs that name one FASTA record (chrM and MT)
            raise InputError(f"{vcf}:{lineno}: records of {block.contig}:{block.start + 1}-"
                             f"{block.end} come back after other records: two VCF contigs "
                             f"name FASTA record {block.contig}; rename one (bcftools annotate "
                             "--rename-chrs)")
        seen.add(block.index)
        yield BlockRecords(block, rank, itertools.chain(
            [(lineno, line)], ((n, text) for n, text, _ in group)))  # noqa: B031 - its rest


def tabix_blocks(vcf: str | os.PathLike, genome: Genome, blocks: Sequence[Block],
                 plan: Sequence[Block], index: Path) -> Iterator[BlockRecords]:
    """Each of ``blocks`` (a part of ``plan``) fetched through the index: the records whose
    POS lies in the block, with line number 0 (not known without reading the file)."""
    import pysam

    header, _ = open_vcf(vcf)
    locate = _Locator(plan, genome)
    with _quiet_htslib(), pysam.TabixFile(str(vcf), index=str(index)) as tbx:
        contigs = list(tbx.contigs)
        by_fasta: dict[str, str] = {}
        for c in contigs:
            name = locate.fasta_name(c) or c
            if name in by_fasta:
                raise InputError(f"{vcf}: contigs {by_fasta[name]} and {c} both name FASTA "
                                 f"record {name}; rename one (bcftools annotate --rename-chrs)")
            by_fasta[name] = c
        for block in blocks:
            name = by_fasta.get(block.contig)
            if name is None:  # no record on this contig
                yield BlockRecords(block, -1, iter(()))
                continue
            open_end = locate.open_end(block)

            def records(name=name, block=block, open_end=open_end
                        ) -> Iterator[tuple[int, str]]:
                lines = tbx.fetch(name, block.start) if open_end else \
                    tbx.fetch(name, block.start, block.end)
                for line in lines:
                    pos0 = int(line.split("\t", 2)[1]) - 1
                    if block.start <= pos0 and (open_end or pos0 < block.end):
                        yield 0, line.rstrip("\r") + header.newline
            yield BlockRecords(block, contigs.index(name), records())
