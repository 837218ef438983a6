"""End-to-end trainer behaviour on the bundled yeast corpus with a tiny H-Net."""

from __future__ import annotations

import json

import polars as pl
import pytest
import torch
from training_helpers import tiny_model, tiny_model_config, tiny_pretrain_config

from hnet_dna.genomics.alphabet import DNA_VOCAB
from hnet_dna.genomics.index import WindowIndex
from hnet_dna.genomics.loader import WindowLoader
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.training import data as data_mod
from hnet_dna.training.checkpoint import latest_checkpoint, load_training_state
from hnet_dna.training.config import TrainerConfig
from hnet_dna.training.metrics import read_metrics
from hnet_dna.training.pretrain import run_pretrain
from hnet_dna.training.schedule import lr_factor_fn
from hnet_dna.training.trainer import (
    HELDOUT,
    NonFiniteLossError,
    Trainer,
    heldout_evaluator,
    optimizer_step,
)


def train_losses(run_dir) -> dict[int, float]:
    frame = read_metrics(run_dir).filter(pl.col("split") == "train")
    return dict(zip(frame["step"].to_list(), frame["loss"].to_list(), strict=True))


def counting_random_reads(monkeypatch) -> dict[str, int]:
    """Counts the training windows read from the genome from now on (random mode)."""
    read = {"windows": 0}
    original = WindowIndex.random

    def counting(self, g, draws):
        windows, rejected = original(self, g, draws)
        read["windows"] += len(windows.j)
        return windows, rejected

    monkeypatch.setattr(WindowIndex, "random", counting)
    return read


def test_resume_continues_exactly(tmp_path, monkeypatch):
    """k steps, a kill, then resume for k steps == 2k uninterrupted steps (fixed seed, CPU)."""
    cfg = tiny_pretrain_config(max_steps=6)
    cfg.trainer.checkpoint.every = 3
    model_cfg = tiny_model_config()
    full = run_pretrain(cfg, model_cfg, tmp_path / "full")

    # Interrupted run: the data stream dies when the 4th step asks for its batch, i.e. right
    # after the step-3 checkpoint, like a process killed mid-run.
    calls = {"n": 0}
    original_next = WindowLoader.__next__

    def dying_next(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated kill")
        return original_next(self)

    monkeypatch.setattr(WindowLoader, "__next__", dying_next)
    with pytest.raises(KeyboardInterrupt):
        run_pretrain(cfg, model_cfg, tmp_path / "resumed")
    monkeypatch.setattr(WindowLoader, "__next__", original_next)
    assert latest_checkpoint(tmp_path / "resumed" / "checkpoints").name == "step-00000003"

    # The resumed run reads only the windows of the steps it still trains (4 to 6): the
    # loader starts at the saved position instead of replaying the epoch up to it.
    read = counting_random_reads(monkeypatch)
    resumed = run_pretrain(cfg, model_cfg, tmp_path / "resumed")  # resume=None: automatic
    assert read["windows"] == 3 * cfg.trainer.grad_accum * cfg.data.batch_size
    expected, got = train_losses(tmp_path / "full"), train_losses(tmp_path / "resumed")
    assert sorted(got) == list(range(1, 7))  # the resumed log continues the first one
    for step in range(1, 7):
        assert got[step] == pytest.approx(expected[step], rel=1e-6, abs=1e-7), step
    assert resumed["final"]["bpb"] == pytest.approx(full["final"]["bpb"], rel=1e-6)
    a = HNetForCausalLM.from_pretrained(latest_checkpoint(tmp_path / "full" / "checkpoints"))
    b = HNetForCausalLM.from_pretrained(latest_checkpoint(tmp_path / "resumed" / "checkpoints"))
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7, msg=name)


def test_resume_flag_semantics(tmp_path):
    cfg = tiny_pretrain_config(max_steps=1)
    cfg.resume = True
    with pytest.raises(FileNotFoundError, match="resume=true but .* holds no complete checkpoint"):
        run_pretrain(cfg, tiny_model_config(), tmp_path)
    cfg.resume = None
    run_pretrain(cfg, tiny_model_config(), tmp_path)
    cfg.resume = False
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        run_pretrain(cfg, tiny_model_config(), tmp_path)


