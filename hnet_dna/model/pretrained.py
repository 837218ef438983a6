"""Model folders, the Hugging Face Hub, and checkpoints of the official H-Net release.

A model folder is self-describing: ``config.json`` holds the ``HNetConfig`` fields plus
``model_type``, the ``hnet_dna`` version that wrote it, the token vocabulary (name -> id) and,
when known, what it was trained on and its last held-out metrics; ``model.safetensors`` holds the
weights; ``README.md`` is a model card generated from the same facts. The folder is what
``HNetForCausalLM.save_pretrained`` writes, ``from_pretrained`` reads (from disk or from the Hub
through ``huggingface_hub``'s cache) and ``push_to_hub`` uploads.

The official release (goombalab/hnet, ``cartesia-ai/hnet_*`` on the Hub) ships a JSON config
without ``headdim`` / ``ngroups`` (Mamba-2's defaults, 64 and 1, apply) and a ``torch.save``d
state dict whose names are the official module tree, which ours reproduces; ``load_official``
reads both (the weights with ``weights_only=True``) and checks them before anything is built.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hnet_dna._version import __version__
from hnet_dna.model.config import FOLDER_METADATA_KEYS, HNetConfig
from hnet_dna.model.files import CONFIG_NAME, FOLDER_FILES, WEIGHTS_NAME
from hnet_dna.model.weights import WeightsError, check_finite, read_config, read_config_json

MODEL_TYPE = "hnet_dna"

# The official ByteTokenizer (hnet/utils/tokenizers.py): ids 0-255 are UTF-8 bytes, with BOS and
# EOS taking the two byte values that never occur in UTF-8 text.
BYTE_VOCABULARY = {"name": "utf8_bytes", "tokens": {"BOS": 254, "EOS": 255}}

# Fields of the official config dataclasses (hnet/models/config_hnet.py) and the Mamba-2 defaults
# the official code leaves to mamba_ssm (headdim 64, ngroups 1).
OFFICIAL_FIELDS = {
    "arch_layout", "d_model", "d_intermediate", "vocab_size", "ssm_cfg", "attn_cfg",
    "tie_embeddings",
}
OFFICIAL_REQUIRED = ("arch_layout", "d_model", "d_intermediate", "attn_cfg")
OFFICIAL_SSM_FIELDS = {"d_conv", "expand", "d_state", "chunk_size"}
OFFICIAL_ATTN_FIELDS = {"num_heads", "rotary_emb_dim", "window_size"}
OFFICIAL_MAMBA_DEFAULTS = {"headdim": 64, "ngroups": 1}
OFFICIAL_VOCAB_SIZE = 256

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ---------------------------------------------------------------------------- vocabulary
def check_vocabulary(vocabulary: Mapping[str, Any], vocab_size: int) -> dict[str, Any]:
    """``{"name": str, "tokens": {token: id}}`` with every id inside the embedding table."""
    if not isinstance(vocabulary, Mapping) or set(vocabulary) - {"name", "tokens"}:
        raise ValueError(f"vocabulary must be {{'name': ..., 'tokens': {{...}}}}, got {vocabulary}")
    tokens = dict(vocabulary.get("tokens", {}))
    bad = {t: i for t, i in tokens.items() if not isinstance(i, int) or not 0 <= i < vocab_size}
    if bad:
        raise ValueError(f"vocabulary ids outside 0..{vocab_size - 1}: {bad}")
    return {"name": str(vocabulary.get("name", "")), "tokens": tokens}


# ---------------------------------------------------------------------------- folder config
def folder_config(
    config: HNetConfig,
    vocabulary: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``config.json`` of a model folder: metadata first, then the ``HNetConfig`` fields."""
    out: dict[str, Any] = {"model_type": MODEL_TYPE, "hnet_dna_version": __version__}
    if vocabulary is not None:
        out["vocabulary"] = check_vocabulary(vocabulary, config.vocab_size)
    if training:
        out["training"] = dict(training)
    return {**out, **config.to_dict()}


