"""Graceful stop: a signal asks the trainer to checkpoint at the next step boundary and exit.

SLURM sends a signal some time before a job's limit (``#SBATCH --signal=USR1@120``; submitit's
``signal_delay_s`` sends ``SIGUSR2``, or ``$SUBMITIT_PREEMPT_SIGNAL``). The handler only sets a
flag; the trainer checks it after each optimizer step (all ranks agree through one all-reduce),
saves a checkpoint there and stops:

- under submitit, rank 0 hands over to submitit's own handler, which requeues the job (its
  ``checkpoint`` re-submits the same task, and the run resumes from the run folder);
- otherwise the process exits with :data:`EXIT_RESUMABLE` (75, ``EX_TEMPFAIL``): a batch script
  requeues the job on that status (``scripts/slurm/pretrain.sbatch``), anyone else reruns the
  same command to resume.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import types
from collections.abc import Callable
from typing import Any

import torch

from hnet_dna.training.distributed import DistEnv, all_reduce_sum

log = logging.getLogger(__name__)

#: exit status of a run stopped by a signal after writing its checkpoint (sysexits EX_TEMPFAIL)
EXIT_RESUMABLE = 75

Handler = Callable[[int, types.FrameType | None], Any] | int | None


def under_submitit() -> bool:
    """Whether this process is a submitit job (it installed its requeue handler)."""
    return "SUBMITIT_FOLDER" in os.environ or "SUBMITIT_EXECUTOR" in os.environ


def submitit_signal() -> signal.Signals:
    """The signal submitit's launcher asks SLURM to send before the limit."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper()
    return signal.Signals[name if name.startswith("SIG") else f"SIG{name}"]


def stop_signals() -> list[signal.Signals]:
    """SIGUSR1 always (plain sbatch scripts, ``scancel --signal=USR1``); submitit's under it."""
    signals = [signal.SIGUSR1]
    if under_submitit() and submitit_signal() not in signals:
        signals.append(submitit_signal())
    return signals


class StopRequest:
    """While installed (or entered), the stop signals set :attr:`signum` instead of acting.

    ``restore`` (or leaving the ``with``) puts the previous handlers back. Outside the main
    thread (signals cannot be handled there) it does nothing and never requests a stop.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Handler] = {}

    def install(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in stop_signals():
                self._previous[sig] = signal.signal(sig, self._note)
        return self

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def __enter__(self) -> StopRequest:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def _note(self, signum: int, frame: types.FrameType | None) -> None:
        # Only a flag: the step in flight finishes, the checkpoint is written between steps.
        self.signum = signum

    def agreed(self, env: DistEnv) -> bool:
        """Whether any rank was signalled (collective under DDP/FSDP: every rank calls it)."""
        flag = 1.0 if self.signum is not None else 0.0
        if env.enabled:
            reduced = all_reduce_sum(torch.tensor([flag], device=env.device), env)
            flag = float(reduced.item())
        return flag > 0

    def exit(self, env: DistEnv, step: int, checkpoint: object) -> None:
        """Leave the run after its checkpoint: submitit requeue (rank 0) or ``EXIT_RESUMABLE``."""
        name = signal.Signals(self.signum).name if self.signum is not None else "another rank"
        log.warning("stop requested (%s): checkpoint %s at step %d written; exiting to be "
                    "resumed", name, checkpoint, step)
        if under_submitit():
            handler = self._previous.get(submitit_signal())
            if env.is_main and callable(handler):
                # submitit's checkpoint_and_try_requeue: re-submits the task, `scontrol requeue`,
                # then exits; other ranks leave on their own (submitit ignores SIGTERM).
                handler(submitit_signal(), None)
        raise SystemExit(EXIT_RESUMABLE)