def test_resume_with_another_model_is_refused(tmp_path):
    cfg = tiny_pretrain_config(max_steps=1)
    run_pretrain(cfg, tiny_model_config(), tmp_path)
    with pytest.raises(ValueError, match="holds a different model"):
        run_pretrain(cfg, tiny_model_config(two_stage=True), tmp_path)


class PoisonedStream:
    """Real yeast batches, with an infinite loss weight in the batch of step ``poison_step``."""

    def __init__(self, inner, poison_step: int) -> None:
        self.inner, self.poison_step, self.served = inner, poison_step, 0

    def __next__(self):
        batch = next(self.inner)
        self.served += 1
        if self.served == self.poison_step:
            batch["loss_weight"] = batch["loss_weight"].clone()
            batch["loss_weight"][0, 0] = float("inf")
        return batch

    def state_dict(self):
        return {"inner": self.inner.state_dict(), "served": self.served}

    def load_state_dict(self, state):
        self.inner.load_state_dict(state["inner"])
        self.served = state["served"]


def test_nan_guard_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path):
    cfg = tiny_pretrain_config(max_steps=10).trainer
    cfg.checkpoint.every = 2
    corpus = data_mod.open_corpus(tiny_pretrain_config().data)
    stream = PoisonedStream(data_mod.train_stream(corpus, tiny_pretrain_config().data, 0), 3)
    trainer = Trainer(cfg, tiny_model(), stream, DNA_VOCAB, tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 3 .*step-00000002"):
        trainer.fit()
    # No update from the bad step: the weights are still those of step 2's checkpoint.
    assert trainer.step == 2
    saved = HNetForCausalLM.from_pretrained(latest_checkpoint(tmp_path / "checkpoints"))
    for (name, p), (_, q) in zip(trainer.model.state_dict().items(), saved.state_dict().items(),
                                 strict=True):
        assert torch.equal(p, q), name
    assert load_training_state(latest_checkpoint(tmp_path / "checkpoints"))["step"] == 2


def test_loss_decreases_on_real_dna(tmp_path):
    """A short run learns yeast DNA: held-out bits per base beat the order-0 Markov model."""
    cfg = tiny_pretrain_config(max_steps=40, log_every=10, eval_max_batches=None,
                               baselines=True, markov_order=2)
    cfg.data.context_length = 128
    cfg.data.batch_size = 8
    cfg.data.eval_batch_size = 64
    cfg.trainer.optim.lr = 1e-2
    result = run_pretrain(cfg, tiny_model_config(), tmp_path)
    losses = train_losses(tmp_path)
    assert losses[40] < losses[10] - 0.2
    # Exact tiled evaluation: every base of the held-out split is scored once.
    held_out = data_mod.open_corpus(cfg.data).bases("valid")
    assert result["final"]["bases"] <= held_out
    assert result["final"]["bases"] > 0.99 * held_out  # only N positions are unscored
    assert result["final"]["bpb"] < result["baselines"][0]


def test_run_folder_contents(tmp_path):
    cfg = tiny_pretrain_config(max_steps=2, baselines=True, markov_order=1)
    run_pretrain(cfg, tiny_model_config(), tmp_path)
    assert (tmp_path / "metrics.png").stat().st_size > 0
    assert (tmp_path / "config.yaml").exists()
    frame = read_metrics(tmp_path)
    assert set(frame["split"].unique()) == {"train", "eval", "baseline"}
    eval_row = frame.filter(pl.col("split") == "eval").row(0, named=True)
    assert eval_row["step"] == 2 and 0 < eval_row["bpb_upper"] < 10
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    meta = json.loads((checkpoint / "config.json").read_text())
    assert meta["d_model"] == [32, 64]
    # The checkpoint describes itself: vocabulary, training data, the final held-out metrics.
    assert meta["vocabulary"]["tokens"]["BOS"] == DNA_VOCAB.bos_id
    assert meta["training"]["data"].startswith(cfg.data.corpus)
    assert meta["training"]["step"] == meta["training"]["metrics_step"] == 2
    assert meta["training"]["metrics"]["bpb"] == pytest.approx(eval_row["bpb"])
    assert f"| bpb | {eval_row['bpb']:.4f} |" in (checkpoint / "README.md").read_text()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"precision": "fp16"}, "trainer.precision must be auto, bf16 or fp32, got 'fp16'"),
        ({"grad_accum": 0}, "trainer.grad_accum must be >= 1, got 0"),
        ({"log_every": 0}, "trainer.log_every must be >= 1, got 0"),
    ],
)
def test_trainer_rejects_bad_settings(tmp_path, changes, message):
    cfg = TrainerConfig(**changes)
    with pytest.raises(ValueError, match=message):
        Trainer(cfg, tiny_model(), iter(()), DNA_VOCAB, tmp_path)


