"""Inputs and outputs of ``hnet-dna embed``.

Inputs: a FASTA with BED intervals (``genomics.read_bed``, errors name the line) or a CSV/TSV
with a ``sequence`` column (optional ``name``/``id``). A BED region with ``-`` in the strand
column (6th) is embedded as the reverse complement, i.e. in its own reading direction: per-base
rows run from the region's end to its start, and its boundaries are mapped back to genome
positions with the strands swapped.

Outputs:

* ``NAME.parquet``: one row per sequence, columns ``name, contig, start, end, strand, length``
  and one ``emb_<depth>`` fixed-size float32 array column per depth;
* ``NAME.npy``: ``(n, D)`` float32 of the only depth (``NAME.<depth>.npy`` for several) plus
  ``NAME.index.tsv`` with the row metadata;
* with per-base output, ``NAME.<depth>.per_base.npy``: ``(total bases, D)`` float32, the rows of
  sequence ``i`` starting at the index column ``offset``.

Every output is written to a temporary file beside it and renamed into place at the end
(:func:`hnet_dna.outputs.atomic_output`); :func:`output_paths` lists them so the command can
check them all before any work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from hnet_dna.errors import InputError
from hnet_dna.genomics.alphabet import encode, reverse_complement
from hnet_dna.genomics.fasta import Genome
from hnet_dna.genomics.intervals import BedFormatError, bed_data_lines, read_bed

from .embeddings import Embedding
from .tasks import read_sequence_table


@dataclass(frozen=True)
class InputRecord:
    name: str
    contig: str  # for table inputs: the sequence name (BED tracks then use it as chrom)
    start: int
    end: int
    strand: str = "+"  # '-': the reverse complement of contig[start:end] is embedded


@dataclass
class Totals:
    count: int
    bases: int


class Inputs:
    def __init__(self, records: list[InputRecord], genome: Genome | None,
                 seqs: list[str] | None) -> None:
        self.records, self._genome, self._seqs = records, genome, seqs

    @property
    def genome(self) -> Genome | None:
        return self._genome

    def sequences(self, indices: Sequence[int] | None = None
                  ) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, base ids)`` of every record, or of the records ``indices`` (a block)."""
        for i in range(len(self.records)) if indices is None else indices:
            rec = self.records[i]
            if self._genome is not None:
                ids = self._genome.fetch_encoded(rec.contig, rec.start, rec.end)[0]
                yield rec.name, reverse_complement(ids) if rec.strand == "-" else ids
            else:
                yield rec.name, encode(self._seqs[i])[0]


def read_bed_strands(path: str | os.PathLike) -> list[str]:
    """The strand column (6th) of every data line of a BED, in order: ``+``, ``-``, or ``+``
    where the column is absent or ``.``; anything else raises :class:`BedFormatError`.

    The data lines are those :func:`hnet_dna.genomics.intervals.read_bed` reads
    (:func:`~hnet_dna.genomics.intervals.bed_data_lines`), so the lists line up.
    """
    strands = []
    for lineno, fields in bed_data_lines(path):
        strand = fields[5] if len(fields) > 5 else "."
        if strand not in ("+", "-", "."):
            raise BedFormatError(f"{path}:{lineno}: strand (column 6) must be +, - or ., "
                                 f"got {strand!r}")
        strands.append("-" if strand == "-" else "+")
    return strands


def iter_inputs(fasta: str | None, bed: str | None, sequences: str | None
                ) -> tuple[Inputs, Totals]:
    """The records to embed, from FASTA + BED or from a sequence table (exactly one)."""
    if (sequences is None) == (bed is None):
        raise InputError("give either --fasta with --bed, or --sequences")
    if bed is not None:
        if fasta is None:
            raise InputError("--bed needs --fasta")
        genome = Genome(fasta)
        ivs = read_bed(bed, genome.contigs)
        strands = read_bed_strands(bed)
        records = [InputRecord(iv.label or f"{iv.contig}:{iv.start}-{iv.end}({strand})",
                               iv.contig, iv.start, iv.end, strand)
                   for iv, strand in zip(ivs, strands, strict=True)]
        inputs = Inputs(records, genome, None)
    else:
        df = read_sequence_table(sequences)
        col = next((c for c in ("name", "id") if c in df.columns), None)
        names = df[col].to_list() if col else [f"seq{i}" for i in range(df.height)]
        seqs = df["sequence"].to_list()
        records = [InputRecord(str(n), str(n), 0, len(s)) for n, s in zip(names, seqs,
                                                                            strict=True)]
        inputs = Inputs(records, None, seqs)
    return inputs, Totals(len(records), sum(r.end - r.start for r in records))


