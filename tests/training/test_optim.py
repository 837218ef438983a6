"""Parameter groups, eq. (11) multipliers, no-decay rules and the LR schedules."""

from __future__ import annotations

import math

import pytest
import torch
from training_helpers import tiny_model

from hnet_dna.model.config import HNetConfig, per_stage
from hnet_dna.training.config import OptimConfig, ScheduleConfig
from hnet_dna.training.optim import (
    build_optimizer,
    build_param_groups,
    eq11_lr_multipliers,
    resolve_lr_multipliers,
    uses_weight_decay,
)
from hnet_dna.training.schedule import build_scheduler, lr_factor_fn


@pytest.mark.parametrize(
    ("ratios", "widths", "expected"),
    [
        # The paper's text configs with N_GPT = 4.6 (values of hnet-notes 7.2).
        ([6], [1024, 1536], [2.63, 0.88]),
        ([6], [1024, 2048], [3.03, 0.88]),
        ([3, 3], [1024, 1024, 1536], [2.63, 1.52, 0.72]),
        ([3, 3], [1024, 1536, 2048], [3.03, 1.43, 0.72]),
    ],
)
def test_eq11_matches_paper_configs(ratios, widths, expected):
    got = eq11_lr_multipliers(ratios, widths, reference_ratio=4.6)
    assert got == pytest.approx(expected, abs=0.006)


def test_eq11_dna_default_is_one_over_sqrt_n():
    # DNA at equal widths, N_ref = 1: stage 0 at the base LR, the main network 1/sqrt(3).
    assert eq11_lr_multipliers([3], [512, 512]) == pytest.approx([1.0, 1 / math.sqrt(3)])


def test_eq11_rejects_wrong_width_count():
    with pytest.raises(ValueError, match="need one width per stage"):
        eq11_lr_multipliers([3], [512])


def test_override_list_wins_and_broadcasts():
    cfg = OptimConfig(lr_multipliers=[2.0])
    assert resolve_lr_multipliers(cfg, [3.0], [32, 64]) == [2.0, 2.0]
    with pytest.raises(ValueError, match="has 3 entries but the model has 2 stages"):
        per_stage([1, 2, 3], 2, "optim.lr_multipliers")


def test_per_stage_settings_broadcast_like_the_model_config():
    """Training settings and model fields share one rule: one value serves every stage."""
    config = HNetConfig(arch_layout=["m1", ["m1", ["T1"], "m1"], "m1"], d_model=[64, 64, 128],
                        d_intermediate=[0, 0, 256], attn_cfg={"num_heads": [2]})
    heads = [config.stage_cfg(s)["num_heads"] for s in range(3)]
    assert heads == per_stage(config.attn_cfg.num_heads, 3, "num_heads") == [2.0] * 3
    widths = [config.stage_cfg(s)["d_model"] for s in range(3)]
    assert widths == per_stage(config.d_model, 3, "d_model") == [64, 64, 128]
    assert per_stage(3, 2, "target_ratio") == [3.0, 3.0] and per_stage([3.0], 0, "r") == []


@pytest.mark.parametrize(
    ("name", "decays"),
    [
        ("backbone.encoder.layers.0.mixer.in_proj.weight", True),
        ("backbone.encoder.layers.0.mixer.conv1d.weight", True),
        ("backbone.routing_module.q_proj_layer.weight", True),
        ("backbone.encoder.layers.0.mixer.conv1d.bias", False),
        ("backbone.residual_proj.bias", False),
        ("backbone.encoder.layers.0.mixer.dt_bias", False),
        ("backbone.encoder.layers.0.mixer.A_log", False),
        ("backbone.encoder.layers.0.mixer.D", False),
        ("backbone.encoder.layers.0.norm1.weight", False),
        ("backbone.encoder.layers.0.mixer.norm.weight", False),
        ("backbone.encoder.rmsnorm.weight", False),
        ("embeddings.weight", False),
        ("backbone.main_network.pad_dimension", False),
        ("lm_head.weight", True),
    ],
)
def test_no_decay_rules(name, decays):
    assert uses_weight_decay(name, torch.nn.Parameter(torch.zeros(2, 2))) is decays


