"""One run of the data-efficiency sweep: a model trained on a corpus for a fixed base budget.

Reuses ``hnet_dna.training`` (``Trainer``, checkpoints, resume) and ``WindowLoader``; this
module only adds what the sweep needs on top: evaluators (``sweep_evaluators``) that score any
tokenizer on the same held-out bases with ``heldout_bits``, several held-out sets, and a budget
in bases, not steps.
Every model of a corpus sees the same unit windows in the same order (same seed); a token model
tokenizes them, so "bases seen" means the same thing for all models.

A finished run leaves ``result.json`` (and is skipped when the sweep runs again); a crash leaves
``failure.json`` with the traceback (and is retried).
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from hnet_dna.baselines.corpus import CorpusSpec, SweepCorpus
from hnet_dna.baselines.flops import count_flops
from hnet_dna.baselines.token_eval import TokenizedStream, tokenize_batch
from hnet_dna.baselines.tokenizers import (
    BPETokenizer,
    KmerTokenizer,
    UnitTokenizer,
    WindowTokenizer,
    text_training_chunks,
)
from hnet_dna.genomics import alphabet
from hnet_dna.genomics.loader import WindowLoader
from hnet_dna.model.build import build_model
from hnet_dna.model.config import HNetConfig, per_stage
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.training.checkpoint import CHECKPOINTS_DIR, resolve_resume, seed_everything
from hnet_dna.training.config import TrainerConfig
from hnet_dna.training.distributed import DistEnv, resolve_device, unwrap
from hnet_dna.training.heldout import heldout_bits
from hnet_dna.training.resources import setup_threads
from hnet_dna.training.trainer import Evaluator, Trainer

log = logging.getLogger(__name__)

RESULT_NAME = "result.json"
FAILURE_NAME = "failure.json"


@dataclass
class TokenizerSpec:
    kind: str = "unit"  # unit | kmer | bpe
    k: int = 6  # kmer
    vocab_size: int = 4096  # bpe
    train_units: int | None = 4_000_000  # bpe: cap on training-split units it learns from
    # Planning only (FLOP matching of presets); runs report the measured value.
    expected_units_per_token: float | None = None


@dataclass
class ModelSpec:
    config: dict[str, Any]  # HNetConfig fields; vocab_size comes from the tokenizer
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    target_ratio: list[float] = field(default_factory=lambda: [3.0])  # H-Net stages only
    kinds: list[str] = field(default_factory=lambda: ["dna", "text"])  # corpora it applies to
    family: str = "isotropic"  # hnet | isotropic (for tables and plots)


@dataclass
class BudgetSpec:
    bases: int  # training bases (units) per run
    eval_every_bases: int
    context_length: int  # units per window, the same for every model
    batch_size: int  # windows per step
    eval_batch_size: int = 16
    eval_max_units: int | None = None  # cap of each held-out set (None = whole block)

    @property
    def bases_per_step(self) -> int:
        return self.context_length * self.batch_size


@dataclass
class RunSpec:
    corpus: CorpusSpec
    model_name: str
    model: ModelSpec
    budget: BudgetSpec
    trainer: TrainerConfig
    seed: int = 0


# --------------------------------------------------------------------------- tokenizers
def build_tokenizer(
    spec: TokenizerSpec, corpus: SweepCorpus, context: int, cache_dir: Path
) -> WindowTokenizer:
    """The model's tokenizer; BPE is trained on the training split once and cached."""
    vocab = corpus.vocab
    if spec.kind == "unit":
        return UnitTokenizer(vocab.size, vocab.pad_id, vocab.bos_id, vocab.unscored_ids)
    if spec.kind == "kmer":
        if corpus.spec.kind != "dna":
            raise ValueError("k-mer tokenization applies to DNA corpora only")
        return KmerTokenizer(spec.k)
    if spec.kind != "bpe":
        raise ValueError(f"tokenizer kind must be unit, kmer or bpe, got {spec.kind!r}")
    folder = cache_dir / f"{corpus.spec.name}-bpe{spec.vocab_size}-{spec.train_units}"
    if (folder / "tokenizer.json").exists():
        return BPETokenizer.load(folder)
    started = time.perf_counter()
    if corpus.spec.kind == "dna":
        texts = (alphabet.decode(w) for w in corpus.train_units(context, spec.train_units))
        tokenizer = BPETokenizer.train(texts, "dna", spec.vocab_size)
    else:
        texts = (chunk for raw in corpus.train_text() for chunk in text_training_chunks(raw))
        tokenizer = BPETokenizer.train(texts, "text", spec.vocab_size)
    log.info("trained %s on %s in %.0fs", tokenizer.name, corpus.spec.name,
             time.perf_counter() - started)
    # Write then rename, so parallel jobs never read a half-written tokenizer.
    tmp = folder.with_name(folder.name + f".tmp{time.time_ns()}")
    tokenizer.save(tmp)
    try:
        tmp.rename(folder)
    except OSError:  # another job finished first: use its copy
        return BPETokenizer.load(folder)
    return tokenizer


