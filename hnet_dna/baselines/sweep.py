"""Hydra glue of the data-efficiency sweep: config -> ``RunSpec`` -> ``run_one``, crash-safe.

The config (``pipelines/data_efficiency/conf``) has a ``corpus`` group, a ``preset`` that
defines ``models``, ``budget``, ``trainer`` and the multirun axes, and the job's own choice of
``model_name``, ``lr`` and ``seed``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hnet_dna.baselines.corpus import CorpusSpec
from hnet_dna.baselines.experiment import (
    BudgetSpec,
    ModelSpec,
    RunSpec,
    record_failure,
    run_dir_for,
    run_one,
)
from hnet_dna.baselines.flops import preset_flops
from hnet_dna.training.config import TrainerConfig

log = logging.getLogger(__name__)


def _typed(schema: type, node: Any, what: str) -> Any:
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)  # resolved against the whole config
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
    except Exception as err:  # OmegaConf's errors name the key; add which section it was
        raise ValueError(f"invalid `{what}` section: {err}") from err


def spec_from_config(cfg: DictConfig) -> RunSpec:
    """Validated ``RunSpec`` of the job selected by ``cfg.model_name`` / ``cfg.lr``."""
    models = cfg.get("models")
    if not models:
        raise ValueError("no `models` in the config: choose a preset, e.g. preset=cpu_tiny")
    if cfg.model_name not in models:
        raise KeyError(f"model_name={cfg.model_name!r} is not in the preset's models: "
                       f"{sorted(models)}")
    node = OmegaConf.to_container(models[cfg.model_name], resolve=True)
    config = node.pop("config")
    model = _typed(ModelSpec, {**node, "config": {}}, f"models.{cfg.model_name}")
    model.config = config  # the nested layout list cannot be typed by OmegaConf
    trainer = _typed(TrainerConfig, cfg.trainer, "trainer")
    if cfg.get("lr") is not None:
        trainer.optim.lr = float(cfg.lr)
    return RunSpec(
        corpus=_typed(CorpusSpec, cfg.corpus, "corpus"),
        model_name=str(cfg.model_name),
        model=model,
        budget=_typed(BudgetSpec, cfg.budget, "budget"),
        trainer=trainer,
        seed=int(cfg.seed),
    )


def sweep_task(cfg: DictConfig) -> float | None:
    """One hydra job: run (or skip) it; a crash is recorded and, unless ``fail_fast``, the
    sweep moves on to the next job. Returns the final held-out bits per base."""
    spec = spec_from_config(cfg)
    root = Path(cfg.output_root)
    run_dir = run_dir_for(root / "runs", spec)
    try:
        result = run_one(spec, run_dir, cache_dir=root / "tokenizers")
    except Exception as err:
        record = record_failure(run_dir, spec, err)
        log.error("run %s failed: %s (see %s)", run_dir, record["error"],
                  run_dir / "failure.json")
        if cfg.get("fail_fast", False):
            raise
        return None
    if result.get("status") == "not_applicable":
        log.info("%s does not apply to %s corpora: skipped", spec.model_name, spec.corpus.kind)
        return None
    bpb = result["final"].get("bpb")
    log.info("%s / %s / lr %g: held-out bits per base %.4f", spec.corpus.name, spec.model_name,
             spec.trainer.optim.lr, bpb)
    return bpb


def planned_flops(cfg: DictConfig, kind: str) -> dict[str, float]:
    """Forward FLOPs per base of every preset model that applies to ``kind`` corpora, at the
    target compression and the tokenizer's expected units per token (for FLOP matching)."""
    vocab = {"dna": 16, "text": 256}[kind]
    out = {}
    for name in cfg.models:
        model = spec_from_config(OmegaConf.merge(cfg, {"model_name": name})).model
        if kind not in model.kinds:
            continue
        tok = model.tokenizer
        units = {"unit": 1.0, "kmer": float(tok.k)}.get(tok.kind, tok.expected_units_per_token)
        if units is None:
            raise ValueError(f"models.{name}: BPE needs tokenizer.expected_units_per_token")
        size = {"unit": vocab, "kmer": 4**tok.k + 7}.get(tok.kind, tok.vocab_size)
        report = preset_flops(model.config, size, cfg.budget.context_length,
                              model.target_ratio, units)
        out[name] = report.forward_per_base
    return out
