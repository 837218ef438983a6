"""The training loop: accumulation, clipping, NaN guard, logging, evaluators, checkpoints.

What is measured is not the trainer's business: it runs the ``evaluators`` it is given
(name -> callable taking the trainer, returning named numbers) at ``eval_every`` and at the end.
:func:`heldout_evaluator` scores held-out bits per base for ``hnet-dna pretrain``; the
data-efficiency sweep passes its own (``hnet_dna.baselines.experiment``).
"""

from __future__ import annotations

import contextlib
import math
import resource
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from hnet_dna.errors import InputError
from hnet_dna.genomics.alphabet import Vocabulary
from hnet_dna.genomics.framing import shift_right
from hnet_dna.model.config import per_stage
from hnet_dna.progress import progress
from hnet_dna.training import checkpoint as ckpt
from hnet_dna.training.config import TrainerConfig
from hnet_dna.training.distributed import (
    DistEnv,
    all_reduce_sum,
    gather_objects,
    gradient_sync,
    is_fsdp,
    unwrap,
    wrap_model,
)
from hnet_dna.training.heldout import heldout_bits
from hnet_dna.training.losses import LN2, pretraining_loss
from hnet_dna.training.metrics import MetricsWriter
from hnet_dna.training.optim import build_optimizer, resolve_lr_multipliers
from hnet_dna.training.schedule import build_scheduler
from hnet_dna.training.stop import StopRequest


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss or gradient; the weights were not updated."""


class BatchStream(Protocol):
    """Endless training micro-batches whose position can be saved and restored."""

    def __next__(self) -> dict[str, torch.Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_clip: float,
    loss: float,
    where: str = "",
    aftermath: str = "weights not updated",
) -> float:
    """After the backward pass(es): clip the global gradient norm (``grad_clip <= 0``: no clip),
    check finiteness, step the optimizer and the schedule, clear the gradients.

    Returns the gradient norm before clipping. A NaN/inf ``loss`` or gradient norm raises
    ``NonFiniteLossError`` before the weights are touched (``where``/``aftermath`` complete its
    message). The pretraining step and fine-tuning both update through here.
    """
    max_norm = grad_clip if grad_clip > 0 else math.inf
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if hasattr(norm, "full_tensor"):  # FSDP2 returns a DTensor
        norm = norm.full_tensor()
    grad_norm = float(norm)
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        optimizer.zero_grad(set_to_none=True)
        what = "loss" if not math.isfinite(loss) else "gradient norm"
        raise NonFiniteLossError(
            f"non-finite {what}{' ' + where if where else ''} (loss={loss}, "
            f"grad_norm={grad_norm}); {aftermath}"
        )
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


#: ``evaluator(trainer) -> {name: value}``; collective under DDP/FSDP like the trainer's step
Evaluator = Callable[["Trainer"], Mapping[str, float]]
#: the evaluator whose numbers are logged unprefixed (``bpb``, ``bases``, ...)
HELDOUT = "heldout"


@dataclass
class LogInterval:
    """Sums over the training steps since the last ``train`` log line."""

    nll: float = 0.0
    weight: float = 0.0
    loss: float = 0.0
    steps: int = 0
    tokens: float = 0.0
    ratio: list[float] = field(default_factory=list)
    valid: list[float] = field(default_factory=list)
    chunks: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    paused: float = 0.0  # seconds spent evaluating / checkpointing (not training throughput)


class Trainer:
    """Trains ``model`` (an ``HNetForCausalLM``) on ``train_stream``; rank-0 writes ``run_dir``."""

    def __init__(
        self,
        cfg: TrainerConfig,
        model: nn.Module,
        train_stream: BatchStream,
        vocab: Vocabulary,
        run_dir: str | Path,
        env: DistEnv | None = None,
        evaluators: Mapping[str, Evaluator] | None = None,
    ) -> None:
        _check_counts(cfg)
        self.cfg = cfg
        self.env = env or DistEnv()
        self.vocab = vocab
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / ckpt.CHECKPOINTS_DIR
        self.train_stream = train_stream
        self.evaluators = dict(evaluators or {})
        self.step = 0
        self.paused_seconds = 0.0  # spent evaluating and checkpointing: not training throughput
        self.last_checkpoint: Path | None = None
        # newest held-out metrics and their step, recorded in each checkpoint's model card
        self._card_metrics: tuple[int, dict[str, float]] | None = None

        device = self.env.device
        precision = cfg.precision
        if precision == "auto":
            precision = "bf16" if device.type == "cuda" else "fp32"
        if precision not in ("bf16", "fp32"):
            raise ValueError(f"trainer.precision must be auto, bf16 or fp32, got {cfg.precision!r}")
        self.bf16 = precision == "bf16"

        self.model_config = model.config
        num_stages = model.config.num_stages
        self.target_ratios = per_stage(cfg.loss.target_ratio, num_stages, "loss.target_ratio")
        widths = [model.config.stage_cfg(s)["d_model"] for s in range(num_stages + 1)]
        self.lr_multipliers = resolve_lr_multipliers(cfg.optim, self.target_ratios, widths)

        self.model = wrap_model(model.to(device), self.env, cfg.distributed, self.bf16)
        # stage_parameters() after wrapping: FSDP2 swaps parameters for sharded ones in place.
        self.optimizer = build_optimizer(
            unwrap(self.model).stage_parameters(), cfg.optim, self.lr_multipliers
        )
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, cfg.max_steps)
        self.metrics = MetricsWriter(self.run_dir) if self.env.is_main else None

    # ------------------------------------------------------------------ helpers
    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=torch.bfloat16)

    def log_metrics(self, split: str, values: dict[str, Any]) -> None:
        """Append a record at the current step (rank 0 only; other ranks drop it)."""
        if self.metrics is not None:
            self.metrics.write(split, self.step, values)

    # ------------------------------------------------------------------ one step
    def train_step(self, micro_batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, Any]:
        """Forward/backward every micro-batch, clip, check finiteness, then update.

        Raises ``NonFiniteLossError`` (before touching the weights) on a NaN/inf loss or grad.
        """
        env, device, model = self.env, self.env.device, self.model
        model.train()
        weights = [mb["loss_weight"].to(device, torch.float32) for mb in micro_batches]
        total_weight = torch.stack([w.sum() for w in weights]).sum().double()
        all_reduce_sum(total_weight, env)
        # Gradients are averaged over ranks, so each rank divides by total / world_size.
        weight_norm = (total_weight / env.world_size).clamp_min(1e-12).float()
        num_stages = len(self.target_ratios)
        # nll, weight, then per stage: ratio loss, valid tokens, boundaries
        stats = torch.zeros(2 + 3 * num_stages, dtype=torch.float64, device=device)
        for index, (batch, weight) in enumerate(zip(micro_batches, weights, strict=True)):
            tokens = batch["tokens"].to(device)
            inputs, mask = shift_right(tokens, self.vocab.bos_id, self.vocab.pad_id)
            with gradient_sync(model, index == len(micro_batches) - 1):
                with self.autocast():
                    output = model(inputs, mask=mask)
                    parts = pretraining_loss(
                        output.logits,
                        output.routing,
                        tokens,
                        weight,
                        weight_norm=weight_norm,
                        ratio_alpha=self.cfg.loss.ratio_alpha,
                        target_ratios=self.target_ratios,
                        ratio_scale=1.0 / len(micro_batches),
                    )
                parts.loss.backward()
            stats[0] += parts.nll_sum.double()
            stats[1] += parts.weight_sum.double()
            for s, (ratio, (valid, chunks)) in enumerate(
                zip(parts.ratio_losses, parts.routing_counts, strict=True)
            ):
                stats[2 + 3 * s] += ratio.double()
                stats[3 + 3 * s] += valid.double()
                stats[4 + 3 * s] += chunks.double()
        all_reduce_sum(stats, env)

        n_micro = len(micro_batches) * env.world_size
        ratios = [stats[2 + 3 * s].item() / n_micro for s in range(num_stages)]
        nll_mean = stats[0].item() / max(stats[1].item(), 1e-12)
        loss = nll_mean + self.cfg.loss.ratio_alpha * sum(ratios)
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        saved = self.last_checkpoint or "none saved yet"
        grad_norm = optimizer_step(
            model, self.optimizer, self.scheduler, self.cfg.optim.grad_clip, loss,
            where=f"at step {self.step + 1}",
            aftermath=f"weights left at step {self.step}, last good checkpoint: {saved}",
        )
        self.step += 1
        tokens = sum(mb["tokens"].numel() for mb in micro_batches) * env.world_size
        return {
            "loss": loss,
            "nll_sum": stats[0].item(),
            "weight_sum": stats[1].item(),
            "ratio_loss": ratios,
            "valid": [stats[3 + 3 * s].item() for s in range(num_stages)],
            "chunks": [stats[4 + 3 * s].item() for s in range(num_stages)],
            "grad_norm": grad_norm,
            "lr": lrs[0] / self.optimizer.param_groups[0]["lr_multiplier"],
            "tokens": tokens,
        }

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Run every evaluator (collective); one ``eval`` record of all their numbers.

        The ``heldout`` evaluator's names are kept as they are, every other's get its name as a
        prefix (``{name}_{key}``).
        """
        if not self.evaluators:
            return {}
        started = time.perf_counter()
        result: dict[str, float] = {}
        for name, evaluator in self.evaluators.items():
            prefix = "" if name == HELDOUT else f"{name}_"
            result.update({f"{prefix}{key}": value for key, value in evaluator(self).items()})
        self.paused_seconds += time.perf_counter() - started
        self.log_metrics("eval", result)
        self._card_metrics = (self.step, dict(result))
        return result

    # ------------------------------------------------------------------ checkpoints
    def _full_states(self) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
        """(model state dict or None = use the module directly, optimizer state dict)."""
        if not is_fsdp(self.model):
            return None, self.optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_state_dict(self.model, self.optimizer, options=options)

    def save(self) -> Path | None:
        """Checkpoint the current step (collective: every rank must call it)."""
        started = time.perf_counter()
        try:
            return self._save()
        finally:
            self.paused_seconds += time.perf_counter() - started

    def _save(self) -> Path | None:
        model_state, optim_state = self._full_states()
        rng = gather_objects(ckpt.capture_rng_state(), self.env)
        data = gather_objects(self.train_stream.state_dict(), self.env)
        path = None
        if self.env.is_main:
            state = {
                "step": self.step,
                "world_size": self.env.world_size,
                "optimizer": optim_state,
                "scheduler": self.scheduler.state_dict(),
                "rng": rng,
                "data": data,
            }
            path = ckpt.save_checkpoint(
                self.checkpoint_dir,
                self.step,
                lambda folder: self._write_model(folder, model_state),
                state,
                keep_last=self.cfg.checkpoint.keep_last,
            )
        self.last_checkpoint = Path(str(path)) if path else self.last_checkpoint
        return path

    def _write_model(self, folder: Path, full_state: dict[str, torch.Tensor] | None) -> None:
        module = unwrap(self.model)
        # The folder describes itself: vocabulary, training data (set by the caller as
        # ``model.training_info``) and the newest held-out metrics.
        training = dict(getattr(module, "training_info", None) or {})
        training["step"] = self.step
        if self._card_metrics is not None:
            training["metrics_step"], training["metrics"] = self._card_metrics
        description = {"vocabulary": self.vocab.for_model_folder(), "training": training}
        if full_state is None:
            module.save_pretrained(folder, **description)
            return
        # FSDP: a parameter-free copy of the model class that adopts the gathered full tensors.
        with torch.device("meta"):
            copy = type(module)(self.model_config)
        copy.load_state_dict(full_state, assign=True)
        copy.save_pretrained(folder, **description)

    def load(self, checkpoint: str | Path, state: dict[str, Any] | None = None) -> None:
        """Restore optimizer, scheduler, step, RNG and data position (weights: ``from_pretrained``).

        The model's weights must already come from ``checkpoint`` (see ``pretrain``); with FSDP
        the optimizer state is resharded from the saved full state. ``state``: the checkpoint's
        training state when the caller has already read it.
        """
        if state is None:
            state = ckpt.load_training_state(checkpoint)
        if state["world_size"] != self.env.world_size:
            raise InputError(
                f"{checkpoint} was written by {state['world_size']} processes but this run has "
                f"{self.env.world_size}: the per-rank data positions cannot be mapped"
            )
        if is_fsdp(self.model):
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_optimizer_state_dict,
            )

            set_optimizer_state_dict(
                self.model,
                self.optimizer,
                state["optimizer"],
                options=StateDictOptions(full_state_dict=True),
            )
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        # The schedule's shape comes from the current config (a longer max_steps extends the run);
        # only the position and base rates are restored.
        scheduler_state = dict(state["scheduler"])
        scheduler_state["lr_lambdas"] = [None] * len(self.optimizer.param_groups)
        self.scheduler.load_state_dict(scheduler_state)
        self.train_stream.load_state_dict(state["data"][self.env.rank])
        ckpt.restore_rng_state(state["rng"][self.env.rank])
        self.step = state["step"]
        self.last_checkpoint = Path(checkpoint)

    # ------------------------------------------------------------------ loop
    def next_micro_batches(self) -> list[dict[str, torch.Tensor]]:
        """The ``grad_accum`` micro-batches of the next optimizer step."""
        return [next(self.train_stream) for _ in range(self.cfg.grad_accum)]

    def fit(self) -> dict[str, float]:
        """Train to ``max_steps`` (from the current step); returns the final evaluation."""
        cfg, env = self.cfg, self.env
        # Rank 0 only: a tqdm bar on a terminal, a line every progress_interval s in a job log.
        bar = progress(
            total=cfg.max_steps,
            initial=self.step,
            desc="pretrain",
            unit="step",
            disable=not (env.is_main and cfg.progress_bar),
            interval=cfg.progress_interval,
            dynamic_ncols=True,
        )
        interval = LogInterval()
        last_saved = self.step if self.last_checkpoint is not None else None
        if self.metrics is not None:
            # A restart (from a checkpoint, or from scratch after a kill before the first one)
            # repeats the steps after self.step: drop their earlier records.
            self.metrics.truncate_after(self.step)
        # SIGUSR1 (or submitit's signal) before a SLURM limit: checkpoint at the next step
        # boundary and exit resumable (hnet_dna.training.stop).
        stop = StopRequest().install()
        try:
            while self.step < cfg.max_steps:
                result = self.train_step(self.next_micro_batches())
                interval = self._accumulate(interval, result)
                done = self.step == cfg.max_steps
                if self.step % cfg.log_every == 0 or done:
                    summary = self._log_train(interval, result)
                    bar.set_postfix(
                        bpb=f"{summary['bpb']:.3f}",
                        bpc=f"{summary.get('bases_per_chunk_s0', float('nan')):.2f}",
                        lr=f"{result['lr']:.2e}",
                    )
                    interval = LogInterval()
                bar.update(1)  # after the postfix: a log line carries this step's numbers
                paused_before = self.paused_seconds
                if cfg.eval_every and self.step % cfg.eval_every == 0 and not done:
                    bpb = self.evaluate().get("bpb", math.nan)
                    if env.is_main:
                        bar.write(f"step {self.step}: held-out bits per base {bpb:.4f}")
                if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0 and not done:
                    self.save()
                    last_saved = self.step
                interval.paused += self.paused_seconds - paused_before
                if not done and stop.agreed(env):
                    if last_saved != self.step:
                        self.save()
                    stop.exit(env, self.step, self.last_checkpoint)
        finally:
            bar.close()
            stop.restore()
        final = self.evaluate()
        if last_saved != self.step:
            self.save()
        return final

    def _accumulate(self, interval: LogInterval, result: dict[str, Any]) -> LogInterval:
        interval.nll += result["nll_sum"]
        interval.weight += result["weight_sum"]
        interval.loss += result["loss"]
        interval.steps += 1
        interval.tokens += result["tokens"]
        stages = len(result["ratio_loss"])
        for name in ("ratio", "valid", "chunks"):
            if not getattr(interval, name):
                setattr(interval, name, [0.0] * stages)
        for s in range(stages):
            interval.ratio[s] += result["ratio_loss"][s]
            interval.valid[s] += result["valid"][s]
            interval.chunks[s] += result["chunks"][s]
        return interval

    def _log_train(self, interval: LogInterval, result: dict[str, Any]) -> dict[str, float]:
        elapsed = max(time.perf_counter() - interval.started - interval.paused, 1e-9)
        summary: dict[str, float] = {
            "loss": interval.loss / interval.steps,
            "bpb": interval.nll / max(interval.weight, 1e-12) / LN2,
            "lr": result["lr"],
            "grad_norm": result["grad_norm"],
            "tokens_per_s": interval.tokens / elapsed,
            "peak_mem_mb": _peak_memory_mb(self.env.device),
        }
        bases = interval.valid[0] if interval.valid else 0.0
        for s in range(len(interval.ratio)):
            summary[f"ratio_loss_s{s}"] = interval.ratio[s] / interval.steps
            # Cumulative compression: bases per chunk selected at stage s.
            chunks = interval.chunks[s]
            summary[f"bases_per_chunk_s{s}"] = bases / chunks if chunks else math.nan
        self.log_metrics("train", summary)
        return summary