# --------------------------------------------------------------------------- evaluators
def heldout_set_evaluator(dataset: Any, tokenizer: WindowTokenizer, unit_pad_id: int,
                          batch_size: int) -> Evaluator:
    """:func:`heldout_bits` of one held-out set through the model's tokenizer: every tokenizer
    is scored on the same bases."""

    def tokenize(batch: dict[str, Any]) -> dict[str, Any]:
        return tokenize_batch(batch, tokenizer, unit_pad_id)

    def evaluate(trainer: Trainer) -> dict[str, float]:
        return heldout_bits(unwrap(trainer.model), WindowLoader(dataset, batch_size), trainer.env,
                            tokenizer.vocabulary, tokenize=tokenize, autocast=trainer.autocast)

    return evaluate


def sweep_evaluators(eval_sets: dict[str, Any], tokenizer: WindowTokenizer, unit_pad_id: int,
                     budget: BudgetSpec) -> dict[str, Evaluator]:
    """``bases_seen`` and the bits per base of every held-out set (``heldout``: ``bpb``, ...;
    any other set ``{set}_bpb``, ...)."""
    evaluators: dict[str, Evaluator] = {
        "bases": lambda trainer: {"seen": float(trainer.step * budget.bases_per_step)}}
    for name, dataset in eval_sets.items():
        evaluators[name] = heldout_set_evaluator(dataset, tokenizer, unit_pad_id,
                                                 budget.eval_batch_size)
    return evaluators


def trainer_config(spec: RunSpec) -> TrainerConfig:
    """The run's ``TrainerConfig`` with steps and evaluation derived from the base budget."""
    budget = spec.budget
    steps = math.ceil(budget.bases / budget.bases_per_step)
    eval_every = max(1, round(budget.eval_every_bases / budget.bases_per_step))
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainerConfig), spec.trainer))
    cfg.max_steps = steps
    cfg.eval_every = eval_every
    cfg.checkpoint.every = eval_every  # resume from the last evaluation after a crash
    cfg.checkpoint.keep_last = 1
    cfg.baselines = False
    cfg.loss.target_ratio = [float(r) for r in spec.model.target_ratio]
    return cfg


# --------------------------------------------------------------------------- one run
def run_dir_for(root: str | Path, spec: RunSpec) -> Path:
    lr = spec.trainer.optim.lr
    return Path(root) / spec.corpus.name / spec.model_name / f"lr{lr:g}-seed{spec.seed}"


