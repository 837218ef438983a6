"""Progress: a tqdm bar on a terminal, timed plain log lines in a batch job's log."""

from __future__ import annotations

import io
import re

import pytest
from tqdm.auto import tqdm

from hnet_dna import progress as progress_mod
from hnet_dna.progress import INTERVAL_ENV, LogProgress, progress, progress_interval

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (.*)$")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    text = stream.getvalue()
    assert "\r" not in text
    out = []
    for line in text.splitlines():
        match = LINE.match(line)
        assert match, f"not a timestamped log line: {line!r}"
        out.append(match.group(1))
    return out


def test_log_lines_with_count_rate_eta_and_postfix(monkeypatch):
    clock = iter([100.0, 102.0, 104.0, 110.0])
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = progress(total=8, desc="pretrain", unit="step", initial=2, interval=0, file=out)
    assert isinstance(bar, LogProgress)
    bar.update(2)  # t=102: 4 of 8, 2 steps in 2 s
    bar.set_postfix(bpb="1.952", lr="5.00e-03")
    bar.update(1)  # t=104: 5 of 8, 3 steps in 4 s
    bar.close()  # t=110
    assert lines(out) == [
        "pretrain: 4/8 step (50%), 1 step/s, elapsed 00:02, ETA 00:04",
        "pretrain: 5/8 step (62%), 1.33 s/step, elapsed 00:04, ETA 00:04, bpb=1.952, "
        "lr=5.00e-03",
        "pretrain: 5/8 step (62%), 3.33 s/step, elapsed 00:10, done, bpb=1.952, lr=5.00e-03",
    ]


def test_lines_come_at_the_interval_only(monkeypatch):
    now = {"t": 0.0}
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: now["t"])
    out = io.StringIO()
    bar = progress(total=100, desc="embed", unit="seq", interval=30, file=out)
    for _ in range(100):
        now["t"] += 1.0
        bar.update(1)
    bar.close()
    counts = [int(re.match(r"embed: (\d+)/100", line).group(1)) for line in lines(out)]
    assert counts == [30, 60, 90, 100]


def test_iterable_without_total_and_write():
    out = io.StringIO()
    bar = progress((i for i in range(3)), desc="score", unit="alt", interval=0, file=out)
    assert list(bar) == [0, 1, 2]
    bar.write("a message")
    found = lines(out)
    assert [line.split(",")[0] for line in found[:4]] == [
        "score: 1 alt", "score: 2 alt", "score: 3 alt", "score: 3 alt"]
    assert "done" in found[3] and "ETA" not in found[3]
    assert found[4] == "a message"
    # a sized iterable gives the total; leave=False keeps no last line
    out = io.StringIO()
    assert list(progress([1, 2], desc="fits", interval=1e9, leave=False, file=out)) == [1, 2]
    assert out.getvalue() == ""


def test_terminal_gets_tqdm_and_disabled_is_silent():
    term = Terminal()
    bar = progress(total=3, desc="x", file=term)
    assert isinstance(bar, tqdm)
    bar.update(3)
    bar.close()
    assert "\r" in term.getvalue()
    quiet = io.StringIO()
    bar = progress(total=3, disable=True, file=quiet)
    bar.update(3)
    bar.close()
    assert quiet.getvalue() == ""


def test_interval_from_the_environment(monkeypatch):
    monkeypatch.delenv(INTERVAL_ENV, raising=False)
    assert progress_interval() == progress_mod.DEFAULT_INTERVAL
    monkeypatch.setenv(INTERVAL_ENV, "5")
    assert progress_interval() == 5.0 and progress_interval(2) == 2
    monkeypatch.setenv(INTERVAL_ENV, "often")
    with pytest.raises(ValueError, match="HNET_DNA_PROGRESS_INTERVAL must be a number of "
                                         "seconds, got 'often'"):
        progress_interval()
    with pytest.raises(ValueError, match="must be >= 0 seconds, got -1"):
        progress_interval(-1)


def test_unit_scale_counts_like_tqdm(monkeypatch):
    clock = iter([0.0, 2.0, 2.0])
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = progress(total=3_100_000_000, desc="track", unit="base", unit_scale=True, interval=0,
                   file=out)
    bar.update(1_000_000_000)
    assert lines(out) == ["track: 1.00G/3.10G base (32%), 500M base/s, elapsed 00:02, ETA 00:04"]
