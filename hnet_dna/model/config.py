"""Model configuration: dataclasses mirroring the official H-Net JSON configs.

Any field of ``AttnConfig`` / ``HNetConfig`` that is a list is indexed by stage
(stage 0 = outermost, operating on bases); a scalar or a one-element list is shared by all
stages.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

Layout = list[Union[str, "Layout"]]

LAYER_PATTERN = re.compile(r"([mMtT])(\d+)")

# Keys a saved model folder's config.json carries besides the architecture (see
# ``hnet_dna.model.pretrained``): they describe the folder, so ``from_dict`` sets them aside.
FOLDER_METADATA_KEYS = ("model_type", "hnet_dna_version", "vocabulary", "training")


@dataclass
class SSMConfig:
    """Mamba-2 settings, shared by all stages (official defaults)."""

    d_conv: int = 4
    expand: int = 2
    d_state: int = 128
    headdim: int = 64
    ngroups: int = 1
    chunk_size: int = 256


@dataclass
class AttnConfig:
    """Attention settings; each list is indexed by stage."""

    num_heads: list[int] = field(default_factory=lambda: [8])
    rotary_emb_dim: list[int] = field(default_factory=lambda: [32])
    # Left window (keys before the query), -1 = global. 1023 means 1024 keys incl. self.
    window_size: list[int] = field(default_factory=lambda: [-1])


@dataclass
class HNetConfig:
    arch_layout: Layout = field(default_factory=lambda: ["m2", ["T2"], "m2"])
    d_model: list[int] = field(default_factory=lambda: [128, 128])
    # Width of the SwiGLU MLP in upper-case (M/T) layers, per stage (0 = none used).
    d_intermediate: list[int] = field(default_factory=lambda: [0, 256])
    vocab_size: int = 16
    ssm_cfg: SSMConfig = field(default_factory=SSMConfig)
    attn_cfg: AttnConfig = field(default_factory=AttnConfig)
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.ssm_cfg, dict):
            self.ssm_cfg = SSMConfig(**self.ssm_cfg)
        if isinstance(self.attn_cfg, dict):
            self.attn_cfg = AttnConfig(**self.attn_cfg)
        self.arch_layout = _to_plain(self.arch_layout)
        self.validate()

    # ----------------------------------------------------------------- layout
    @property
    def num_stages(self) -> int:
        """Number of chunking stages (0 = isotropic, 1 = one routing module, ...)."""
        return layout_depth(self.arch_layout)

    def stage_layout(self, stage: int) -> Layout:
        layout = self.arch_layout
        for _ in range(stage):
            layout = layout[1]
        return layout

    def stage_cfg(self, stage: int) -> dict[str, Any]:
        """Flat dict of every per-stage value for ``stage`` (lists indexed, scalars kept)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("arch_layout", "ssm_cfg", "attn_cfg"):
                continue
            out[f.name] = stage_value(getattr(self, f.name), stage)
        for sub in (self.attn_cfg, self.ssm_cfg):
            for f in dataclasses.fields(sub):
                out[f.name] = stage_value(getattr(sub, f.name), stage)
        return out

    def validate(self) -> None:
        depth = self.num_stages
        for name in ("d_model", "d_intermediate"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) < depth + 1:
                raise ValueError(
                    f"HNetConfig.{name} has {len(value)} entries but arch_layout has "
                    f"{depth + 1} stages: {self.arch_layout}"
                )
        for stage in range(depth + 1):
            layout = self.stage_layout(stage)
            strings = [layout[0]] if len(layout) == 1 else [layout[0], layout[2]]
            for s in strings:
                parse_layout_string(s)
            cfg = self.stage_cfg(stage)
            d = cfg["d_model"]
            if stage < depth and d % 32 != 0:
                raise ValueError(f"d_model[{stage}]={d} must be a multiple of 32 (EMA heads)")
            kinds = {kind.lower() for s in strings for kind, _ in parse_layout_string(s)}
            # checked here, not only when the layers are built, so that a config file's error
            # is reported with the file's name (read_config, official_config)
            heads = cfg["num_heads"]
            if "t" in kinds and (heads <= 0 or d % heads != 0):
                raise ValueError(f"d_model[{stage}]={d} must be divisible by "
                                 f"num_heads[{stage}]={heads} (attention layers)")
            inner, headdim = cfg["expand"] * d, cfg["headdim"]
            if "m" in kinds and (headdim <= 0 or inner % headdim != 0):
                raise ValueError(f"expand * d_model[{stage}] = {inner} must be divisible by "
                                 f"ssm_cfg.headdim={headdim} (Mamba-2 layers)")
        widths = [self.stage_cfg(s)["d_model"] for s in range(depth + 1)]
        if any(b < a for a, b in zip(widths[:-1], widths[1:], strict=True)):
            raise ValueError(f"d_model must not shrink going inward, got {widths}")

    # ----------------------------------------------------------------- io
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HNetConfig:
        data = {k: v for k, v in data.items() if k not in FOLDER_METADATA_KEYS}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown HNetConfig fields: {sorted(unknown)}")
        return cls(**data)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> HNetConfig:
        p = Path(path_or_text)
        text = p.read_text() if p.suffix == ".json" and p.exists() else str(path_or_text)
        return cls.from_dict(json.loads(text))

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> HNetConfig:
        return cls.from_dict(yaml.safe_load(Path(path).read_text()))


def stage_value(value: Any, stage: int) -> Any:
    """Stage ``stage``'s entry of a per-stage value: scalars and one-element lists are shared by
    all stages, longer lists are indexed by stage (stage 0 = outermost)."""
    if not isinstance(value, (list, tuple)):
        return value
    if len(value) == 1:
        return value[0]
    if stage >= len(value):
        raise ValueError(f"per-stage list {value} has no entry for stage {stage}")
    return value[stage]


def per_stage(values: Any, num_stages: int, what: str) -> list[float]:
    """``num_stages`` floats from a per-stage setting (see :func:`stage_value`); a list of any
    other length than 1 or ``num_stages`` names ``what`` in its error."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) not in (1, num_stages):
        raise ValueError(f"{what} has {len(values)} entries but the model has {num_stages} stages")
    return [float(stage_value(values, stage)) for stage in range(num_stages)]


def _to_plain(layout: Any) -> Any:
    """Turn tuples / OmegaConf ListConfig into plain nested lists of str."""
    if isinstance(layout, str):
        return layout
    return [_to_plain(x) for x in layout]


def layout_depth(layout: Layout) -> int:
    """0 for ``["T9"]``, 1 for ``["m4", ["T15"], "m4"]``, ..."""
    if len(layout) == 1:
        return 0
    if len(layout) != 3 or not isinstance(layout[1], list):
        raise ValueError(f"stage layout must be [main] or [encoder, inner, decoder]: {layout}")
    return 1 + layout_depth(layout[1])


def parse_layout_string(spec: str) -> list[tuple[str, int]]:
    """``"m3T1"`` -> ``[("m", 3), ("T", 1)]``; errors on anything unparseable."""
    pieces = LAYER_PATTERN.findall(spec)
    if "".join(f"{k}{n}" for k, n in pieces) != spec:
        raise ValueError(
            f"bad layout string {spec!r}: expected letters m/M/t/T each followed by a count"
        )
    return [(k, int(n)) for k, n in pieces]


def expand_layout_string(spec: str) -> list[str]:
    """``"m2T1"`` -> ``["m", "m", "T"]`` (one letter per block)."""
    return [kind for kind, n in parse_layout_string(spec) for _ in range(n)]