def test_resume_with_more_steps_follows_the_new_schedule(tmp_path):
    cfg = tiny_pretrain_config(max_steps=2)
    run_pretrain(cfg, tiny_model_config(), tmp_path)
    cfg.trainer.max_steps = 10
    run_pretrain(cfg, tiny_model_config(), tmp_path)
    frame = read_metrics(tmp_path).filter(pl.col("split") == "train")
    assert frame["step"].to_list() == list(range(1, 11))
    lrs = dict(zip(frame["step"].to_list(), frame["lr"].to_list(), strict=True))
    # The logged rate of step s is the one of schedule index s - 1 over the new 10 steps.
    factor = lr_factor_fn(cfg.trainer.schedule, 10)
    for step in (3, 9, 10):
        assert lrs[step] == pytest.approx(cfg.trainer.optim.lr * factor(step - 1)), step
    assert lrs[10] < lrs[3]  # decaying towards the new end, not stuck at the first 2 steps


def test_evaluators_are_logged_by_name_timed_as_pauses_and_carded(tmp_path):
    """Every evaluator runs at eval_every and at the end; ``heldout`` keeps its names, others
    are prefixed; their time is not training time; the checkpoint's card records the numbers."""
    pretrain_cfg = tiny_pretrain_config(max_steps=2, eval_every=1)
    corpus = data_mod.open_corpus(pretrain_cfg.data)
    evaluators = {HELDOUT: heldout_evaluator(data_mod.eval_batches(corpus, pretrain_cfg.data)),
                  "steps": lambda trainer: {"seen": float(trainer.step)}}
    trainer = Trainer(pretrain_cfg.trainer, tiny_model(),
                      data_mod.train_stream(corpus, pretrain_cfg.data, 0),
                      DNA_VOCAB, tmp_path, evaluators=evaluators)
    final = trainer.fit()
    evals = read_metrics(tmp_path).filter(pl.col("split") == "eval")
    assert evals["step"].to_list() == [1, 2] and evals["steps_seen"].to_list() == [1.0, 2.0]
    assert final["steps_seen"] == 2.0 and final["bpb"] == pytest.approx(evals["bpb"][-1])
    assert final["bases"] > 0 and trainer.paused_seconds > 0
    card = json.loads((trainer.last_checkpoint / "config.json").read_text())["training"]
    assert card["metrics_step"] == 2 and card["metrics"]["steps_seen"] == 2.0


def test_optimizer_step_refuses_a_non_finite_loss_before_touching_the_weights():
    torch.manual_seed(0)
    layer = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    before = layer.weight.detach().clone()
    layer(torch.ones(1, 2)).sum().backward()
    with pytest.raises(NonFiniteLossError, match="non-finite loss in a test .*weights not upd"):
        optimizer_step(layer, optimizer, schedule, 1.0, float("nan"), where="in a test")
    assert torch.equal(layer.weight, before) and layer.weight.grad is None
    (100 * layer(torch.ones(1, 2)).sum()).backward()
    grad_norm = optimizer_step(layer, optimizer, schedule, 1.0, 0.5)
    assert grad_norm == pytest.approx(100 * 3**0.5)  # before clipping: d/dW = 100, d/db = 100
    assert not torch.equal(layer.weight, before) and schedule.last_epoch == 1
    assert layer.weight.grad is None
