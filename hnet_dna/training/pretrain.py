"""``hnet-dna pretrain``: hydra entry point and the run orchestration behind it."""

from __future__ import annotations

import itertools
import logging
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf

from hnet_dna.model.config import HNetConfig
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.training import checkpoint as ckpt
from hnet_dna.training import data as data_mod
from hnet_dna.training.config import DataConfig, PretrainConfig
from hnet_dna.training.distributed import (
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from hnet_dna.training.markov import markov_bits_per_base
from hnet_dna.training.metrics import PLOT_NAME, plot_metrics
from hnet_dna.training.trainer import NonFiniteLossError, Trainer

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
RESOLVED_CONFIG_NAME = "config.yaml"

# In the schema the corpus is mandatory (a data group must name one; data=hg38 leaves it to the
# command line), while the Python dataclass default stays usable on its own.
ConfigStore.instance().store(
    name="pretrain_schema", node=PretrainConfig(data=DataConfig(corpus=MISSING))
)


def load_pretrain_config(overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/pretrain.yaml`` composed with overrides, outside a hydra run (tests, notebooks)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="pretrain", overrides=list(overrides))


def parse_config(cfg: DictConfig) -> tuple[PretrainConfig, HNetConfig]:
    """Validated dataclasses from a composed config (unknown or mistyped keys raise)."""
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    hydra_free = {k: v for k, v in container.items() if k != "hydra"}
    if not isinstance(hydra_free.get("model"), dict):
        raise ValueError("the config has no model section: pick one, e.g. model=hnet_1stage_tiny")
    model_cfg = HNetConfig.from_dict(hydra_free["model"])
    typed = OmegaConf.merge(OmegaConf.structured(PretrainConfig), hydra_free)
    return OmegaConf.to_object(typed), model_cfg


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_resume(resume: bool | None, checkpoint_dir: Path) -> Path | None:
    """Checkpoint to continue from: the newest in the run folder, as ``resume`` allows."""
    ckpt.remove_stale_temporaries(checkpoint_dir)
    latest = ckpt.latest_checkpoint(checkpoint_dir)
    if resume is True and latest is None:
        raise FileNotFoundError(f"resume=true but {checkpoint_dir} holds no complete checkpoint")
    if resume is False and latest is not None:
        raise FileExistsError(
            f"{checkpoint_dir} already holds checkpoints ({latest.name}); resume=false would mix "
            "two runs in one folder: pass resume=true or choose another hydra.run.dir"
        )
    return latest


def build_model(model_cfg: HNetConfig, checkpoint: Path | None) -> HNetForCausalLM:
    if checkpoint is None:
        model = HNetForCausalLM(model_cfg)
        model.init_weights()
        return model
    model = HNetForCausalLM.from_pretrained(checkpoint)
    if model.config.to_dict() != model_cfg.to_dict():
        raise ValueError(
            f"{checkpoint} holds a different model than the config asks for; resume with the "
            "same model settings or start a new run folder"
        )
    return model


def run_pretrain(cfg: PretrainConfig, model_cfg: HNetConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train, evaluate, checkpoint and (rank 0) report; returns the final metrics."""
    env = init_distributed(cfg.trainer.distributed, cfg.trainer.device)
    try:
        # Every rank must write to rank 0's folder (hydra's timestamp may differ by a second).
        run_dir = Path(str(broadcast_object(str(run_dir), env)))
        checkpoint = resolve_resume(cfg.resume, run_dir / "checkpoints")
        # Same seed on every rank: FSDP does not broadcast the initial weights; the data
        # layer separates ranks by itself.
        seed_everything(cfg.seed)
        model = build_model(model_cfg, checkpoint)
        data = cfg.data
        model.training_info = {
            "data": f"{data.corpus} ({data.train_split} split, {data.context_length}-token windows)"
        }
        corpus = data_mod.open_corpus(cfg.data)
        trainer = Trainer(
            cfg.trainer,
            model,
            data_mod.train_stream(corpus, cfg.data, cfg.seed),
            data_mod.vocabulary_for(cfg.data),
            run_dir,
            env,
            eval_batches=data_mod.eval_batches(corpus, cfg.data),
        )
        if checkpoint is not None:
            trainer.load(checkpoint)
            log.info("resumed from %s at step %d", checkpoint, trainer.step)
        if env.is_main:
            resolved = OmegaConf.structured(cfg)
            resolved.model = model_cfg.to_dict()
            OmegaConf.save(resolved, run_dir / RESOLVED_CONFIG_NAME)
            log.info("model: %.2fM parameters, LR multipliers per stage %s",
                     model.num_parameters() / 1e6, [round(m, 3) for m in trainer.lr_multipliers])
        final = trainer.fit()
        baselines: dict[int, float] = {}
        if env.is_main:
            if cfg.trainer.baselines:
                baselines = markov_baselines(corpus, cfg, trainer)
            plot_metrics(run_dir)
            print(summary(run_dir, trainer, final, baselines))
        return {"final": final, "baselines": baselines, "run_dir": str(run_dir)}
    finally:
        shutdown_distributed()


def markov_baselines(corpus: Any, cfg: PretrainConfig, trainer: Trainer) -> dict[int, float]:
    """Order-k Markov bits per base on the tiled held-out windows the model is scored on.

    Fitted on the training split tiled into windows of the same length. With
    ``trainer.eval_max_batches`` set, the same first batches are used (identical windows when
    single-process; with several ranks the model sees each rank's first batches instead).
    """
    window = cfg.data.context_length
    train = (t.numpy() for t in data_mod.split_windows(corpus, cfg.data.train_split, window))
    limit = cfg.trainer.eval_max_batches
    batches = data_mod.eval_batches(corpus, cfg.data, sharded=False)()
    held_out = (row.numpy() for b in itertools.islice(batches, limit) for row in b["tokens"])
    results = markov_bits_per_base(train, held_out, range(cfg.trainer.markov_order + 1))
    for order, bpb in results.items():
        trainer.log_metrics("baseline", {"name": f"markov-{order}", "order": order, "bpb": bpb})
    return results


def summary(
    run_dir: Path, trainer: Trainer, final: dict[str, float], baselines: dict[int, float]
) -> str:
    lines = [f"run folder: {run_dir}"]
    if final:
        lines.append(
            f"held-out bits per base: {final['bpb']:.4f} over {int(final['bases'])} bases "
            f"(uppercase only: {final['bpb_upper']:.4f} over {int(final['bases_upper'])})"
        )
    if baselines:
        best = min(baselines, key=baselines.get)
        lines.append(
            f"Markov baselines on the same bases: order 0 {baselines[0]:.4f}, "
            f"best order {best} {baselines[best]:.4f}"
        )
    if trainer.last_checkpoint is not None:
        lines.append(f"checkpoint: {trainer.last_checkpoint} (HNetForCausalLM.from_pretrained)")
    lines.append(f"metrics: {run_dir / 'metrics.jsonl'}, plot: {run_dir / PLOT_NAME}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="pretrain")
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra task: returns the final held-out bits per base (the objective for sweeps)."""
    pretrain_cfg, model_cfg = parse_config(cfg)
    run_dir = pretrain_cfg.run_dir or HydraConfig.get().runtime.output_dir
    try:
        result = run_pretrain(pretrain_cfg, model_cfg, run_dir)
    except NonFiniteLossError as error:
        # A diagnosis, not a crash: no traceback, exit status 1.
        print(f"hnet-dna pretrain stopped: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    return result["final"].get("bpb")
