"""``hnet-dna pretrain``: hydra entry point and the run orchestration behind it.

A run folder is marked by ``run.json``, which records the settings that fix the training stream
and the held-out set (data section, seed, grad_accum, eval_max_batches). Resuming with other
values is refused unless ``trainer.allow_data_change=true`` (then logged); a ``hydra.run.dir``
that already holds other files and no run is refused before anything is written there. When the
newest checkpoint is damaged, the run resumes from the newest intact one and sets the damaged
one aside (``checkpoints/corrupt-step-XXXXXXXX``).
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, OmegaConf

from hnet_dna.errors import InputError, OutputError
from hnet_dna.model.build import build_model
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.model.weights import WeightsError
from hnet_dna.outputs import atomic_output
from hnet_dna.training import checkpoint as ckpt
from hnet_dna.training import data as data_mod
from hnet_dna.training.config import DataConfig, PretrainConfig
from hnet_dna.training.distributed import (
    broadcast_object,
    gather_objects,
    init_distributed,
    rank_tag,
    shutdown_distributed,
)
from hnet_dna.training.markov import markov_bits_per_base
from hnet_dna.training.metrics import PLOT_NAME, plot_metrics
from hnet_dna.training.resources import setup_threads
from hnet_dna.training.trainer import HELDOUT, NonFiniteLossError, Trainer, heldout_evaluator

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
RESOLVED_CONFIG_NAME = "config.yaml"
RUN_MARKER_NAME = "run.json"

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


def stream_settings(cfg: PretrainConfig) -> dict[str, Any]:
    """The settings that fix a run's training stream and held-out set (compared on resume)."""
    data = dataclasses.asdict(cfg.data)
    data.pop("num_workers")  # the batches are the same for any number of workers
    return {"seed": cfg.seed, "data": data, "grad_accum": cfg.trainer.grad_accum,
            "eval_max_batches": cfg.trainer.eval_max_batches}


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_run_folder(run_dir: Path) -> bool:
    """A run folder written before ``run.json`` existed: checkpoints, or our config.yaml."""
    if (run_dir / ckpt.CHECKPOINTS_DIR).is_dir():
        return True
    try:
        saved = OmegaConf.load(run_dir / RESOLVED_CONFIG_NAME)
        return {"model", "data", "trainer"} <= set(saved.keys())
    except Exception:  # absent, unreadable or someone else's YAML
        return False


