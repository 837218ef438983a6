"""Runner: base-resolution mapping of every depth, log-probabilities, padding, model loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_data import random_ids, tiny_config, tiny_model

from hnet_dna.evaluation.runner import (
    PerBaseForward,
    available_depths,
    depth_level,
    load_model,
    stage_module,
)
from hnet_dna.genomics.alphabet import BOS, N
from hnet_dna.model.build import build_model
from hnet_dna.training.checkpoint import find_model_folder


def _reference_main(model, ids: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Innermost output and routing masks from a direct forward pass, mapped to bases by a
    position-by-position search (independent of the runner's cumsum bookkeeping)."""
    captured = {}
    inner = stage_module(model, 2).main_network
    h = inner.register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
    x = torch.tensor(np.r_[BOS, ids][None], dtype=torch.long)
    with torch.no_grad():
        out = model(x)
    h.remove()
    bm0 = out.routing[0].boundary_mask[0].numpy()
    bm1 = out.routing[1].boundary_mask[0].numpy()
    level1 = np.flatnonzero(bm0)  # stage-0 positions that are stage-1 tokens
    level2 = level1[bm1[: len(level1)]]  # stage-0 positions that are stage-2 tokens
    main = captured["x"][0].numpy()
    per_base = []
    for t in range(1, len(ids) + 1):
        latest = np.flatnonzero(level2 <= t)[-1]  # the chunk holding token t
        per_base.append(main[latest])
    return np.stack(per_base), [bm0[1:], np.isin(np.arange(1, len(ids) + 1), level2)]


def test_inner_depth_maps_to_the_chunk_of_each_base(model2_f64):
    ids = random_ids(90, seed=1)
    out = PerBaseForward(model2_f64).run([ids], ["main"])[0]
    expected, (starts1, starts2) = _reference_main(model2_f64, ids)
    assert out.features["main"].shape == (90, 64)
    np.testing.assert_allclose(out.features["main"], expected, atol=1e-10)
    np.testing.assert_array_equal(out.chunk_start[0], starts1)
    np.testing.assert_array_equal(out.chunk_start[1], starts2)
    # probabilities exist exactly where the base is a token of that stage
    assert np.isfinite(out.boundary_prob[0]).all()
    assert (np.isfinite(out.boundary_prob[1]) == starts1).all()


def test_logp_matches_direct_log_softmax_and_n_is_unscored(model2_f64):
    ids = random_ids(40, seed=2)
    ids[7] = N
    out = PerBaseForward(model2_f64).run([ids])[0]
    x = torch.tensor(np.r_[BOS, ids][None], dtype=torch.long)
    with torch.no_grad():
        lp = torch.log_softmax(model2_f64(x).logits[0], -1).numpy()
    expected = lp[np.arange(40), ids]
    expected[7] = np.nan
    np.testing.assert_allclose(out.logp, expected, atol=1e-10)


def test_batching_with_padding_gives_the_same_outputs(model2_f64):
    a, b = random_ids(30, seed=3), random_ids(75, seed=4)
    runner = PerBaseForward(model2_f64, batch_size=8)
    together = runner.run([a, b], available_depths(model2_f64.config))
    alone = [runner.run([w], available_depths(model2_f64.config))[0] for w in (a, b)]
    for x, y in zip(together, alone, strict=True):
        np.testing.assert_allclose(x.logp, y.logp, atol=1e-10)
        for d in x.features:
            np.testing.assert_allclose(x.features[d], y.features[d], atol=1e-10)


def test_depth_names_and_levels():
    cfg = tiny_config(2)
    assert available_depths(cfg) == ["encoder.0", "encoder.1", "main", "decoder.1",
                                     "decoder.0", "final"]
    assert [depth_level(d, cfg) for d in available_depths(cfg)] == [0, 1, 2, 1, 0, 0]
    with pytest.raises(ValueError, match="unknown depth 'encoder.2'"):
        depth_level("encoder.2", cfg)
    assert available_depths(tiny_config(0)) == ["main", "final"]


def test_final_depth_is_the_hidden_state_fed_to_the_head(model1):
    ids = random_ids(20, seed=5)
    out = PerBaseForward(model1).run([ids], ["final"])[0]
    x = torch.tensor(np.r_[BOS, ids][None], dtype=torch.long)
    with torch.no_grad():
        hidden = model1(x, output_hidden_states=True).hidden_states[0, 1:].numpy()
    np.testing.assert_allclose(out.features["final"], hidden, atol=1e-6)


def test_load_model_finds_newest_checkpoint_of_a_run(tmp_path):
    model = tiny_model(1)
    model.save_pretrained(tmp_path / "run" / "checkpoints" / "step-00000010")
    tiny_model(1, seed=1).save_pretrained(tmp_path / "run" / "checkpoints" / "step-00000002")
    assert find_model_folder(tmp_path / "run").name == "step-00000010"
    # the checkpoints folder itself; a newer step without weights is no model folder
    (tmp_path / "run" / "checkpoints" / "step-00000020").mkdir()
    (tmp_path / "run" / "checkpoints" / "step-00000020" / "config.json").write_text("{}")
    assert find_model_folder(tmp_path / "run" / "checkpoints").name == "step-00000010"
    loaded = load_model(tmp_path / "run")
    assert torch.equal(loaded.embeddings.weight, model.embeddings.weight)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        find_model_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not found"):
        find_model_folder(tmp_path / "missing")


def test_seeded_build_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(tiny_config(1), seed=7)
    after = torch.rand(1)
    b = build_model(tiny_config(1), seed=7)
    assert torch.equal(before, after)
    assert torch.equal(a.embeddings.weight, b.embeddings.weight)