def heldout_evaluator(
    batches: Callable[[], Iterable[dict[str, torch.Tensor]]],
) -> Evaluator:
    """Exact held-out bits per base (all bases and uppercase only) on ``batches()``."""

    def evaluate(trainer: Trainer) -> dict[str, float]:
        fsdp = is_fsdp(trainer.model)
        # DDP: run the plain module (no gradient hooks needed); FSDP must go through its root.
        return heldout_bits(
            trainer.model if fsdp else unwrap(trainer.model),
            batches(),
            trainer.env,
            trainer.vocab,
            autocast=trainer.autocast,
            max_batches=trainer.cfg.eval_max_batches,
            lockstep=fsdp,
            bound="trainer.eval_max_batches",
        )

    return evaluate


def _check_counts(cfg: TrainerConfig) -> None:
    for name, minimum in (("max_steps", 1), ("grad_accum", 1), ("log_every", 1),
                          ("eval_every", 0), ("checkpoint.every", 0), ("checkpoint.keep_last", 1)):
        value = cfg
        for part in name.split("."):
            value = getattr(value, part)
        if value < minimum:
            raise ValueError(f"trainer.{name} must be >= {minimum}, got {value}")
    if cfg.progress_interval is not None and not cfg.progress_interval >= 0:
        raise ValueError(f"trainer.progress_interval must be >= 0 seconds (or null), "
                         f"got {cfg.progress_interval}")


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Linux reports ru_maxrss in KiB: the process's resident high-water mark.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

