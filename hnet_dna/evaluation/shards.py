"""Work in blocks that survive a killed run: one part file per block under ``OUT.parts/``.

A command given ``--region``/``--regions-bed``/``--shard`` (or run under torchrun) cuts its
work into the genomic blocks of :mod:`.regions` and writes each finished block as one parquet
part, ``OUT.parts/block000042.parquet``, through :func:`hnet_dna.outputs.atomic_output`: a
part is there whole or not at all, so a rerun of the same command skips the finished blocks
and computes only the rest. ``OUT.parts/manifest.json`` records what the parts are of (the
command, its options, its inputs' sizes and modification times, the block plan); a rerun with
different options or changed inputs is refused instead of mixing parts of two runs.

A single process (no ``--shard``, or ``--shard 0/1``) merges the parts into the outputs when
all blocks are done (:mod:`.merge`) and removes ``OUT.parts``; with ``--shard I/N`` each
shard leaves its parts and ``hnet-dna merge`` gathers them once every shard has finished;
under torchrun, rank 0 waits for the other ranks' parts and merges.

Batches never span blocks, so a block's numbers do not depend on which shard computed it or
on what else was in the batch: the merged output of any sharding equals the unsharded one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import polars as pl

from hnet_dna.errors import InputError
from hnet_dna.outputs import atomic_output

from .regions import Block, Shard, shard_blocks

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def parts_dir(out: str | os.PathLike) -> Path:
    """Where the parts of output ``out`` (a file or a prefix) are kept."""
    return Path(f"{out}.parts")


def input_stamps(paths: Iterable[str | os.PathLike | None]) -> dict[str, list[int]]:
    """``{absolute path: [size, mtime_ns]}`` of the input files (a changed input is a new run)."""
    stamps = {}
    for p in paths:
        if p is None or not Path(p).is_file():
            continue
        st = Path(p).stat()
        stamps[str(Path(p).resolve())] = [st.st_size, st.st_mtime_ns]
    return stamps


def model_files(model) -> list[Path]:
    """The files of a local model (its config and weights; a run folder's newest checkpoint):
    a retrained model is a new run. A Hub name or an in-memory model gives none."""
    if not isinstance(model, (str, os.PathLike)) or not Path(model).exists():
        return []
    from hnet_dna.training.checkpoint import find_model_folder

    try:
        folder = find_model_folder(model)
    except (FileNotFoundError, OSError):
        return []
    return sorted(p for p in folder.iterdir() if p.is_file())


class PartStore:
    """The parts folder of one output: manifest, finished blocks, atomic part writes."""

    def __init__(self, out: str | os.PathLike, manifest: Mapping) -> None:
        self.out = Path(out)
        self.dir = parts_dir(out)
        self.manifest = dict(manifest)
        self.blocks = [Block(*b) for b in self.manifest["blocks"]]

    @classmethod
    def create(cls, out: str | os.PathLike, command: str, options: Mapping,
               inputs: Iterable[str | os.PathLike | None], blocks: Sequence[Block],
               **extra) -> PartStore:
        """Open (or start) the parts of ``out``; refuses parts of a different run.

        ``inputs``: the files whose size and modification time identify the run (the input
        files and the model's, not index files, which another shard may be building)."""
        manifest = {"command": command, "options": dict(options),
                    "inputs": input_stamps(inputs),
                    "blocks": [[b.index, b.contig, b.start, b.end, b.region_start]
                               for b in blocks], **extra}
        manifest = json.loads(json.dumps(manifest))  # the types a reread gives
        store = cls(out, manifest)
        path = store.dir / MANIFEST
        if path.is_file():
            old = json.loads(path.read_text())
            # the blocks do not depend on the shard count: another count reuses them all
            old_count = old.pop("shards", None)
            count = manifest.pop("shards", None)
            if old == manifest and old_count != count:
                manifest["shards"] = count
                with atomic_output(path) as tmp:
                    tmp.write_text(json.dumps(manifest, indent=1))
            manifest["shards"] = count
            old["shards"] = count
            if old != manifest:
                diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
                detail = ""
                if "options" in diff:
                    o, n = old.get("options", {}), manifest["options"]
                    detail = " (" + ", ".join(f"{k}: {o.get(k)!r} -> {n.get(k)!r}" for k in
                                              sorted(set(o) | set(n)) if o.get(k) != n.get(k)
                                              ) + ")"
                raise InputError(f"{store.dir} holds the parts of another run (differs in "
                                 f"{', '.join(diff)}{detail}); rerun that command to finish "
                                 "it, or delete the folder to start over")
        else:
            store.dir.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as tmp:
                tmp.write_text(json.dumps(manifest, indent=1))
        return store

    @classmethod
    def load(cls, out: str | os.PathLike) -> PartStore:
        """The parts of ``out`` as the commands left them (``hnet-dna merge``)."""
        path = parts_dir(out) / MANIFEST
        if not path.is_file():
            raise InputError(f"{parts_dir(out)}: no parts of a sharded run here ({MANIFEST} "
                             "missing); give the --out of the sharded command")
        return cls(out, json.loads(path.read_text()))

    def part(self, index: int, kind: str = "") -> Path:
        return self.dir / f"block{index:06d}{kind}.parquet"

    def done(self, index: int) -> bool:
        return self.part(index).is_file()

    def missing(self) -> list[Block]:
        return [b for b in self.blocks if not self.done(b.index)]

    def write(self, index: int, table: pl.DataFrame,
              extra: Mapping[str, pl.DataFrame] | None = None) -> None:
        """Write block ``index``: its ``extra`` parts first, the main part (which marks the
        block done) last, each whole or not at all."""
        for kind, df in (extra or {}).items():
            with atomic_output(self.part(index, kind)) as tmp:
                df.write_parquet(tmp)
        with atomic_output(self.part(index)) as tmp:
            table.write_parquet(tmp)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def check_complete(self) -> None:
        """Raise naming the missing blocks and the shards that own them."""
        missing = self.missing()
        if missing:
            n = self.manifest.get("shards", 1)
            owners = sorted({b.index % n for b in missing})
            raise InputError(
                f"{self.dir}: {len(missing)} of {len(self.blocks)} blocks are not done yet "
                f"(first: {missing[0].contig}:{missing[0].start + 1}-{missing[0].end}); "
                f"shard(s) {', '.join(f'{i}/{n}' for i in owners[:10])} have not finished: "
                "rerun them with the same command")


def run_blocks(store: PartStore, shard: Shard, work) -> tuple[int, int]:
    """Blocks of ``shard`` that are not done yet, handed to ``work(blocks)``; returns
    ``(blocks done before, blocks done now)``."""
    mine = shard_blocks(store.blocks, shard)
    todo = [b for b in mine if not store.done(b.index)]
    if len(todo) < len(mine):
        log.warning("%s: resuming: %d of %d blocks of shard %s were done, %d to go",
                    store.dir, len(mine) - len(todo), len(mine), shard, len(todo))
    if todo:
        work(todo)
    return len(mine) - len(todo), len(todo)


def wait_for_parts(store: PartStore, poll_seconds: float = 5.0) -> None:
    """Torchrun rank 0: wait until every other rank's blocks are written."""
    announced = False
    while store.missing():
        if not announced:
            log.warning("waiting for %d blocks of the other ranks", len(store.missing()))
            announced = True
        time.sleep(poll_seconds)


def finish(store: PartStore, shard: Shard, merge) -> object | None:
    """After this shard's blocks: merge (single process, or torchrun rank 0 once every rank
    is done), or say how to gather the shards. Returns what ``merge()`` returns, or None."""
    if shard.count > 1 and shard.device_index is None:  # --shard I/N: `hnet-dna merge` later
        left = len(store.missing())
        print(f"shard {shard}: done; {left} blocks of other shards to go. When every shard "
              f"has finished: hnet-dna merge {store.out}")
        return None
    if shard.count > 1:
        if shard.index != 0:
            print(f"rank {shard}: done; rank 0 merges")
            return None
        wait_for_parts(store)
    result = merge()
    store.remove()
    return result


def shard_device(device: str, shard: Shard) -> str:
    """A torchrun rank's device: ``cuda:LOCAL_RANK`` when ``device`` is CUDA (one GPU each)."""
    if shard.device_index is None:
        return device
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{shard.device_index % torch.cuda.device_count()}"
    return device