def read_folder_config(folder: Path) -> tuple[HNetConfig, dict[str, Any]]:
    """(model config, metadata) from ``folder/config.json``; older folders have no metadata."""
    path = folder / CONFIG_NAME
    data = read_config_json(path)
    model_type = data.get("model_type", MODEL_TYPE)
    if model_type != MODEL_TYPE:
        raise WeightsError(
            f"{path}: model_type {model_type!r} is not {MODEL_TYPE!r}; for a checkpoint of the "
            "official H-Net release use `hnet-dna convert-official` / from_official"
        )
    metadata = {k: data[k] for k in FOLDER_METADATA_KEYS if k in data}
    return read_config(path), metadata


# ---------------------------------------------------------------------------- model card
def model_card(
    config: HNetConfig,
    num_parameters: int,
    vocabulary: Mapping[str, Any] | None,
    training: Mapping[str, Any] | None,
) -> str:
    """Markdown model card (Hub front matter + architecture, vocabulary, data and metrics)."""
    front = ["---", "library_name: hnet-dna", "tags:", "- h-net", "- dynamic-chunking"]
    if vocabulary and vocabulary.get("name") == "dna":
        front += ["- dna", "- genomics"]
    front.append("---")
    stages = config.num_stages
    widths = [config.stage_cfg(s)["d_model"] for s in range(stages + 1)]
    lines = [
        *front,
        "",
        f"# H-Net language model ({stages}-stage, {num_parameters / 1e6:.2f}M parameters)",
        "",
        f"Written by hnet_dna {__version__}. Load it with:",
        "",
        "```python",
        "from hnet_dna import HNetForCausalLM",
        'model = HNetForCausalLM.from_pretrained("THIS_REPO_OR_FOLDER")',
        "```",
        "",
        "## Architecture",
        "",
        f"- `arch_layout`: `{json.dumps(config.arch_layout)}`",
        f"- widths per stage (`d_model`): {widths}",
        f"- vocabulary size: {config.vocab_size}; tied embeddings: {config.tie_embeddings}",
        "- full configuration: `config.json`",
        "",
        "## Vocabulary",
        "",
    ]
    if vocabulary:
        tokens = ", ".join(f"{t}={i}" for t, i in vocabulary["tokens"].items())
        lines.append(f"`{vocabulary['name']}`: {tokens}")
    else:
        lines.append("Not recorded when this folder was written.")
    lines += ["", "## Training data", ""]
    training = dict(training or {})
    lines.append(str(training["data"]) if "data" in training else "Not recorded.")
    if "step" in training:
        lines += ["", f"Training steps when this folder was written: {training['step']}."]
    lines += ["", "## Metrics", ""]
    metrics = training.get("metrics") or {}
    if metrics:
        if "metrics_step" in training:
            lines += [f"Held-out evaluation at step {training['metrics_step']}:", ""]
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
    else:
        lines.append("Not recorded.")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------- the Hub
def is_repo_id(name: str | Path) -> bool:
    """``"org/name"`` that names no existing local path: a Hugging Face Hub repository."""
    return isinstance(name, str) and bool(_REPO_ID.match(name)) and not Path(name).exists()


