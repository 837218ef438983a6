"""Run-folder safety: stream settings on resume, foreign folders, damaged checkpoints, full disks,
metrics written once per step, and file permissions."""

from __future__ import annotations

import errno
import json
import logging
import os
import random

import pytest
import torch
from safetensors import SafetensorError
from training_helpers import tiny_model, tiny_model_config, tiny_pretrain_config

from hnet_dna.cli import main
from hnet_dna.errors import InputError, OutputError
from hnet_dna.genomics.loader import WindowLoader
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.training import checkpoint as ckpt
from hnet_dna.training.checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint
from hnet_dna.training.metrics import MetricsWriter, read_metrics
from hnet_dna.training.pretrain import run_pretrain


@pytest.fixture
def hydra_logging():
    """Undo the root-logger handlers a hydra run installs (they write to pytest's closed
    capture streams in later tests)."""
    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)


def _steps(run_dir, split="train") -> list[int]:
    frame = read_metrics(run_dir)
    return frame.filter(frame["split"] == split)["step"].to_list()


def _kill_at_batch(monkeypatch, n: int) -> None:
    """The data stream dies when asked for its n-th batch, like a process killed mid-run."""
    calls = {"n": 0}
    original = WindowLoader.__next__

    def dying_next(self):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("simulated kill")
        return original(self)

    monkeypatch.setattr(WindowLoader, "__next__", dying_next)


# ------------------------------------------------------------------ stream settings on resume
@pytest.mark.parametrize(("section", "key", "value"),
                         [("data", "batch_size", 2), ("data", "context_length", 128)])
def test_resume_with_other_data_settings_is_refused(tmp_path, section, key, value):
    cfg = tiny_pretrain_config(max_steps=1)
    run_pretrain(cfg, tiny_model_config(), tmp_path)
    before = (tmp_path / "config.yaml").read_bytes()
    old = getattr(cfg.data, key)
    setattr(cfg.data, key, value)
    cfg.trainer.max_steps = 2
    with pytest.raises(InputError, match=(
            rf"{tmp_path} was trained with other data settings \(data\.{key}: {old} -> {value}\)"
            r".*trainer\.allow_data_change=true")):
        run_pretrain(cfg, tiny_model_config(), tmp_path)
    assert (tmp_path / "config.yaml").read_bytes() == before  # nothing written
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [1]


def test_allow_data_change_continues_and_logs_it(tmp_path, caplog):
    cfg = tiny_pretrain_config(max_steps=1)
    run_pretrain(cfg, tiny_model_config(), tmp_path)
    cfg.data.batch_size, cfg.trainer.max_steps = 2, 2
    cfg.trainer.allow_data_change = True
    with caplog.at_level(logging.WARNING, logger="hnet_dna.training.pretrain"):
        run_pretrain(cfg, tiny_model_config(), tmp_path)
    assert "changed data settings (trainer.allow_data_change=true): data.batch_size: 4 -> 2" \
        in caplog.text
    assert json.loads((tmp_path / "run.json").read_text())["stream"]["data"]["batch_size"] == 2
    assert _steps(tmp_path) == [1, 2]