def test_embeddings_decay_by_choice():
    param = torch.nn.Parameter(torch.zeros(2, 2))
    assert uses_weight_decay("embeddings.weight", param, decay_embeddings=True)


def test_lr_multipliers_reach_the_right_groups():
    model = tiny_model(two_stage=True)
    stages = model.stage_parameters()
    multipliers = [1.0, 0.5, 0.25]
    cfg = OptimConfig(lr=1e-2, weight_decay=0.1)
    optimizer = build_optimizer(stages, cfg, multipliers)
    scheduler = build_scheduler(optimizer, ScheduleConfig(name="wsd"), total_steps=10)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    # Every trainable parameter is in exactly one group, at its stage's multiplier.
    assert len(group_of) == sum(1 for p in model.parameters())
    factor = lr_factor_fn(ScheduleConfig(name="wsd"), 10)
    for _ in range(3):
        for stage, named in enumerate(stages):
            for name, param in named:
                group = group_of[id(param)]
                assert group["stage"] == stage, name
                assert group["lr_multiplier"] == multipliers[stage], name
                assert group["weight_decay"] == (0.1 if uses_weight_decay(name, param) else 0.0)
                expected = 1e-2 * factor(scheduler.last_epoch) * multipliers[stage]
                assert group["lr"] == pytest.approx(expected), name
        optimizer.step()
        scheduler.step()
    # The inner stages really hold parameters (the test covers three distinct multipliers).
    assert {g["stage"] for g in optimizer.param_groups} == {0, 1, 2}


def test_duplicate_parameter_across_stages_is_an_error():
    param = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="more than one stage"):
        build_param_groups([[("a", param)], [("b", param)]], [1.0, 1.0], 0.1)


def test_wsd_shape():
    fn = lr_factor_fn(ScheduleConfig(name="wsd", warmup_fraction=0.1, decay_fraction=0.2), 100)
    assert [fn(s) for s in range(10)] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert all(fn(s) == 1.0 for s in range(10, 80))
    decay = [fn(s) for s in range(80, 100)]
    assert decay == pytest.approx([1 - math.sqrt((s - 80) / 20) for s in range(80, 100)])
    # Falls every step and would reach 0 at step 100: the last step still trains.
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert 0 < decay[-1] < 0.03


def test_wsd_min_ratio_and_linear_shape():
    cfg = ScheduleConfig(name="wsd", warmup_fraction=0.0, decay_fraction=0.5,
                         decay_shape="linear", min_lr_ratio=0.1)
    fn = lr_factor_fn(cfg, 10)
    assert fn(0) == 1.0
    assert fn(5) == 1.0
    assert fn(7) == pytest.approx(0.1 + 0.9 * (1 - 2 / 5))
    assert fn(9) == pytest.approx(0.1 + 0.9 * (1 - 4 / 5))


def test_cosine_shape():
    fn = lr_factor_fn(ScheduleConfig(name="cosine", warmup_fraction=0.2, min_lr_ratio=0.0), 10)
    assert fn(1) == pytest.approx(1.0)
    assert fn(2) == pytest.approx(1.0)
    assert fn(6) == pytest.approx(0.5)  # half-way through the 8 post-warmup steps
    assert fn(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (ScheduleConfig(name="step"), "unknown schedule.name 'step'"),
        (ScheduleConfig(decay_shape="exp"), "unknown decay_shape 'exp'"),
        (ScheduleConfig(warmup_fraction=0.9, decay_fraction=0.2), "exceed the run"),
        (ScheduleConfig(warmup_fraction=1.5), r"warmup_fraction must be in \[0, 1\]"),
    ],
)
def test_schedule_errors(cfg, message):
    with pytest.raises(ValueError, match=message):
        lr_factor_fn(cfg, 100)
