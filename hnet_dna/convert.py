"""``hnet-dna convert-official CONFIG.json WEIGHTS.pt OUT/``: an official H-Net checkpoint as a
model folder of ours (``from_pretrained``-loadable, safetensors, self-describing)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from hnet_dna.outputs import current_umask, is_disk_full, sigterm_cleanup


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
    # Written next to OUT and renamed into place: an interrupted run (Ctrl-C, SIGTERM) leaves
    # no half folder. mkdtemp makes it 0700; the folder gets what mkdir would give (umask).
    out.parent.mkdir(parents=True, exist_ok=True)
    with sigterm_cleanup():
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            tmp.chmod(0o777 & ~current_umask())
            model.save_pretrained(tmp)
            if out.exists():
                out.rmdir()  # empty, checked above
            tmp.rename(out)
        except OSError as err:
            if not is_disk_full(err):
                raise
            print(f"hnet-dna convert-official: disk full while writing {out}", file=sys.stderr)
            return 2
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{out}: {model.num_parameters() / 1e6:.2f}M parameters, "
          f"load with HNetForCausalLM.from_pretrained({str(out)!r})")
    return 0