# ------------------------------------------------------------------ metrics: each step once
def test_restart_before_the_first_checkpoint_logs_each_step_once(tmp_path, monkeypatch):
    cfg = tiny_pretrain_config(max_steps=4)  # checkpoint only at the end
    _kill_at_batch(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run_pretrain(cfg, tiny_model_config(), tmp_path)
    assert _steps(tmp_path) == [1, 2] and not list_checkpoints(tmp_path / "checkpoints")
    monkeypatch.undo()
    run_pretrain(cfg, tiny_model_config(), tmp_path)  # starts over at step 0
    assert _steps(tmp_path) == [1, 2, 3, 4]  # before: [1, 2, 1, 2, 3, 4]


def test_metrics_line_cut_by_a_kill_is_dropped_on_restart(tmp_path):
    writer = MetricsWriter(tmp_path)
    for step in (1, 2):
        writer.write("train", step, {"loss": float(step)})
    with open(writer.path, "a") as handle:
        handle.write('{"split": "train", "st')  # killed mid-write
    MetricsWriter(tmp_path).truncate_after(2)
    assert [json.loads(line)["step"] for line in writer.path.read_text().splitlines()] == [1, 2]


# ------------------------------------------------------------------ foreign run folder
def test_existing_folder_that_is_not_a_run_is_refused_before_writing(tmp_path, capsys,
                                                                       hydra_logging):
    folder = tmp_path / "my_analysis"
    folder.mkdir()
    (folder / "config.yaml").write_text("my: own settings\n")
    (folder / "notes.txt").write_text("keep me\n")
    cfg = tiny_pretrain_config(max_steps=1)
    with pytest.raises(OutputError, match=(
            rf"run folder {folder} already holds files that are not from an hnet-dna run "
            r"\(config\.yaml, notes\.txt\)")):
        run_pretrain(cfg, tiny_model_config(), folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "notes.txt"]
    assert (folder / "config.yaml").read_text() == "my: own settings\n"
    # Through the command line: one line, exit status 2, the user's config untouched.
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", f"hydra.run.dir={folder}", "trainer.max_steps=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hnet-dna pretrain: run folder") and "\n" not in err
    assert (folder / "config.yaml").read_text() == "my: own settings\n"


# ------------------------------------------------------------------ damaged checkpoints
@pytest.mark.parametrize("damage", ["weights_truncated", "weights_nan", "state_zeroed"])
def test_newest_damaged_checkpoint_falls_back_to_the_newest_intact(tmp_path, damage, caplog):
    cfg = tiny_pretrain_config(max_steps=6)
    cfg.trainer.checkpoint.every = 3
    run_pretrain(cfg, tiny_model_config(), tmp_path / "full")
    run = tmp_path / "run"
    run_pretrain(cfg, tiny_model_config(), run)
    newest = run / "checkpoints" / "step-00000006"
    weights, state = newest / "model.safetensors", newest / "training_state.pt"
    if damage == "weights_truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "weights_nan":
        raw = bytearray(weights.read_bytes())
        raw[-8192:-4096] = b"\xff" * 4096  # a flipped 4 KB block: NaN, no parse error
        weights.write_bytes(bytes(raw))
    else:
        state.write_bytes(bytes(state.stat().st_size))

    with caplog.at_level(logging.WARNING, logger="hnet_dna.training.pretrain"):
        run_pretrain(cfg, tiny_model_config(), run)  # retrains steps 4-6 from step 3
    intact = run / "checkpoints" / "step-00000003"
    assert f"resuming from {intact} instead of the newest checkpoint {newest}" in caplog.text
    assert (run / "checkpoints" / "corrupt-step-00000006").is_dir()  # kept, never loaded
    assert _steps(run) == [1, 2, 3, 4, 5, 6]
    # The retrained steps reproduce the uninterrupted run bit for bit.
    a = HNetForCausalLM.from_pretrained(latest_checkpoint(tmp_path / "full" / "checkpoints"))
    b = HNetForCausalLM.from_pretrained(latest_checkpoint(run / "checkpoints"))
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), name


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(tmp_path):
    cfg = tiny_pretrain_config(max_steps=1)
    run_pretrain(cfg, tiny_model_config(), tmp_path)
    weights = latest_checkpoint(tmp_path / "checkpoints") / "model.safetensors"
    weights.write_bytes(bytes(weights.stat().st_size))  # zeroed
    cfg.trainer.max_steps = 2
    with pytest.raises(InputError, match=r"every checkpoint in .* is damaged .*model\.safetensors"):
        run_pretrain(cfg, tiny_model_config(), tmp_path)


def test_training_state_damage_is_named(tmp_path):
    path = save_checkpoint(tmp_path, 1, tiny_model().save_pretrained, {"step": 1})
    (path / "training_state.pt").write_bytes(b"\0" * 100)
    with pytest.raises(ckpt.CorruptCheckpointError, match=r"training_state\.pt: damaged"):
        ckpt.load_training_state(path)


# ------------------------------------------------------------------ full disk, permissions
def test_checkpoint_save_on_a_full_disk_says_so(tmp_path, monkeypatch):
    model = tiny_model()
    save_checkpoint(tmp_path, 1, model.save_pretrained, {"step": 1})

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    with pytest.raises(OSError, match=f"disk full while writing {tmp_path / 'step-00000002'}$"):
        save_checkpoint(tmp_path, 2, model.save_pretrained, {"step": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]  # no half-written folder
    monkeypatch.undo()

    def safetensors_full_disk(folder):
        # what safetensors 0.8 raised when writing into a full 64 kB tmpfs
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")

    with pytest.raises(OSError, match="disk full while writing"):
        save_checkpoint(tmp_path, 2, safetensors_full_disk, {"step": 2})


def test_checkpoint_files_get_the_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path, 1, tiny_model().save_pretrained, {"step": 1})
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in path.iterdir()}
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644, "README.md": 0o644,
                     "training_state.pt": 0o644}  # safetensors alone wrote 0600


def test_pretrain_on_a_binary_corpus_exits_2_with_one_line(tmp_path, capsys, hydra_logging):
    fa = tmp_path / "corpus.fa"
    fa.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", f"hydra.run.dir={tmp_path / 'run'}", f"data.corpus={fa}",
              "trainer.max_steps=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"hnet-dna pretrain: {fa}: ") and "\n" not in err
