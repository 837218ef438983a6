"""End-to-end VCF scoring: read, check, score in batches, write the annotated VCF and a table.

The output VCF is the input with INFO fields added (``Number=A``, one value per ALT, ``.``
where an ALT was not scored) and described in the header; every input record is written, and
``HNET_STATUS`` says for each ALT whether it was scored (``ok``) or why not (a record whose ALT
is ``.`` has no per-ALT slot and is copied unchanged; the table still lists it). The parquet table
has one row per ALT, skipped ones included (scores null), so nothing disappears silently.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from tqdm.auto import tqdm

from hnet_dna.genomics.fasta import Genome

from .consequences import ConsequenceAnnotator
from .scoring import SCORE_COLUMNS, VariantScorer
from .variants import SkipCounter, Variant, flanks, read_variants, variant_windows

log = logging.getLogger(__name__)

INFO_FIELDS: dict[str, tuple[str, str]] = {
    "HNET_LLR": ("Float", "H-Net log-likelihood ratio ALT vs REF window (nats, strand-averaged; "
                          "negative = ALT less likely)"),
    "HNET_LLR_MEAN": ("Float", "H-Net per-base mean log-likelihood difference ALT - REF from "
                               "the variant onward (strand-averaged)"),
    "HNET_COS": ("Float", "H-Net cosine distance between REF and ALT window embeddings"),
    "HNET_L2": ("Float", "H-Net L2 distance between REF and ALT window embeddings"),
    "HNET_STATUS": ("String", "H-Net scoring status per ALT: ok or the skip reason"),
    "HNET_CSQ": ("String", "Coding consequence of the ALT from the GFF CDS models"),
}
_INFO_SCORE = {"HNET_LLR": "llr", "HNET_LLR_MEAN": "llr_mean", "HNET_COS": "cos_dist",
               "HNET_L2": "l2_dist"}


def score_vcf(
    vcf: str | os.PathLike,
    genome: Genome,
    scorer: VariantScorer,
    window: int,
    annotator: ConsequenceAnnotator | None = None,
    carry_info: Sequence[str] = (),
    batch_variants: int = 128,
    max_variants: int | None = None,
    progress: bool = True,
) -> tuple[pl.DataFrame, SkipCounter]:
    """Score every ALT of ``vcf``; returns the per-ALT table and the skip counts.

    ``carry_info``: INFO keys copied into the table (per-ALT value for ``Number=A`` keys), e.g.
    ``AF`` for labels. ``max_variants`` stops after that many ALTs (scored or not).
    """
    counter = SkipCounter()
    rows: list[dict] = []
    pending: list[tuple[dict, Variant]] = []
    info = _InfoReader(vcf, carry_info)
    bar = tqdm(unit="alt", desc="score", disable=not progress)

    def flush() -> None:
        if not pending:
            return
        pairs = [variant_windows(genome, v, window) for _, v in pending]
        sides = [flanks(v, window) for _, v in pending]
        for (row, _), s in zip(pending, scorer.score(pairs, sides), strict=True):
            row.update(vars(s))
        bar.update(len(pending))
        pending.clear()

    for n, v in enumerate(read_variants(vcf, genome, window, counter)):
        if max_variants is not None and n >= max_variants and v.alt_index == 0:
            break  # stop at a record boundary so every written record has all its ALTs
        row = {"record": v.record, "alt_index": v.alt_index, "contig": v.contig,
               "pos": v.vcf_pos, "id": v.vcf_id, "ref": v.vcf_ref, "alt": v.vcf_alt,
               "status": v.status, "norm_pos": v.pos + 1 if v.status == "ok" else None,
               "norm_ref": v.ref or None, "norm_alt": v.alt or None,
               "kind": v.kind if v.status == "ok" else None, "edge_padded": v.edge_padded}
        row.update(dict.fromkeys(SCORE_COLUMNS))
        if annotator is not None:
            row["consequence"] = (annotator.annotate(v.contig, v.pos, v.ref, v.alt)
                                  if v.status == "ok" else None)
        row.update(info.values(v))
        rows.append(row)
        if v.status == "ok":
            pending.append((row, v))
            if len(pending) >= batch_variants:
                flush()
    flush()
    bar.close()
    info.close()
    table = pl.DataFrame(rows, schema_overrides=dict.fromkeys(SCORE_COLUMNS, pl.Float64),
                         infer_schema_length=None)
    return table, counter


class _InfoReader:
    """Copies selected INFO values per ALT (pysam decodes them while records are read)."""

    def __init__(self, vcf: str | os.PathLike, keys: Sequence[str]) -> None:
        import pysam

        self.keys = list(keys)
        self._iter = None
        self._rec = None
        self._index = -1
        if self.keys:
            self._vf = pysam.VariantFile(str(vcf))
            missing = [k for k in self.keys if k not in self._vf.header.info]
            if missing:
                raise KeyError(f"{vcf}: INFO field(s) {missing} not declared in the header")
            self._number = {k: self._vf.header.info[k].number for k in self.keys}
            self._iter = iter(self._vf)

    def close(self) -> None:
        if self.keys:
            self._vf.close()

    def values(self, v: Variant) -> dict:
        if not self.keys:
            return {}
        while self._index < v.record:
            self._rec = next(self._iter)
            self._index += 1
        out = {}
        for k in self.keys:
            value = self._rec.info.get(k)
            if isinstance(value, tuple):
                value = value[v.alt_index] if self._number[k] == "A" and \
                    v.alt_index < len(value) else ",".join(map(str, value))
            out[k] = value
        return out


def _info_tuple(values: list, kind: str):
    if kind == "Float":
        return tuple(None if v is None or not np.isfinite(v) else float(v) for v in values)
    return tuple("." if v is None else str(v) for v in values)


def write_scored_vcf(vcf: str | os.PathLike, out: str | os.PathLike, table: pl.DataFrame,
                     genome: Genome) -> int:
    """Write ``vcf`` with the ``HNET_*`` INFO fields from ``table``; returns records written.

    The output is bgzip-compressed for ``.gz`` / ``.bgz`` names, BCF for ``.bcf``. Contigs used
    by records but missing from the input header are declared (with their length from
    ``genome`` when it has them) so that the output is valid.
    """
    import pysam

    per_record: dict[int, list[dict]] = {}
    for row in table.iter_rows(named=True):
        per_record.setdefault(row["record"], []).append(row)
    with_csq = "consequence" in table.columns
    seen_contigs = set(table["contig"].unique().to_list()) if table.height else set()
    mode = "wb" if str(out).endswith(".bcf") else ("wz" if str(out).endswith((".gz", ".bgz"))
                                                   else "w")
    written = 0
    with pysam.VariantFile(str(vcf)) as vf:
        for name in sorted(seen_contigs - set(vf.header.contigs)):
            if name in genome.contigs:
                vf.header.contigs.add(name, length=genome.contigs[name])
            else:
                vf.header.contigs.add(name)
        if "END" not in vf.header.info:
            # htslib sizes symbolic records through END; without a declaration it writes an
            # INFO id beyond the header and the record is rejected
            vf.header.info.add("END", 1, "Integer", "End position of the variant")
        header = vf.header.copy()
        for key, (kind, desc) in INFO_FIELDS.items():
            if key == "HNET_CSQ" and not with_csq:
                continue
            if key in header.info:
                raise ValueError(f"{vcf}: INFO {key} already present; refusing to overwrite")
            header.info.add(key, "A", kind, desc)
        with pysam.VariantFile(str(out), mode, header=header) as fh:
            for i, rec in enumerate(vf):
                rows = per_record.get(i)
                if rows is None:  # past max_variants: the table ends here, so does the output
                    break
                rec.translate(header)
                if not rec.alts:  # ALT '.': Number=A fields have no slot (the table has it)
                    fh.write(rec)
                    written += 1
                    continue
                rows = sorted(rows, key=lambda r: r["alt_index"])
                for key, col in _INFO_SCORE.items():
                    rec.info[key] = _info_tuple([r[col] for r in rows], "Float")
                rec.info["HNET_STATUS"] = _info_tuple([r["status"] for r in rows], "String")
                if with_csq:
                    rec.info["HNET_CSQ"] = _info_tuple([r["consequence"] for r in rows],
                                                       "String")
                fh.write(rec)
                written += 1
    return written


def write_sites_vcf(path: str | os.PathLike, sites, genome: Genome) -> int:
    """Write ``(contig, pos0, ref, alt)`` sites as a minimal sorted VCF (e.g. saturation SNVs)."""
    import pysam

    header = pysam.VariantHeader()
    for name, length in genome.contigs.items():
        header.contigs.add(name, length=length)
    n = 0
    with pysam.VariantFile(str(path), "w", header=header) as fh:
        for contig, pos, ref, alt in sites:
            fh.write(fh.new_record(contig=contig, start=pos, alleles=(ref, alt)))
            n += 1
    return n


def default_outputs(out: str | os.PathLike) -> tuple[Path, Path]:
    """``(vcf, parquet)`` paths from an output prefix or a ``.vcf[.gz]`` name."""
    out = Path(out)
    name = out.name
    for suffix in (".vcf.gz", ".vcf.bgz", ".vcf", ".bcf"):
        if name.endswith(suffix):
            return out, out.with_name(name[: -len(suffix)] + ".parquet")
    return out.with_name(name + ".vcf.gz"), out.with_name(name + ".parquet")
