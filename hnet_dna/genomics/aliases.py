"""Contig name aliases: ``chr1`` vs ``1``, ``chrM`` vs ``MT``.

UCSC assemblies name contigs ``chr1 .. chrX, chrM``; Ensembl/NCBI style uses ``1 .. X, MT``. A BED
written against one convention is routinely used with a FASTA in the other, so a name that is
not a contig of the genome is looked up under its aliases. An exact name always wins, and an
alias that would match two contigs is an error rather than a guess.
"""

from __future__ import annotations

from collections.abc import Mapping

# every spelling of the mitochondrial genome seen in UCSC, Ensembl, NCBI and FlyBase assemblies
_MITO = ("chrM", "chrMT", "MT", "M", "mitochondrion_genome", "chrmt")


def contig_aliases(name: str) -> list[str]:
    """Other spellings of ``name`` (without ``name`` itself), most likely first."""
    if name in _MITO:
        return [m for m in _MITO if m != name]
    if name.startswith("chr") and len(name) > 3:
        return [name[3:]]
    return [f"chr{name}"]


def resolve_contig(name: str, contigs: Mapping[str, int], where: str | None = None) -> str:
    """The contig of ``contigs`` that ``name`` refers to (itself, or its unique alias).

    Raises ``KeyError`` naming ``where`` (a file) when nothing or more than one contig matches.
    """
    if name in contigs:
        return name
    hits = [alias for alias in contig_aliases(name) if alias in contigs]
    if len(hits) == 1:
        return hits[0]
    prefix = f"{where}: " if where else ""
    if hits:
        raise KeyError(f"{prefix}record {name!r} is ambiguous, it could be any of {hits}")
    raise KeyError(f"{prefix}no record {name!r} (nor its aliases {contig_aliases(name)}); "
                   f"records include {list(contigs)[:5]}")


__all__ = ["contig_aliases", "resolve_contig"]