def run_one(spec: RunSpec, run_dir: str | Path, cache_dir: str | Path) -> dict[str, Any]:
    """Train and evaluate one (corpus, model, lr, seed); returns and writes ``result.json``.

    Skips a finished run; resumes an interrupted one from its last checkpoint.
    """
    run_dir = Path(run_dir)
    done = run_dir / RESULT_NAME
    if done.exists():
        log.info("skip finished run %s", run_dir)
        return json.loads(done.read_text())
    if spec.corpus.kind not in spec.model.kinds:
        return {"status": "not_applicable", "model": spec.model_name, "corpus": spec.corpus.name}
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = trainer_config(spec)
    env = DistEnv(device=resolve_device(cfg.device))
    plan = setup_threads(env.device, cfg.threads)  # this job's share of the allocation
    seed_everything(spec.seed)
    corpus = SweepCorpus(spec.corpus)
    budget = spec.budget
    tokenizer = build_tokenizer(spec.model.tokenizer, corpus, budget.context_length,
                                Path(cache_dir))
    model_cfg = HNetConfig.from_dict({**spec.model.config, "vocab_size": tokenizer.vocab_size})
    checkpoint = resolve_resume(None, run_dir / CHECKPOINTS_DIR)
    model = build_model(model_cfg, checkpoint)
    stream: Any = WindowLoader(
        corpus.train_windows(budget.context_length, spec.seed, samples_per_epoch=100_000),
        budget.batch_size, plan.workers,
    )
    if not isinstance(tokenizer, UnitTokenizer):
        stream = TokenizedStream(stream, tokenizer, corpus.vocab.pad_id)
    eval_sets = corpus.eval_windows(budget.context_length, budget.eval_max_units)
    trainer = Trainer(
        cfg, model, stream,
        tokenizer.vocabulary,
        run_dir, env,
        evaluators=sweep_evaluators(eval_sets, tokenizer, corpus.vocab.pad_id, budget),
    )
    if checkpoint is not None:
        trainer.load(checkpoint)
        log.info("resumed %s at step %d", run_dir, trainer.step)
    first_step, started = trainer.step, time.perf_counter()
    final = trainer.fit()
    train_seconds = time.perf_counter() - started - trainer.paused_seconds
    result = summarize(spec, model, tokenizer, final, cfg,
                       bases_trained=(trainer.step - first_step) * budget.bases_per_step,
                       train_seconds=train_seconds)
    done.write_text(json.dumps(result, indent=2) + "\n")
    (run_dir / FAILURE_NAME).unlink(missing_ok=True)
    return result


def summarize(spec: RunSpec, model: HNetForCausalLM, tokenizer: WindowTokenizer,
              final: dict[str, float], cfg: TrainerConfig, bases_trained: int,
              train_seconds: float) -> dict[str, Any]:
    """The run's row: final bits/base, FLOPs/base (target and realised compression), params."""
    budget = spec.budget
    bases_per_token = final.get("bases_per_token", 1.0)
    context_tokens = budget.context_length / bases_per_token
    stages = model.config.num_stages
    realised = [final.get(f"compression_s{s}", math.nan) for s in range(stages)]
    target_ratios = per_stage(spec.model.target_ratio, stages, "target_ratio")
    target = count_flops(unwrap(model), context_tokens, target_ratios, bases_per_token)
    if stages and all(np.isfinite(realised)):
        flops = count_flops(unwrap(model), context_tokens, realised, bases_per_token)
    else:
        flops = target
    return {
        "status": "finished",
        "corpus": spec.corpus.name,
        "kind": spec.corpus.kind,
        "model": spec.model_name,
        "family": spec.model.family,
        "tokenizer": tokenizer.name,
        "layout": json.dumps(model.config.arch_layout),
        "lr": cfg.optim.lr,
        "seed": spec.seed,
        "bases": budget.bases,
        "steps": cfg.max_steps,
        "final": final,
        "params": flops.params,
        "non_embedding_params": flops.non_embedding_params,
        "flops_per_base": flops.forward_per_base,
        "train_flops_per_base": flops.train_per_base,
        "flops_per_base_target": target.forward_per_base,
        "flops_breakdown": flops.breakdown,
        "bases_per_token": bases_per_token,
        "compression": realised,
        "bases_per_s": bases_trained / train_seconds if train_seconds > 0 else math.nan,
        "spec": {"model": asdict(spec.model), "budget": asdict(spec.budget)},
    }


def record_failure(run_dir: str | Path, spec: RunSpec, error: BaseException) -> dict[str, Any]:
    """Write ``failure.json`` (the sweep goes on; the aggregation lists failed runs)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "status": "failed",
        "corpus": spec.corpus.name,
        "model": spec.model_name,
        "lr": spec.trainer.optim.lr,
        "seed": spec.seed,
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    (run_dir / FAILURE_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return record