def check_run_dir(run_dir: Path, settings: dict[str, Any], allow_data_change: bool) -> None:
    """Refuse a folder that is not a run folder, or a resume with other stream settings.

    Nothing is written here; hydra's own ``.hydra/`` and ``*.log`` entries are not counted.
    """
    marker = run_dir / RUN_MARKER_NAME
    if not marker.exists():
        foreign = sorted(p.name for p in run_dir.iterdir()
                         if p.name != ".hydra" and not p.name.endswith(".log")
                         ) if run_dir.is_dir() else []
        if foreign and not _is_run_folder(run_dir):
            raise OutputError(
                f"run folder {run_dir} already holds files that are not from an hnet-dna run "
                f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); choose a new "
                "or empty hydra.run.dir")
        return
    try:
        saved = json.loads(marker.read_text())["stream"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(f"{marker}: damaged run marker; restore it or use another run folder"
                         ) from None
    old, new = _flatten(saved), _flatten(settings)
    changed = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
               for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
    if not changed:
        return
    if not allow_data_change:
        raise InputError(
            f"{run_dir} was trained with other data settings ({'; '.join(changed)}): resuming "
            "would change the training stream and the held-out set mid-run; use a new "
            "hydra.run.dir, or pass trainer.allow_data_change=true to continue anyway")
    log.warning("continuing %s with changed data settings (trainer.allow_data_change=true): %s",
                run_dir, "; ".join(changed))


def write_run_marker(run_dir: Path, settings: dict[str, Any]) -> None:
    with atomic_output(run_dir / RUN_MARKER_NAME) as tmp:
        tmp.write_text(json.dumps({"hnet_dna": "pretrain run", "stream": settings}, indent=1))


def load_resume_point(
    model_cfg: HNetConfig, checkpoint_dir: Path
) -> tuple[HNetForCausalLM, Path, dict[str, Any], list[Path]]:
    """(model, checkpoint, training state, damaged newer checkpoints) of the newest intact one.

    A checkpoint whose weights or training state cannot be read is skipped with a warning; when
    none is intact the run stops instead of silently starting over.
    """
    damaged: list[Path] = []
    reasons: list[str] = []
    for _, folder in reversed(ckpt.list_checkpoints(checkpoint_dir)):
        try:
            model = build_model(model_cfg, folder)
            state = ckpt.load_training_state(folder)
        except (WeightsError, ckpt.CorruptCheckpointError) as err:
            log.warning("checkpoint %s is damaged: %s", folder, err)
            damaged.append(folder)
            reasons.append(str(err))
            continue
        if damaged:
            log.warning("resuming from %s instead of the newest checkpoint %s, which is damaged",
                        folder, damaged[0])
        return model, folder, state, damaged
    raise InputError(f"every checkpoint in {checkpoint_dir} is damaged ({'; '.join(reasons)}); "
                     "move them away to start the run over")


def run_pretrain(cfg: PretrainConfig, model_cfg: HNetConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train, evaluate, checkpoint and (rank 0) report; returns the final metrics."""
    env = init_distributed(cfg.trainer.distributed, cfg.trainer.device)
    try:
        # Threads and workers from this rank's share of the allocation, before any torch work.
        plan = setup_threads(env.device, cfg.trainer.threads, cfg.data.num_workers,
                             report=env.is_main)
        # Every rank must write to rank 0's folder (hydra's timestamp may differ by a second).
        run_dir = Path(str(broadcast_object(str(run_dir), env)))
        settings = stream_settings(cfg)
        check_run_dir(run_dir, settings, cfg.trainer.allow_data_change)
        checkpoint = ckpt.resolve_resume(cfg.resume, run_dir / ckpt.CHECKPOINTS_DIR)
        # Same seed on every rank: FSDP does not broadcast the initial weights; the data
        # layer separates ranks by itself.
        ckpt.seed_everything(cfg.seed)
        state, damaged = None, []
        if checkpoint is None:
            model = build_model(model_cfg)
        else:
            model, checkpoint, state, damaged = load_resume_point(
                model_cfg, run_dir / ckpt.CHECKPOINTS_DIR)
        data = cfg.data
        model.training_info = {
            "data": f"{data.corpus} ({data.train_split} split, {data.context_length}-token windows)"
        }
        corpus = data_mod.open_corpus(cfg.data)
        trainer = Trainer(
            cfg.trainer,
            model,
            data_mod.train_stream(corpus, cfg.data, cfg.seed, plan.workers),
            data_mod.vocabulary_for(cfg.data),
            run_dir,
            env,
            evaluators={HELDOUT: heldout_evaluator(data_mod.eval_batches(corpus, cfg.data))},
        )
        if checkpoint is not None:
            trainer.load(checkpoint, state)
            log.info("resumed from %s at step %d", checkpoint, trainer.step)
        gather_objects(None, env)  # every rank has read its checkpoint before any is moved
        if env.is_main:
            for folder in damaged:
                log.warning("set aside damaged checkpoint %s as %s", folder, ckpt.set_aside(folder))
            write_run_marker(run_dir, settings)
            resolved = OmegaConf.structured(cfg)
            resolved.model = model_cfg.to_dict()
            with atomic_output(run_dir / RESOLVED_CONFIG_NAME) as tmp:
                OmegaConf.save(resolved, tmp)
            log.info("model: %.2fM parameters, LR multipliers per stage %s",
                     model.num_parameters() / 1e6, [round(m, 3) for m in trainer.lr_multipliers])
        final = trainer.fit()
        baselines: dict[int, float] = {}
        fit: tuple[int, int] | None = None
        if env.is_main:
            if cfg.trainer.baselines:
                baselines, fit = markov_baselines(corpus, cfg, trainer)
            plot_metrics(run_dir)
            print(summary(run_dir, trainer, final, baselines, fit))
        # Every rank waits for rank 0's summary, so that all tear the process group down
        # together: a rank that destroyed its gloo group while rank 0 still held its
        # connections aborted at exit now and then ("terminate called without an active
        # exception", seen in the cluster tier's sbatch test).
        gather_objects(None, env)
        return {"final": final, "baselines": baselines, "run_dir": str(run_dir)}
    finally:
        shutdown_distributed()


def markov_baselines(corpus: Any, cfg: PretrainConfig, trainer: Trainer
                     ) -> tuple[dict[int, float], tuple[int, int]]:
    """Order-k Markov bits per base on the tiled held-out windows the model is scored on, and
    ``(bases fitted on, bases of the training split)``.

    Fitted on the training split tiled into windows of the same length: all of it up to
    ``trainer.markov_fit_mb``, else that many Mb of tiles spread evenly over it, so the fit
    costs seconds at any genome size. With ``trainer.eval_max_batches`` set, the same first
    held-out batches are used (identical windows when single-process; with several ranks the
    model sees each rank's first batches instead).
    """
    window = cfg.data.context_length
    t0 = time.perf_counter()
    rows, fitted, split_bases = data_mod.split_windows(
        corpus, cfg.data.train_split, window, int(cfg.trainer.markov_fit_mb * 1e6))
    train = (t.numpy() for t in rows)
    limit = cfg.trainer.eval_max_batches
    batches = data_mod.eval_batches(corpus, cfg.data, sharded=False)()
    held_out = (row.numpy() for b in itertools.islice(batches, limit) for row in b["tokens"])
    results = markov_bits_per_base(train, held_out, range(cfg.trainer.markov_order + 1))
    for order, bpb in results.items():
        trainer.log_metrics("baseline", {"name": f"markov-{order}", "order": order, "bpb": bpb,
                                         "fit_bases": fitted, "train_bases": split_bases})
    log.info("Markov baselines: fitted on %.2f of %.2f Mb of training windows, %.1f s",
             fitted / 1e6, split_bases / 1e6, time.perf_counter() - t0)
    return results, (fitted, split_bases)


def summary(
    run_dir: Path, trainer: Trainer, final: dict[str, float], baselines: dict[int, float],
    fit: tuple[int, int] | None = None,
) -> str:
    lines = [f"run folder: {run_dir}"]
    if final:
        lines.append(
            f"held-out bits per base: {final['bpb']:.4f} over {int(final['bases'])} bases "
            f"(uppercase only: {final['bpb_upper']:.4f} over {int(final['bases_upper'])})"
        )
    if baselines:
        best = min(baselines, key=baselines.get)
        fitted = ""
        if fit is not None:
            share = "all" if fit[0] >= fit[1] else "an even sample"
            fitted = (f" (fitted on {fit[0] / 1e6:.2f} Mb of training windows, {share} of the "
                      f"{fit[1] / 1e6:.2f} Mb split; trainer.markov_fit_mb)")
        lines.append(
            f"Markov baselines on the same bases: order 0 {baselines[0]:.4f}, "
            f"best order {best} {baselines[best]:.4f}{fitted}"
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
    except InputError as error:
        # Bad input (data file, model folder, run folder, setting): one line, exit status 2.
        print(f"{rank_tag()}hnet-dna pretrain: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    except NonFiniteLossError as error:
        # A diagnosis, not a crash: no traceback, exit status 1.
        print(f"{rank_tag()}hnet-dna pretrain stopped: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        # Like the other commands: the user has to act (free space), so status 2, one line;
        # the last checkpoint is intact and the run resumes from it.
        print(f"{rank_tag()}hnet-dna pretrain stopped: {error.strerror}", file=sys.stderr)
        raise SystemExit(2) from error
    return result["final"].get("bpb")
