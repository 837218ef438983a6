"""Several genomes mixed with sampling weights (multi-species training)."""

import re
from collections import Counter

import pytest

from hnet_dna.genomics.corpora import load_corpus
from hnet_dna.genomics.intervals import Interval
from hnet_dna.genomics.windows import WindowDataset

SAMPLES = 6000


@pytest.fixture(scope="module")
def yeast():
    return load_corpus("yeast_chrI")


def sources(ds):
    return Counter(item["source"] for item in ds)


def within(count: int, p: float, n: int = SAMPLES) -> bool:
    """``count`` of ``n`` draws is within 5 standard deviations of ``n * p``."""
    sd = (n * p * (1 - p)) ** 0.5
    return abs(count - n * p) <= 5 * sd


def test_default_mixture_is_proportional_to_length(yeast):
    ds = yeast.windows("train", 2048, samples_per_epoch=SAMPLES, seed=1)
    got = sources(ds)
    starts = {g.name: sum(len(iv) - 2048 + 1 for iv in ivs) for g, ivs in yeast.regions("train")}
    total = sum(starts.values())
    assert set(got) == set(starts)
    assert all(within(got[name], n / total) for name, n in starts.items())


def test_weighted_mixture_realises_its_proportions_deterministically(yeast):
    weights = {"ScerR64_I": 3.0, "SkudIFO1802_1": 1.0}  # S. mikatae left out (weight 0)
    ds = yeast.windows("train", 1024, samples_per_epoch=SAMPLES, seed=4, source_weights=weights)
    first = [(i["source"], i["start"], i["strand"]) for i in ds]
    got = Counter(s for s, _, _ in first)
    assert set(got) == {"ScerR64_I", "SkudIFO1802_1"}
    assert within(got["ScerR64_I"], 0.75) and got["ScerR64_I"] + got["SkudIFO1802_1"] == SAMPLES
    # far from the length-proportional share (Scer has 33 % of the bases)
    assert got["ScerR64_I"] > 0.7 * SAMPLES
    again = yeast.windows("train", 1024, samples_per_epoch=SAMPLES, seed=4,
                          source_weights=[3, 1, 0])  # the same weights, in regions order
    assert [(i["source"], i["start"], i["strand"]) for i in again] == first
    # within a source, windows stay uniform over its positions: both halves of Scer's train block
    scer = [s for name, s, _ in first if name == "ScerR64_I"]
    half = 230_218 * 0.8 / 2
    assert within(sum(s < half for s in scer), 0.5, len(scer))


def test_mixture_argument_errors(yeast):
    regions = yeast.regions("train")
    kw = dict(samples_per_epoch=10)
    with pytest.raises(ValueError, match=re.escape(
            "source_weights name unknown sources ['Scer']; sources: ['ScerR64_I', "
            "'SkudIFO1802_1', 'SmikIFO1815_1']")):
        yeast.windows("train", 100, source_weights={"Scer": 1.0}, **kw)
    with pytest.raises(ValueError, match=re.escape(
            "source weights must be 3 finite numbers >= 0, got [1.0, -1.0, 0.0]")):
        yeast.windows("train", 100, source_weights=[1, -1, 0], **kw)
    with pytest.raises(ValueError, match="source weights sum to 0"):
        yeast.windows("train", 100, source_weights=[0, 0, 0], **kw)
    with pytest.raises(ValueError, match="source_weights apply to random mode"):
        yeast.windows("valid", 100, mode="tile", source_weights=[1, 1, 1])
    # a weighted source must be able to hold a window
    (g0, _), (g1, _) = regions[:2]
    short = [(g0, [Interval(next(iter(g0.contigs)), 0, 50)]),
             (g1, [Interval(next(iter(g1.contigs)), 0, 5000)])]
    with pytest.raises(ValueError, match=re.escape(
            "sources ['ScerR64_I'] have weight > 0 but no interval that holds a window")):
        WindowDataset(short, 100, source_weights=[1, 1], **kw)
