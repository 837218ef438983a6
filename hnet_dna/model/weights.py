"""Reading a saved model folder safely: ``config.json`` + ``model.safetensors``, checked.

safetensors has no checksum, so a damaged file either fails to parse (a corrupt, truncated or
zeroed header) or, worse, parses and carries garbage values (a flipped block in the data).
Before a model is built, the shapes the config asks for are compared with those the file holds
(a wrong or hand-edited config would otherwise allocate far more memory than the file could
fill); after loading, every tensor is checked for non-finite values (NaN/inf: a diverged run
or a damaged file). Each problem is an
:class:`~hnet_dna.errors.InputError` naming the file (and tensor), not a traceback.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from hnet_dna.errors import InputError
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.files import CONFIG_NAME, WEIGHTS_NAME

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "WeightsError", "check_finite", "load_model_files", "read_config", "read_config_json",
    "tensor_shapes",
]


class WeightsError(InputError):
    """A model folder whose config or weights cannot be used; the message names the file."""


def read_config_json(path: Path) -> dict:
    """The JSON object in a model folder's ``config.json``; else :class:`WeightsError`."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(f"{path}: not a JSON model config ({err})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: a model config must be a JSON object of HNetConfig "
                           f"fields, got a JSON {type(data).__name__}")
    return data


def read_config(path: Path) -> HNetConfig:
    """``config.json`` as an :class:`HNetConfig`; unreadable or invalid -> :class:`WeightsError`."""
    data = read_config_json(path)
    try:
        return HNetConfig.from_dict(data)
    except (TypeError, ValueError, KeyError) as err:
        raise WeightsError(f"{path}: invalid model config: {err}") from None


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the safetensors header (no tensor data is read)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except SafetensorError as err:
        raise WeightsError(f"{path}: corrupt or truncated safetensors file ({err})") from None


def expected_shapes(model_cls: type[nn.Module], config: HNetConfig) -> dict[str, tuple[int, ...]]:
    """The shapes ``save_pretrained`` writes for ``config``, from a model built on the meta
    device (no memory is allocated, whatever sizes the config asks for)."""
    with torch.device("meta"):
        model = model_cls(config)
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if config.tie_embeddings:
        shapes.pop("lm_head.weight", None)
    return shapes


def check_finite(state: dict[str, torch.Tensor], path: Path | str) -> None:
    """Raise :class:`WeightsError` naming the first tensor holding NaN or inf."""
    for name, tensor in state.items():
        if tensor.is_floating_point() or tensor.is_complex():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                bad = int(finite.numel() - finite.sum())
                raise WeightsError(
                    f"{path}: tensor {name!r} holds {bad:,} non-finite value(s) (NaN/inf) of "
                    f"{tensor.numel():,}; a model with them computes nothing usable: use another "
                    "checkpoint")


def load_model_files(
    folder: Path, model_cls: type[nn.Module], device: str = "cpu", strict: bool = True
) -> tuple[HNetConfig, dict[str, torch.Tensor]]:
    """``(config, state dict)`` of a saved model folder, validated before anything is built.

    Refused with :class:`WeightsError`: an unreadable config, a weights file whose header does
    not parse, a config whose tensors differ from the file's (``strict``; otherwise only when the
    config would need more parameters than the file holds or a shared tensor's shape differs),
    and NaN/inf values in any tensor.
    """
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    config = read_config(config_path)
    stored = tensor_shapes(weights_path)
    expected = expected_shapes(model_cls, config)
    n_stored = sum(math.prod(s) for s in stored.values())
    n_expected = sum(math.prod(s) for s in expected.values())
    differ = sorted(
        name for name in expected.keys() & stored.keys() if expected[name] != stored[name])
    missing = sorted(expected.keys() - stored.keys())
    unexpected = sorted(stored.keys() - expected.keys())
    if differ or n_expected > n_stored or (strict and (missing or unexpected)):
        problems = [f"{name}: config {expected[name]}, file {stored[name]}" for name in differ[:3]]
        if strict or n_expected > n_stored:
            problems += [f"missing {name}" for name in missing[:3]]
            problems += [f"unexpected {name}" for name in unexpected[:3]]
        raise WeightsError(
            f"{config_path} does not describe {weights_path}: the config needs {n_expected:,} "
            f"parameters, the file holds {n_stored:,} ({'; '.join(problems)})")
    try:
        state = load_file(str(weights_path), device=device)
    except SafetensorError as err:
        raise WeightsError(f"{weights_path}: corrupt or truncated safetensors file ({err})"
                           ) from None
    check_finite(state, weights_path)
    return config, state
