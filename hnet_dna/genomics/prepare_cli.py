"""``hnet-dna prepare``: genomes converted once into the form every rank and worker shares."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from hnet_dna.errors import InputError

from .fasta import prepare
from .prepare import genome_files, prepared_path, up_to_date


def main(argv: list[str] | None = None) -> int:
    """``hnet-dna prepare INPUT... [--out-dir DIR]``: prepare each genome file (a folder: each
    genome file in it); prints what was written or reused; bad input: one line, exit 2."""
    p = argparse.ArgumentParser(
        prog="hnet-dna prepare",
        description="Convert genomes once into the form every rank and DataLoader worker reads "
                    "through the shared page cache (one byte per base + .fai + summary). "
                    "Plain gzip, bgzip, GenBank and EMBL are converted; an uncompressed FASTA "
                    "is indexed where it lies. Up-to-date results are reused.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="genome file, or folder of genome files (each one genome)")
    p.add_argument("--out-dir", default=None,
                   help="folder for the prepared genomes (default: beside each input, or "
                        "~/.cache/hnet_dna/prepared when that folder is read-only)")
    p.add_argument("--format", default="auto", choices=["auto", "fasta", "genbank", "embl"])
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        sources = [f for x in args.inputs for f in (genome_files(x) if Path(x).is_dir()
                                                     else [Path(x)])]
        for source in sources:
            t0 = time.perf_counter()
            fresh = up_to_date(source, prepared_path(source, args.out_dir))
            out = prepare(source, args.out_dir, format=args.format, progress=not args.quiet)
            what = "up to date" if fresh else f"{time.perf_counter() - t0:.1f} s"
            print(f"{source} -> {out} ({what})")
    except (InputError, OSError) as err:
        where = f"{err.filename}: " if isinstance(err, OSError) and err.filename else ""
        print(f"hnet-dna prepare: {where}{err.strerror if where else err}", file=sys.stderr)
        return 2
    return 0
