"""``hnet-dna convert-official CONFIG.json WEIGHTS.pt OUT/``: an official H-Net checkpoint as a
model folder of ours (``from_pretrained``-loadable, safetensors, self-describing)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hnet-dna convert-official",
        description=(
            "Convert a checkpoint of the official H-Net release (goombalab/hnet JSON config + "
            "torch .pt state dict, e.g. cartesia-ai/hnet_2stage_XL) into a model folder "
            "(config.json + model.safetensors + README.md). Names and shapes must match exactly."
        ),
    )
    parser.add_argument("config", type=Path, help="official JSON config (configs/hnet_*.json)")
    parser.add_argument("weights", type=Path, help="official .pt state dict")
    parser.add_argument("out", type=Path, help="new model folder to write (must not exist)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"hnet-dna convert-official: {out} exists and is not empty; not overwriting it",
              file=sys.stderr)
        return 2
    from hnet_dna.model.lm import HNetForCausalLM

    try:
        model = HNetForCausalLM.from_official(args.config, args.weights)
    except (FileNotFoundError, ValueError) as err:
        print(f"hnet-dna convert-official: {err}", file=sys.stderr)
        return 2
    # Written next to OUT and renamed into place: an interrupted run leaves no half folder.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        if out.exists():
            out.rmdir()  # empty, checked above
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{out}: {model.num_parameters() / 1e6:.2f}M parameters, "
          f"load with HNetForCausalLM.from_pretrained({str(out)!r})")
    return 0
