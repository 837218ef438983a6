"""The announcement of a large exact held-out evaluation (size, estimated time, bound)."""

from __future__ import annotations

import logging
import re

from training_helpers import tiny_model

from hnet_dna.genomics.alphabet import DNA_VOCAB
from hnet_dna.genomics.corpora import load_corpus
from hnet_dna.genomics.loader import WindowLoader
from hnet_dna.training import heldout
from hnet_dna.training.distributed import DistEnv
from hnet_dna.training.heldout import heldout_bits


def _run(caplog, **kwargs) -> list[str]:
    dataset = load_corpus("yeast_chrI").windows("valid", 64, mode="tile", rank=0, world_size=1)
    loader = WindowLoader(dataset, 8)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hnet_dna.training.heldout"):
        result = heldout_bits(tiny_model(), loader, DistEnv(), DNA_VOCAB, max_batches=5,
                              **kwargs)
    assert result["bases"] > 0
    return [r.getMessage() for r in caplog.records]


def test_large_evaluation_is_announced_with_size_time_and_bound(caplog, monkeypatch):
    monkeypatch.setattr(heldout, "_RATE_SECONDS", 0.0)  # estimate after 3 batches
    first, estimate = _run(caplog, bound="trainer.eval_max_batches", announce_min_bases=2_560)
    assert first == ("exact held-out evaluation of 2,560 bases (5 batch(es) of 8x64 per rank, "
                     "1 rank(s)); bound it with trainer.eval_max_batches=N")
    match = re.fullmatch(r"held-out evaluation: 3 of 5 batch\(es\) in \d+ s, (\d+) bases/s per "
                         r"rank: about \d+ s in all; trainer\.eval_max_batches=(\d+) would take "
                         r"about (\d+ s|\d+ min)", estimate)
    assert match, estimate
    rate, suggested = int(match[1]), int(match[2])
    assert abs(suggested - 600 * rate / 512) <= 600 / 512 + 1  # about 10 min of batches


def test_small_evaluation_is_not_announced(caplog):
    assert _run(caplog, announce_min_bases=2_561) == []  # 5 x 8 x 64 = 2,560 positions
