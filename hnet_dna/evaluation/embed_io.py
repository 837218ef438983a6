"""Inputs and outputs of ``hnet-dna embed``.

Inputs: a FASTA with BED intervals (``genomics.read_bed``, errors name the line) or a CSV/TSV
with a ``sequence`` column (optional ``name``/``id``).

Outputs:

* ``NAME.parquet``: one row per sequence, columns ``name, contig, start, end, length`` and one
  ``emb_<depth>`` fixed-size float32 array column per depth;
* ``NAME.npy``: ``(n, D)`` float32 of the only depth (``NAME.<depth>.npy`` for several) plus
  ``NAME.index.tsv`` with the row metadata;
* with per-base output, ``NAME.<depth>.per_base.npy``: ``(total bases, D)`` float32, the rows of
  sequence ``i`` starting at the index column ``offset``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from hnet_dna.genomics.alphabet import encode
from hnet_dna.genomics.fasta import Genome
from hnet_dna.genomics.intervals import read_bed

from .embeddings import Embedding
from .tasks import read_sequence_table


@dataclass(frozen=True)
class InputRecord:
    name: str
    contig: str  # for table inputs: the sequence name (BED tracks then use it as chrom)
    start: int
    end: int


@dataclass
class Totals:
    count: int
    bases: int


class Inputs:
    def __init__(self, records: list[InputRecord], genome: Genome | None,
                 seqs: list[str] | None) -> None:
        self.records, self._genome, self._seqs = records, genome, seqs

    def sequences(self) -> Iterator[tuple[str, np.ndarray]]:
        for i, rec in enumerate(self.records):
            if self._genome is not None:
                yield rec.name, self._genome.fetch_encoded(rec.contig, rec.start, rec.end)[0]
            else:
                yield rec.name, encode(self._seqs[i])[0]


def iter_inputs(fasta: str | None, bed: str | None, sequences: str | None
                ) -> tuple[Inputs, Totals]:
    """The records to embed, from FASTA + BED or from a sequence table (exactly one)."""
    if (sequences is None) == (bed is None):
        raise ValueError("give either --fasta with --bed, or --sequences")
    if bed is not None:
        if fasta is None:
            raise ValueError("--bed needs --fasta")
        genome = Genome(fasta)
        ivs = read_bed(bed, genome.contigs)
        records = [InputRecord(iv.label or f"{iv.contig}:{iv.start}-{iv.end}", iv.contig,
                               iv.start, iv.end) for iv in ivs]
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


class EmbeddingWriter:
    """Collect pooled vectors (and stream per-base rows into memory-mapped ``.npy``)."""

    def __init__(self, out: str | os.PathLike, dims: dict[str, int],
                 per_base_total: int | None = None) -> None:
        self.out = Path(out)
        if self.out.suffix not in (".parquet", ".npy"):
            raise ValueError(f"--out must end in .parquet or .npy, got {self.out}")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.dims = dims
        self.rows: list[dict] = []
        self.pooled: dict[str, list[np.ndarray]] = {d: [] for d in dims}
        self.per_base = {}
        self.offset = 0
        if per_base_total is not None:
            for d, dim in dims.items():
                self.per_base[d] = np.lib.format.open_memmap(
                    self._path(f".{d}.per_base.npy"), mode="w+", dtype=np.float32,
                    shape=(per_base_total, dim))

    def _path(self, suffix: str) -> Path:
        return self.out.with_name(self.out.stem + suffix)

    def add(self, rec: InputRecord, emb: Embedding) -> None:
        row = {"name": rec.name, "contig": rec.contig, "start": rec.start, "end": rec.end,
               "length": emb.length}
        if self.per_base:
            row["offset"] = self.offset
            for d, arr in self.per_base.items():
                arr[self.offset:self.offset + emb.length] = emb.per_base[d]
            self.offset += emb.length
        self.rows.append(row)
        for d in self.dims:
            self.pooled[d].append(emb.pooled[d])

    def close(self) -> list[Path]:
        written = []
        index = pl.DataFrame(self.rows) if self.rows else pl.DataFrame()
        if self.out.suffix == ".parquet":
            cols = [pl.Series(f"emb_{d}", np.stack(v) if v else np.zeros((0, self.dims[d]),
                                                                         np.float32),
                              dtype=pl.Array(pl.Float32, self.dims[d]))
                    for d, v in self.pooled.items()]
            index.with_columns(cols).write_parquet(self.out)
            written.append(self.out)
        else:
            for d, v in self.pooled.items():
                path = self.out if len(self.dims) == 1 else self._path(f".{d}.npy")
                np.save(path, np.stack(v).astype(np.float32))
                written.append(path)
            index.write_csv(self._path(".index.tsv"), separator="\t")
            written.append(self._path(".index.tsv"))
        for d, arr in self.per_base.items():
            arr.flush()
            written.append(self._path(f".{d}.per_base.npy"))
        return written
