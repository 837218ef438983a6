"""Atomic checkpoints: ``<root>/step-XXXXXXXX/`` = a ``from_pretrained`` model folder + state.

The one place that knows the layout: a run folder keeps its checkpoints in ``checkpoints/``;
:func:`latest_checkpoint` (resuming) and :func:`find_model_folder` (loading a model for
evaluation) both read it through :func:`list_checkpoints`.

Each checkpoint is written into a hidden temporary folder and renamed into place, so a process
killed mid-save leaves only a stray temporary folder (ignored and later removed) and every
completed checkpoint stays loadable. Only the newest ``keep_last`` are kept. A save that runs
out of disk space removes its temporary folder and says ``disk full while writing <folder>``;
a checkpoint found damaged when resuming is set aside (renamed ``corrupt-step-XXXXXXXX``), not
deleted. Files get the permissions of the other run files (umask), not safetensors' 0600.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hnet_dna.errors import InputError
from hnet_dna.model.files import CONFIG_NAME, WEIGHTS_NAME

CHECKPOINTS_DIR = "checkpoints"  # inside a run folder
TRAINING_STATE_NAME = "training_state.pt"
_STEP_DIR = re.compile(r"^step-(\d{8})$")
_TMP_PREFIX = ".tmp-"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(
    root: str | Path, holding: tuple[str, ...] = (TRAINING_STATE_NAME,)
) -> list[tuple[int, Path]]:
    """Completed checkpoints under ``root`` as (step, folder), oldest first.

    ``holding``: the files a folder needs to count (the training state, written last, for a
    checkpoint to resume from; ``config.json`` and weights for a model to load).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir() and all((child / name).is_file() for name in holding):
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest checkpoint to resume from in ``root`` (a run's ``checkpoints/``), or None."""
    checkpoints = list_checkpoints(root)
    return checkpoints[-1][1] if checkpoints else None


def find_model_folder(path: str | Path) -> Path:
    """The model folder to load from ``path``: itself if it holds ``config.json`` and weights,
    else the newest checkpoint of a run folder (``path/checkpoints``) or checkpoint folder."""
    path = Path(path)
    model_files = (CONFIG_NAME, WEIGHTS_NAME)
    if all((path / name).is_file() for name in model_files):
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"model path not found: {path}")
    for root in (path / CHECKPOINTS_DIR, path):
        checkpoints = list_checkpoints(root, holding=model_files)
        if checkpoints:
            return checkpoints[-1][1]
    raise FileNotFoundError(
        f"{path}: no {CONFIG_NAME} + {WEIGHTS_NAME} here nor in a step-XXXXXXXX checkpoint of "
        f"{path / CHECKPOINTS_DIR} or {path}"
    )


def resolve_resume(resume: bool | None, checkpoint_dir: Path) -> Path | None:
    """Checkpoint to continue from: the newest in the run folder, as ``resume`` allows
    (None: whatever is there; True: one must be there; False: none may be)."""
    remove_stale_temporaries(checkpoint_dir)
    latest = latest_checkpoint(checkpoint_dir)
    if resume is True and latest is None:
        raise FileNotFoundError(f"resume=true but {checkpoint_dir} holds no complete checkpoint")
    if resume is False and latest is not None:
        raise FileExistsError(
            f"{checkpoint_dir} already holds checkpoints ({latest.name}); resume=false would mix "
            "two runs in one folder: pass resume=true or choose another hydra.run.dir"
        )
    return latest


def remove_stale_temporaries(root: str | Path) -> None:
    """Delete half-written checkpoints left by a killed process."""
    root = Path(root)
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(_TMP_PREFIX):
                shutil.rmtree(child, ignore_errors=True)


def save_checkpoint(
    root: str | Path,
    step: int,
    write_model: Callable[[Path], Any],
    training_state: dict[str, Any],
    keep_last: int = 2,
) -> Path:
    """Write the model (``write_model(folder)``) and ``training_state`` atomically; prune old ones.

    The training state is written last, and a folder only counts as a checkpoint once it holds
    the state file and carries its final name.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    final = root / checkpoint_name(step)
    if final.exists():
        # A directory rename cannot replace a non-empty directory atomically, and the trainer
        # never saves one step twice, so this is a caller error (e.g. two runs in one folder).
        raise FileExistsError(f"checkpoint {final} already exists")
    tmp = root / f"{_TMP_PREFIX}{checkpoint_name(step)}-{os.getpid()}"
    tmp.mkdir()
    try:
        write_model(tmp)
        torch.save(training_state, tmp / TRAINING_STATE_NAME)
        _fsync_tree(tmp)
        os.replace(tmp, final)
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_disk_full(err):
            raise OSError(errno.ENOSPC, f"disk full while writing {final}") from err
        raise
    _fsync_dir(root)
    for _, old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


class CorruptCheckpointError(InputError):
    """A checkpoint file that cannot be read back (truncated, zeroed, not a torch archive)."""


def load_training_state(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(checkpoint) / TRAINING_STATE_NAME
    if not path.exists():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint: {path} is missing")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile
            ) as err:
        reason = " ".join(str(err).split())[:200]
        raise CorruptCheckpointError(f"{path}: damaged training state ({reason})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise CorruptCheckpointError(f"{path}: not a training state")
    return state


def set_aside(checkpoint: Path) -> Path:
    """Rename a damaged checkpoint to ``corrupt-<name>`` (kept for inspection, never loaded)."""
    target = checkpoint.with_name(f"corrupt-{checkpoint.name}")
    n = 1
    while target.exists():
        n += 1
        target = checkpoint.with_name(f"corrupt-{checkpoint.name}-{n}")
    os.replace(checkpoint, target)
    return target


def seed_everything(seed: int) -> None:
    """Seed every RNG that :func:`capture_rng_state` saves (python, numpy, torch)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """Every RNG a training step may draw from (torch CPU/CUDA, numpy legacy, python)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        # numpy's state holds an ndarray; stored as a tensor so weights_only loading accepts it.
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(_as_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(value: Any) -> Any:
    # random.setstate needs tuples; a serialisation round trip may hand back lists.
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


def _is_disk_full(err: BaseException) -> bool:
    # safetensors reports a full disk as SafetensorError("Error while serializing: I/O error:
    # No space left on device (os error 28)"), not as an OSError
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return "No space left on device" in str(err) or "(os error 28)" in str(err)


def _fsync_tree(folder: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for child in folder.iterdir():
        if child.is_file():
            # safetensors creates its file 0600; every run file gets the umask's permissions
            os.chmod(child, 0o666 & ~umask)
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
