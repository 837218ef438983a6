"""`hnet-dna` dispatch and hydra overrides reaching the pretraining config."""

from __future__ import annotations

import re

import pytest
import yaml

from hnet_dna import cli
from hnet_dna.cli import main, register_command
from hnet_dna.training.pretrain import load_pretrain_config, parse_config

TINY_MODEL = [
    "model.arch_layout=[m1,[t1],m1]",
    "model.d_model=[32,64]",
    "model.d_intermediate=[0,0]",
    "model.ssm_cfg.d_state=16",
    "model.ssm_cfg.headdim=16",
    "model.attn_cfg.num_heads=[2,2]",
    "model.attn_cfg.rotary_emb_dim=[8,8]",
]


def test_overrides_reach_the_config(capsys):
    assert main(["pretrain", "--cfg", "job", "model=hnet_2stage_tiny", "trainer.max_steps=5",
                 "trainer.loss.target_ratio=[3,2]", "data.context_length=256"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_steps"] == 5
    assert printed["trainer"]["loss"]["target_ratio"] == [3, 2]
    assert printed["data"]["context_length"] == 256
    assert printed["model"]["arch_layout"] == ["m2", ["m2", ["T2"], "m2"], "m2"]


def test_composed_config_validates_into_dataclasses():
    cfg, model_cfg = parse_config(load_pretrain_config(["experiment=tiny_cpu_2stage",
                                                        "trainer.optim.lr=1e-3"]))
    assert model_cfg.num_stages == 2
    assert cfg.trainer.loss.target_ratio == [3.0, 3.0]
    assert cfg.trainer.optim.lr == 1e-3
    assert cfg.data.corpus == "yeast_chrI"


def test_unknown_key_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "--cfg", "job", "trainer.no_such_option=1"])
    assert exit_info.value.code == 1
    assert "no_such_option" in capsys.readouterr().err


def test_mistyped_value_is_rejected():
    with pytest.raises(Exception, match="max_steps"):
        load_pretrain_config(["trainer.max_steps=lots"])


def test_pretrain_run_writes_the_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["pretrain", f"hydra.run.dir={run_dir}", "trainer.max_steps=2",
                 "trainer.progress_bar=false", "trainer.markov_order=1",
                 "trainer.eval_max_batches=1", "data.context_length=64", "data.batch_size=2",
                 *TINY_MODEL])
    assert code == 0
    out = capsys.readouterr().out
    assert f"run folder: {run_dir}" in out
    assert "held-out bits per base" in out and "Markov baselines" in out
    # yeast chr I's training split (0.56 Mb) lies within the default trainer.markov_fit_mb
    assert re.search(r"fitted on 0\.5\d Mb of training windows, all of the 0\.5\d Mb split; "
                     r"trainer\.markov_fit_mb\)", out), out
    for name in ("config.yaml", "metrics.jsonl", "metrics.png",
                 "checkpoints/step-00000002/model.safetensors",
                 "checkpoints/step-00000002/training_state.pt"):
        assert (run_dir / name).exists(), name
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["trainer"]["max_steps"] == 2
    assert saved["model"]["d_model"] == [32, 64]


def test_usage_and_unknown_command(capsys):
    assert main([]) == 0
    assert "pretrain" in capsys.readouterr().out
    assert main(["no-such-command"]) == 2
    assert "unknown command 'no-such-command'" in capsys.readouterr().err


def test_registered_command_is_listed_dispatched_and_unique(capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))  # this test's registry only
    seen = []
    register_command("echo-args", "record the arguments", lambda args: seen.append(args) or 3)
    assert main(["echo-args", "--x", "1"]) == 3 and seen == [["--x", "1"]]
    assert main([]) == 0
    assert re.search(r"\n  echo-args +record the arguments\n", capsys.readouterr().out)
    with pytest.raises(ValueError, match="'echo-args' is already registered"):
        register_command("echo-args", "again", lambda args: 0)
    with pytest.raises(ValueError, match="'pretrain' is already registered"):
        register_command("pretrain", "again", lambda args: 0)


def test_fasta_preset_requires_a_path():
    with pytest.raises(Exception, match="data.corpus"):
        parse_config(load_pretrain_config(["data=hg38"]))
    cfg, _ = parse_config(load_pretrain_config(["data=hg38", "data.corpus=/g/hg38.fa",
                                                "data.bed=/g/splits.bed"]))
    assert (cfg.data.corpus, cfg.data.bed, cfg.data.context_length) == (
        "/g/hg38.fa", "/g/splits.bed", 8192)


def test_evaluation_subcommands_are_dispatched(capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse exits after printing help
        main(["embed", "--help"])
    assert exit_info.value.code == 0
    assert "usage: hnet-dna embed" in capsys.readouterr().out
