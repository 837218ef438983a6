"""Entry points of ``hnet-dna embed``, ``track``, ``score-variants`` and ``probe``.

Each ``main_*(argv)`` parses its own arguments and returns a process exit code (0 success,
2 bad input, 1 internal error), so ``hnet_dna.cli`` only has to dispatch. The commands live one
per module in :mod:`hnet_dna.evaluation.commands`, sharing its ``common`` options and checks.
"""

from __future__ import annotations

import sys

from .commands.embed import main as main_embed
from .commands.probe import main as main_probe
from .commands.score_variants import main as main_score_variants
from .commands.track import main as main_track

__all__ = ["COMMANDS", "main_embed", "main_probe", "main_score_variants", "main_track"]

COMMANDS = {"embed": main_embed, "track": main_track, "score-variants": main_score_variants,
            "probe": main_probe}

if __name__ == "__main__":  # pragma: no cover - manual use: python -m hnet_dna.evaluation.cli
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: python -m hnet_dna.evaluation.cli {{{','.join(COMMANDS)}}} ...")
        sys.exit(2)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
