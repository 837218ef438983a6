"""Atomic checkpoints (including a process killed mid-save), pruning, RNG round trip."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from training_helpers import tiny_model

from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.training.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_training_state,
    remove_stale_temporaries,
    restore_rng_state,
    save_checkpoint,
)


def test_save_then_load_round_trip(tmp_path):
    model = tiny_model()
    path = save_checkpoint(tmp_path, 7, model.save_pretrained, {"step": 7, "x": torch.arange(3)})
    assert path.name == "step-00000007"
    assert load_training_state(path)["x"].tolist() == [0, 1, 2]
    loaded = HNetForCausalLM.from_pretrained(path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


def test_keeps_only_the_last_k(tmp_path):
    model = tiny_model()
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model.save_pretrained, {"step": step}, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000003", "step-00000004"]


def test_refuses_to_overwrite_a_step(tmp_path):
    model = tiny_model()
    save_checkpoint(tmp_path, 1, model.save_pretrained, {"step": 1})
    with pytest.raises(FileExistsError, match="step-00000001 already exists"):
        save_checkpoint(tmp_path, 1, model.save_pretrained, {"step": 1})


def test_process_killed_during_save_leaves_previous_checkpoint(tmp_path):
    """A child saves step 1, then is SIGKILLed halfway through saving step 2."""
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from hnet_dna.model.config import HNetConfig
        from hnet_dna.model.lm import HNetForCausalLM
        from hnet_dna.training.checkpoint import save_checkpoint

        cfg = HNetConfig.from_json({tiny_model().config.to_json()!r})
        model = HNetForCausalLM(cfg)
        save_checkpoint({str(tmp_path)!r}, 1, model.save_pretrained, {{"step": 1}})

        def die_after_weights(folder):
            model.save_pretrained(folder)  # weights written, training state not yet
            os.kill(os.getpid(), signal.SIGKILL)

        save_checkpoint({str(tmp_path)!r}, 2, die_after_weights, {{"step": 2}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr  # really killed, not a clean exit
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers, "the kill should have left a half-written temporary folder"
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == "step-00000001"
    assert load_training_state(latest)["step"] == 1
    HNetForCausalLM.from_pretrained(latest)  # loads
    remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["step-00000001"]


def test_folder_without_training_state_is_not_a_checkpoint(tmp_path):
    (tmp_path / "step-00000005").mkdir()
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        load_training_state(tmp_path / "step-00000005")


def test_rng_state_round_trip_through_a_file(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    state = capture_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
