"""Sweep configs compose, presets are FLOP-matched, and runs finish, skip and record crashes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from hnet_dna.baselines import experiment
from hnet_dna.baselines.corpus import CorpusSpec, SourceSpec
from hnet_dna.baselines.experiment import (
    BudgetSpec,
    ModelSpec,
    RunSpec,
    TokenizerSpec,
    run_one,
)
from hnet_dna.baselines.sweep import planned_flops, spec_from_config, sweep_task
from hnet_dna.training.config import TrainerConfig

CONF = Path(__file__).resolve().parents[2] / "pipelines" / "data_efficiency" / "conf"
PRESETS = ["cpu_tiny", "cpu_small", "cpu_medium", "paper_dna", "paper_text"]


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def test_sweep_config_reuses_the_package_launcher_group():
    """hydra/launcher=slurm resolves to hnet_dna/conf/hydra/launcher/slurm.yaml (its own
    default, submitit_slurm, needs the optional hydra-submitit-launcher plugin)."""
    from hydra.errors import MissingConfigException

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        try:
            cfg = compose(config_name="config", overrides=["hydra/launcher=slurm"],
                          return_hydra_config=True)
        except MissingConfigException as err:  # plugin absent: slurm.yaml itself was found
            assert "In 'hydra/launcher/slurm': Could not load 'hydra/launcher/submitit_slurm'" in (
                str(err))
        else:
            assert cfg.hydra.launcher.max_num_timeout == 10  # the package's requeue setting


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_match_flops_within_ten_percent(preset):
    for corpus, kind in (("athaliana_chr1", "dna"), ("english", "text")):
        flops = planned_flops(_compose([f"preset={preset}", f"corpus={corpus}"]), kind)
        reference = (flops["hnet_mt"] + flops["hnet_mm"]) / 2
        assert len(flops) == (6 if kind == "dna" else 5)
        for name, value in flops.items():
            assert abs(value / reference - 1) <= 0.10, (preset, kind, name, value / reference)


def test_cpu_medium_is_cpu_small_at_four_times_the_bases():
    """Same models, trainer and window; 4x the training bases; a held-out prefix that contains
    cpu_small's, so the two presets' numbers stay comparable."""
    small, medium = (_compose([f"preset={p}"]) for p in ("cpu_small", "cpu_medium"))
    assert medium.models == small.models and medium.trainer == small.trainer
    assert medium.budget.bases == 4 * small.budget.bases
    assert medium.budget.eval_max_units >= small.budget.eval_max_units
    assert medium.budget.context_length == small.budget.context_length
    assert medium.budget.batch_size == small.budget.batch_size


def test_spec_from_config_types_every_section():
    cfg = _compose(["preset=cpu_tiny", "corpus=english", "model_name=bytebpe_t", "lr=0.01"])
    spec = spec_from_config(cfg)
    assert spec.model.tokenizer.kind == "bpe" and spec.model.kinds == ["text"]
    assert spec.trainer.optim.lr == 0.01
    assert spec.corpus.kind == "text" and spec.corpus.source.text[0].endswith("tinyshakespeare.txt")
    assert spec.budget.bases_per_step == 256 * 8
    with pytest.raises(KeyError, match="not in the preset"):
        spec_from_config(_compose(["preset=cpu_tiny", "model_name=nope"]))


def _fasta(path: Path, length: int = 6000) -> Path:
    rng = np.random.default_rng(0)
    seq = "".join(rng.choice(list("ACGT"), length))
    seq = seq[:3000] + "N" * 50 + seq[3050:]
    with gzip.open(path, "wt") if path.suffix == ".gz" else open(path, "w") as handle:
        handle.write(">chrA\n" + "\n".join(seq[i : i + 60] for i in range(0, length, 60)) + "\n")
    return path


def _spec(fasta: Path, tokenizer: TokenizerSpec) -> RunSpec:
    config = {"arch_layout": ["T1"], "d_model": [32], "d_intermediate": [64],
              "attn_cfg": {"num_heads": [2], "rotary_emb_dim": [0], "window_size": [-1]}}
    trainer = TrainerConfig(device="cpu", precision="fp32", progress_bar=False, log_every=1)
    return RunSpec(
        corpus=CorpusSpec("toy", "dna", SourceSpec(fasta=[str(fasta)])),
        model_name="kmer3_t",
        model=ModelSpec(config=config, tokenizer=tokenizer),
        budget=BudgetSpec(bases=256, eval_every_bases=128, context_length=64, batch_size=2,
                          eval_max_units=128),
        trainer=trainer,
    )


def test_run_one_trains_token_model_then_skips(tmp_path, monkeypatch):
    spec = _spec(_fasta(tmp_path / "toy.fa"), TokenizerSpec(kind="kmer", k=3))
    run_dir = tmp_path / "run"
    result = run_one(spec, run_dir, cache_dir=tmp_path / "cache")
    assert result["status"] == "finished" and result["steps"] == 2
    evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["split"] == "eval"]
    assert [e["bases_seen"] for e in evals] == [128.0, 256.0]
    assert evals[-1]["bases"] == 128  # the capped held-out block, N-free here
    assert 2.5 < result["bases_per_token"] <= 3.0
    assert result["flops_per_base"] > 0 and result["params"] > 0

    def must_not_train(self):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(experiment.Trainer, "fit", must_not_train)
    assert run_one(spec, run_dir, cache_dir=tmp_path / "cache") == result
    monkeypatch.undo()

    # An interrupted run (no result.json) resumes from its last checkpoint, here the final step:
    # no training step is repeated and the final evaluation is the same.
    (run_dir / "result.json").unlink()

    def must_not_step(self, micro_batches):
        raise AssertionError("a resumed run repeated a step")

    monkeypatch.setattr(experiment.Trainer, "train_step", must_not_step)
    resumed = run_one(spec, run_dir, cache_dir=tmp_path / "cache")
    assert resumed["final"]["bpb"] == pytest.approx(result["final"]["bpb"], rel=1e-6)


def test_not_applicable_model_is_skipped(tmp_path):
    spec = _spec(_fasta(tmp_path / "toy.fa"), TokenizerSpec())
    spec.model.kinds = ["text"]
    assert run_one(spec, tmp_path / "run", tmp_path / "cache")["status"] == "not_applicable"
    assert not (tmp_path / "run").exists()


def test_crashed_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    missing = tmp_path / "missing.fa"
    cfg = _compose(["preset=cpu_tiny", "model_name=iso_t", f"output_root={tmp_path}",
                    f"corpus.source.fasta=[{missing}]", "corpus.source.package=null",
                    "corpus.extra_eval=[]"])
    assert sweep_task(cfg) is None
    failures = list((tmp_path / "runs").glob("*/iso_t/*/failure.json"))
    assert len(failures) == 1
    record = json.loads(failures[0].read_text())
    assert record["status"] == "failed" and "missing.fa" in record["error"] + record["traceback"]
    with pytest.raises(Exception, match="missing.fa"):
        sweep_task(_compose(["preset=cpu_tiny", "model_name=iso_t", f"output_root={tmp_path}",
                             f"corpus.source.fasta=[{missing}]", "corpus.source.package=null",
                    "corpus.extra_eval=[]",
                             "fail_fast=true"]))
