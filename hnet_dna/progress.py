"""Progress reports that suit a terminal and a batch job's log alike.

Every long loop of the package (pretraining, ``embed``, ``track``, ``score-variants``,
``probe``, their sharded runs, ``prepare``) reports through :func:`progress`. On a terminal
(the stream a TTY) it is a tqdm bar; otherwise (a SLURM log, ``nohup``, CI, a pipe) it is one
plain line every ``interval`` seconds and a last one when the loop ends, with no carriage
returns, e.g.::

    2026-12-06 03:10:00 embed: 120/600 seq (20%), 2.05 seq/s, elapsed 00:58, ETA 03:54

The interval is ``HNET_DNA_PROGRESS_INTERVAL`` seconds (default 30), or the caller's value
(``trainer.progress_interval``). Only the caller knows its rank: under DDP only rank 0 reports.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from tqdm.auto import tqdm

INTERVAL_ENV = "HNET_DNA_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def progress_interval(interval: float | None = None) -> float:
    """Seconds between log lines: ``interval``, else ``$HNET_DNA_PROGRESS_INTERVAL``, else
    :data:`DEFAULT_INTERVAL`."""
    if interval is None:
        text = os.environ.get(INTERVAL_ENV)
        if not text:
            return DEFAULT_INTERVAL
        try:
            interval = float(text)
        except ValueError:
            raise ValueError(f"{INTERVAL_ENV} must be a number of seconds, got {text!r}") from None
    if not interval >= 0:
        raise ValueError(f"the progress interval must be >= 0 seconds, got {interval}")
    return interval


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class LogProgress:
    """The subset of tqdm's interface the package uses, reporting as plain timed log lines."""

    def __init__(self, iterable: Iterable | None = None, total: float | None = None,
                 desc: str = "", unit: str = "it", initial: float = 0, leave: bool = True,
                 interval: float | None = None, file: IO[str] | None = None,
                 unit_scale: bool = False) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.initial = initial
        self.leave, self.unit_scale = leave, unit_scale
        self.interval = progress_interval(interval)
        self.file = file
        self.postfix: dict[str, Any] = {}
        self.started = self.last_line = time.monotonic()
        self.closed = False

    # ------------------------------------------------------------------ tqdm interface
    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last_line >= self.interval:
            self.last_line = now
            self._emit(self.line(now))

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        """Values appended to the next lines (``bpb=1.952``)."""
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def write(self, message: str) -> None:
        self._emit(message)

    def close(self) -> None:
        """The last line (when ``leave``: the loop's count, rate and time)."""
        if self.closed:
            return
        self.closed = True
        if self.leave:
            self._emit(self.line(time.monotonic(), done=True))

    # ------------------------------------------------------------------ lines
    def line(self, now: float, done: bool = False) -> str:
        elapsed = now - self.started
        done_here = self.n - self.initial
        rate = done_here / elapsed if elapsed > 0 else 0.0
        number = tqdm.format_sizeof if self.unit_scale else _number
        count = f"{number(self.n)} {self.unit}"
        if self.total:
            count = f"{number(self.n)}/{number(self.total)} {self.unit} " \
                    f"({100 * self.n / self.total:.0f}%)"
        parts = [count, _rate(rate, self.unit, self.unit_scale),
                 f"elapsed {tqdm.format_interval(elapsed)}"]
        if done:
            parts.append("done")
        elif self.total and rate > 0:
            parts.append(f"ETA {tqdm.format_interval(max(self.total - self.n, 0) / rate)}")
        parts += [f"{key}={value}" for key, value in self.postfix.items()]
        return f"{self.desc}: {', '.join(parts)}" if self.desc else ", ".join(parts)

    def _emit(self, message: str) -> None:
        stream = self.file or sys.stderr
        stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        stream.flush()


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) and not value.is_integer() else f"{int(value)}"


def _rate(rate: float, unit: str, scale: bool = False) -> str:
    if rate <= 0:
        return f"- {unit}/s"
    if scale and rate >= 1:
        return f"{tqdm.format_sizeof(rate)} {unit}/s"
    return f"{rate:.3g} {unit}/s" if rate >= 1 else f"{1 / rate:.3g} s/{unit}"


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
             unit: str = "it", disable: bool = False, initial: float = 0, leave: bool = True,
             interval: float | None = None, file: IO[str] | None = None,
             **bar_kwargs: Any) -> tqdm | LogProgress:
    """A tqdm bar when ``file`` (default stderr) is a terminal, else a :class:`LogProgress` that
    writes a line every ``interval`` seconds (:func:`progress_interval`) and one at the end.

    ``bar_kwargs`` (``dynamic_ncols``, ...) only concern the bar, except ``unit_scale`` (counts
    as 3.10G). Disabled: a silent tqdm.
    """
    stream = file or sys.stderr
    if disable or _is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable,
                    initial=initial, leave=leave, file=file, **bar_kwargs)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                       interval=interval, file=file,
                       unit_scale=bool(bar_kwargs.get("unit_scale", False)))