def output_paths(out: str | os.PathLike, depths: Sequence[str], per_base: bool) -> list[Path]:
    """Every file :class:`EmbeddingWriter` writes for ``out`` (checked before any work)."""
    out = Path(out)
    if out.suffix not in (".parquet", ".npy"):
        raise InputError(f"--out must end in .parquet or .npy, got {out}")

    def sib(suffix: str) -> Path:
        return out.with_name(out.stem + suffix)

    if out.suffix == ".parquet":
        paths = [out]
    else:
        paths = [out] if len(depths) == 1 else [sib(f".{d}.npy") for d in depths]
        paths.append(sib(".index.tsv"))
    if per_base:
        paths += [sib(f".{d}.per_base.npy") for d in depths]
    return paths


class EmbeddingWriter:
    """Collect pooled vectors (and stream per-base rows into memory-mapped ``.npy``).

    ``target(path)`` gives the file to actually write for output ``path`` (the command passes
    the temporaries of :func:`hnet_dna.outputs.atomic_output`); by default ``path`` itself.
    """

    def __init__(self, out: str | os.PathLike, dims: dict[str, int],
                 per_base_total: int | None = None,
                 target: Callable[[Path], Path] | None = None) -> None:
        self.out = Path(out)
        self.paths = output_paths(self.out, list(dims), per_base_total is not None)
        self.target = target or (lambda p: p)
        self.dims = dims
        self.rows: list[dict] = []
        self.pooled: dict[str, list[np.ndarray]] = {d: [] for d in dims}
        self.per_base = {}
        self.offset = 0
        if per_base_total is not None:
            for d, dim in dims.items():
                self.per_base[d] = np.lib.format.open_memmap(
                    self.target(self._path(f".{d}.per_base.npy")), mode="w+", dtype=np.float32,
                    shape=(per_base_total, dim))

    def _path(self, suffix: str) -> Path:
        return self.out.with_name(self.out.stem + suffix)

    def add(self, rec: InputRecord, emb: Embedding) -> None:
        row = {"name": rec.name, "contig": rec.contig, "start": rec.start, "end": rec.end,
               "strand": rec.strand, "length": emb.length}
        if self.per_base:
            row["offset"] = self.offset
            for d, arr in self.per_base.items():
                arr[self.offset:self.offset + emb.length] = emb.per_base[d]
            self.offset += emb.length
        self.rows.append(row)
        for d in self.dims:
            self.pooled[d].append(emb.pooled[d])

    def frame(self) -> pl.DataFrame:
        """The rows so far with one ``emb_<depth>`` array column per depth."""
        index = pl.DataFrame(self.rows) if self.rows else pl.DataFrame()
        return index.with_columns(_vectors(self.pooled, self.dims))

    def close(self) -> list[Path]:
        write_pooled(self.out, self.frame(), self.dims, self.target)
        for arr in self.per_base.values():
            arr.flush()
        self.per_base = {}  # drop the memory maps before the files are renamed
        return self.paths


def _vectors(pooled: dict[str, list[np.ndarray]], dims: dict[str, int]) -> list[pl.Series]:
    return [pl.Series(f"emb_{d}", np.stack(v) if v else np.zeros((0, dims[d]), np.float32),
                      dtype=pl.Array(pl.Float32, dims[d])) for d, v in pooled.items()]


def write_pooled(out: str | os.PathLike, frame: pl.DataFrame, dims: dict[str, int],
                 target: Callable[[Path], Path] | None = None) -> None:
    """Write :meth:`EmbeddingWriter.frame` as ``NAME.parquet`` or ``NAME[.depth].npy`` +
    ``NAME.index.tsv`` (see the module doc); ``target`` as in :class:`EmbeddingWriter`."""
    out, target = Path(out), target or (lambda p: p)
    if out.suffix == ".parquet":
        frame.write_parquet(target(out))
        return
    for d, dim in dims.items():
        path = out if len(dims) == 1 else out.with_name(f"{out.stem}.{d}.npy")
        vectors = frame[f"emb_{d}"].to_numpy() if frame.height else np.zeros((0, dim))
        # a file object: np.save would append ".npy" to a temporary's name
        with open(target(path), "wb") as fh:
            np.save(fh, np.asarray(vectors, dtype=np.float32).reshape(-1, dim))
    frame.drop([f"emb_{d}" for d in dims]).write_csv(
        target(out.with_name(out.stem + ".index.tsv")), separator="\t")