def resolve_folder(
    name_or_path: str | Path,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """A local model folder for ``name_or_path``: the path itself, or a Hub repo's snapshot.

    A ``Path``, or a string naming an existing path, is local. Another ``"org/name"`` string is
    a Hub repository, fetched into (or, with ``local_files_only`` or ``HF_HUB_OFFLINE=1``, read
    from) the huggingface_hub cache at ``revision`` (branch, tag or commit; default ``main``).
    """
    local = Path(name_or_path)
    if not is_repo_id(name_or_path):
        if revision is not None:
            raise ValueError(f"revision={revision!r} only applies to Hub repositories")
        _check_folder(local)
        return local
    from huggingface_hub import constants, snapshot_download

    try:
        snapshot = snapshot_download(
            name_or_path,
            revision=revision,
            # Read now, not when huggingface_hub was imported (older releases bind both early).
            cache_dir=cache_dir if cache_dir is not None else constants.HF_HUB_CACHE,
            local_files_only=local_files_only or constants.HF_HUB_OFFLINE,
            token=token,
            allow_patterns=list(FOLDER_FILES),
            library_name="hnet-dna",
        )
    except Exception as err:  # the hub's own errors say what was missing (repo, revision, cache)
        raise FileNotFoundError(
            f"{name_or_path!r} is no local folder, and the Hugging Face Hub repository could not "
            f"be read (revision {revision or 'main'}): {type(err).__name__}: {err}"
        ) from err
    folder = Path(snapshot)
    _check_folder(folder, f"Hub repository {name_or_path!r} (revision {revision or 'main'})")
    return folder


def _check_folder(folder: Path, what: str | None = None) -> None:
    if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(
            f"{what or folder} is not a saved model folder: expected {CONFIG_NAME} and "
            f"{WEIGHTS_NAME}"
        )


def upload_folder(
    folder: Path,
    repo_id: str,
    *,
    commit_message: str = "Upload H-Net model",
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | bool | None = None,
) -> Any:
    """Create ``repo_id`` if needed and upload the model folder as one commit (``CommitInfo``)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
    return api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        revision=revision,
        commit_message=commit_message,
        create_pr=create_pr,
        allow_patterns=list(FOLDER_FILES),
    )


# ---------------------------------------------------------------------------- official release
def official_config(path: str | Path) -> HNetConfig:
    """``HNetConfig`` from an official H-Net JSON config (fields checked, official defaults)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of H-Net config fields")
    _check_fields(path, "", data, OFFICIAL_FIELDS)
    missing = [k for k in OFFICIAL_REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path}: official H-Net config lacks {missing}")
    ssm = data.get("ssm_cfg", {})
    _check_fields(path, "ssm_cfg.", ssm, OFFICIAL_SSM_FIELDS)
    _check_fields(path, "attn_cfg.", data["attn_cfg"], OFFICIAL_ATTN_FIELDS)
    fields = {
        "vocab_size": OFFICIAL_VOCAB_SIZE,
        "tie_embeddings": False,
        **data,
        "ssm_cfg": {**OFFICIAL_MAMBA_DEFAULTS, **ssm},
    }
    try:
        return HNetConfig.from_dict(fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from err


def _check_fields(path: Path, prefix: str, data: Any, allowed: set[str]) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{path}: {prefix.rstrip('.')} must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(
            f"{path}: {[prefix + k for k in unknown]} are not fields of the official H-Net "
            f"config (expected some of {sorted(prefix + k for k in allowed)})"
        )


def official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official ``.pt`` checkpoint, unpickled with ``weights_only=True``."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # UnpicklingError and friends: say which file and why, in one line
        raise ValueError(
            f"{path}: not a torch state dict loadable with weights_only=True "
            f"({type(err).__name__}: {_torch_load_reason(err)})"
        ) from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state)}")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: entries that are not tensors: {not_tensors[:5]}")
    check_finite(state, path)  # refused here, not after conversion by from_pretrained
    return dict(state)


def _torch_load_reason(err: Exception) -> str:
    """What torch.load refused, without its advice to retry with ``weights_only=False`` (which
    would run the pickle's code): the ``WeightsUnpickler error`` sentence, else the first line."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", text, re.DOTALL)
    reason = found.group(1) if found else text.strip().splitlines()[0] if text.strip() else ""
    return " ".join(reason.split())


def check_state_keys(expected: Mapping[str, torch.Tensor], state: Mapping[str, Any], source: str):
    """Same names and shapes as the model, or one error listing the differences."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shapes:
            parts.append(f"{len(shapes)} with another shape (e.g. {shapes[:3]})")
        raise ValueError(
            f"{source} does not match the model its config describes: " + "; ".join(parts)
        )
