"""Whole-model properties of HNetForCausalLM (float64, tiny configs)."""

import pytest
import torch
import torch.nn.functional as F

from hnet_dna.model.config import AttnConfig, HNetConfig, SSMConfig
from hnet_dna.model.lm import HNetForCausalLM

SSM = SSMConfig(d_state=8, headdim=16, chunk_size=8)

CONFIGS = {
    "1stage": HNetConfig(
        arch_layout=["m1T1", ["T2"], "m1"],
        d_model=[32, 48],
        d_intermediate=[64, 96],
        vocab_size=12,
        ssm_cfg=SSM,
        attn_cfg=AttnConfig(num_heads=[2, 3], rotary_emb_dim=[8, 8], window_size=[5, -1]),
    ),
    "2stage": HNetConfig(
        arch_layout=["m1", ["T1m1", ["M1T1"], "m1t1"], "m1"],
        d_model=[32, 32, 64],
        d_intermediate=[0, 64, 128],
        vocab_size=12,
        ssm_cfg=SSM,
        attn_cfg=AttnConfig(num_heads=[2, 2, 4], rotary_emb_dim=[8, 8, 8], window_size=[-1, 7, -1]),
    ),
}


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _model(name: str, seed: int = 0) -> HNetForCausalLM:
    torch.manual_seed(seed)
    model = HNetForCausalLM(CONFIGS[name])
    model.init_weights()
    with torch.no_grad():
        # Random routing projections and residual path, so boundaries are irregular and every
        # path carries signal (at init q = k = I and residual_proj = 0).
        for module in model.modules():
            if hasattr(module, "q_proj_layer"):
                module.q_proj_layer.weight.normal_(std=0.5)
                module.k_proj_layer.weight.normal_(std=0.5)
            if hasattr(module, "residual_proj"):
                module.residual_proj.weight.normal_(std=0.1)
            if getattr(module, "pad_dimension", None) is not None:
                module.pad_dimension.normal_()
    return model.eval()


def _ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 12, (batch, length), generator=torch.Generator().manual_seed(seed))


def _boundary_fraction(model, ids) -> float:
    out = model(ids)
    return float(out.routing[0].boundary_mask.float().mean())


@pytest.mark.parametrize("name", ["1stage", "2stage"])
def test_routing_is_irregular_in_fixture_models(name):
    # Guard for the tests below: they are only meaningful if chunking actually compresses.
    frac = _boundary_fraction(_model(name), _ids(3, 40))
    assert 0.1 < frac < 0.9


@pytest.mark.parametrize("name", ["1stage", "2stage"])
def test_causality(name):
    model = _model(name)
    ids = _ids(2, 40)
    base = model(ids).logits
    for t in (0, 7, 23, 38):
        changed = ids.clone()
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 1 + torch.arange(39 - t) % 5) % 12
        logits = model(changed).logits
        torch.testing.assert_close(logits[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(logits[:, t + 1 :], base[:, t + 1 :])


@pytest.mark.parametrize("name", ["1stage", "2stage"])
def test_step_decoding_reproduces_forward_for_a_batch(name):
    model = _model(name)
    ids = _ids(3, 30, seed=5)
    full = model(ids).logits
    cache = model.allocate_inference_cache(3, 30)
    stepped = torch.stack([model.step(ids[:, t], cache) for t in range(30)], dim=1)
    torch.testing.assert_close(stepped, full, rtol=1e-9, atol=1e-9)
    # The rows place boundaries differently (the reason per-row decoding state is needed).
    boundaries = model(ids).routing[0].boundary_mask
    assert len({tuple(row.tolist()) for row in boundaries}) == 3


@pytest.mark.parametrize("name", ["1stage", "2stage"])
def test_prefill_then_step_matches_forward(name):
    model = _model(name)
    ids = _ids(3, 26, seed=6)
    full = model(ids).logits
    cache = model.allocate_inference_cache(3, 26)
    prefill = model(ids[:, :17], cache=cache).logits
    torch.testing.assert_close(prefill, full[:, :17], rtol=1e-9, atol=1e-9)
    for t in range(17, 26):
        torch.testing.assert_close(model.step(ids[:, t], cache), full[:, t], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["1stage", "2stage"])
def test_padded_batch_equals_each_sequence_alone(name):
    model = _model(name)
    lengths = [33, 20, 9]
    rows = [_ids(1, n, seed=10 + i)[0] for i, n in enumerate(lengths)]
    ids = torch.zeros(3, 33, dtype=torch.long)
    mask = torch.zeros(3, 33, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = True
    out = model(ids, mask=mask)
    for i, row in enumerate(rows):
        alone = model(row[None]).logits[0]
        torch.testing.assert_close(out.logits[i, : len(row)], alone, rtol=1e-9, atol=1e-9)
        assert not out.routing[0].boundary_mask[i, len(row) :].any()


@pytest.mark.parametrize("name", ["1stage", "2stage"])
def test_packed_sequences_equal_each_sequence_alone(name):
    model = _model(name)
    rows = [_ids(1, n, seed=20 + i)[0] for i, n in enumerate([14, 25, 9])]
    packed = torch.cat(rows)[None]
    seq_idx = torch.cat([torch.full((len(r),), i) for i, r in enumerate(rows)])[None].int()
    out = model(packed, seq_idx=seq_idx).logits[0]
    start = 0
    for row in rows:
        alone = model(row[None]).logits[0]
        torch.testing.assert_close(out[start : start + len(row)], alone, rtol=1e-9, atol=1e-9)
        start += len(row)


def test_generate_with_ragged_prompts_matches_greedy_recompute():
    model = _model("2stage")
    prompts = [_ids(1, n, seed=30 + n)[0].tolist() for n in (5, 9, 7)]
    generated = model.generate(prompts, max_new_tokens=6, temperature=0.0)
    for prompt, out in zip(prompts, generated, strict=True):
        seq = list(prompt)
        for _ in range(6):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
        assert out == seq


def test_gradients_reach_routing_through_straight_through_path():
    model = _model("2stage").train()
    ids = _ids(2, 32)
    logits = model(ids).logits
    # Cross-entropy only (no ratio loss): routing gets gradient solely via the confidence STE.
    F.cross_entropy(logits[:, :-1].reshape(-1, 12), ids[:, 1:].reshape(-1)).backward()
    for module in (model.backbone, model.backbone.main_network):
        grad = module.routing_module.q_proj_layer.weight.grad
        assert grad is not None and grad.abs().sum() > 0
        assert module.routing_module.k_proj_layer.weight.grad.abs().sum() > 0


def test_two_stage_parameter_names_and_count():
    config = CONFIGS["2stage"]
    model = HNetForCausalLM(config)
    names = dict(model.named_parameters())
    for key in [
        "embeddings.weight",
        "lm_head.weight",
        "backbone.encoder.layers.0.mixer.in_proj.weight",
        "backbone.encoder.layers.0.mixer.A_log",
        "backbone.encoder.rmsnorm.weight",
        "backbone.routing_module.q_proj_layer.weight",
        "backbone.routing_module.k_proj_layer.weight",
        "backbone.residual_proj.weight",
        "backbone.residual_proj.bias",
        "backbone.main_network.encoder.layers.0.mixer.Wqkv.weight",
        "backbone.main_network.routing_module.q_proj_layer.weight",
        "backbone.main_network.main_network.pad_dimension",
        "backbone.main_network.main_network.main_network.layers.0.mlp.fc1.weight",
        "backbone.main_network.main_network.main_network.layers.1.mixer.out_proj.weight",
        "backbone.main_network.decoder.layers.1.mixer.Wqkv.weight",
        "backbone.decoder.layers.0.mixer.out_proj.weight",
    ]:
        assert key in names, key
    assert "backbone.main_network.pad_dimension" not in names  # 32 -> 32: no widening

    def mamba(d):  # expand 2, headdim 16, d_state 8, ngroups 1, d_conv 4
        d_inner, heads, conv_dim = 2 * d, 2 * d // 16, 2 * d + 2 * 8
        in_proj = d * (2 * d_inner + 2 * 8 + heads)
        return in_proj + conv_dim * 4 + conv_dim + 3 * heads + d_inner + d_inner * d

    def attn(d):
        return 4 * d * d

    def mlp(d, d_int):
        d_int = -(-d_int // 128) * 128
        return 3 * d * d_int

    def block(d, mixer, mlp_params=0):
        return d + mixer + (d + mlp_params if mlp_params else 0)

    def stage_extra(d):  # routing q/k, residual_proj (weight + bias), encoder + decoder norms
        return 2 * d * d + d * d + d + 2 * d

    expected = (
        12 * 32 * 2  # embeddings + untied head
        + block(32, mamba(32)) + block(32, mamba(32)) + stage_extra(32)  # stage 0: m1 / m1
        + block(32, attn(32), mlp(32, 64)) + block(32, mamba(32))  # stage 1 encoder T1m1
        + block(32, mamba(32)) + block(32, attn(32))  # stage 1 decoder m1t1
        + stage_extra(32)
        + 32  # stage 2 pad_dimension 32 -> 64
        + block(64, mamba(64), mlp(64, 128)) + block(64, attn(64), mlp(64, 128)) + 64  # M1T1
    )
    assert model.num_parameters() == expected
    # Stage grouping covers every parameter exactly once.
    grouped = [n for stage in model.stage_parameters() for n, _ in stage]
    assert sorted(grouped) == sorted(names)
    stage_of = {n: s for s, group in enumerate(model.stage_parameters()) for n, _ in group}
    assert stage_of["backbone.main_network.main_network.pad_dimension"] == 2
    assert stage_of["backbone.main_network.routing_module.q_proj_layer.weight"] == 1
    assert stage_of["lm_head.weight"] == 0


def test_residual_heights_match_official_two_stage_xl():
    config = HNetConfig(
        arch_layout=["m4", ["T1m4", ["T27"], "m4T1"], "m4"],
        d_model=[32, 32, 32],
        d_intermediate=[0, 64, 64],
        ssm_cfg=SSM,
        attn_cfg=AttnConfig(num_heads=[2], rotary_emb_dim=[8], window_size=[-1]),
    )
    model = HNetForCausalLM(config, device="meta")
    assert model.backbone.residual_heights() == {0: 8, 1: 20, 2: 74}


def test_init_weights_keeps_identity_routing_and_zero_residual():
    torch.manual_seed(0)
    model = HNetForCausalLM(CONFIGS["1stage"])
    model.init_weights()
    routing = model.backbone.routing_module
    assert torch.equal(routing.q_proj_layer.weight, torch.eye(32))
    assert torch.equal(model.backbone.residual_proj.weight, torch.zeros(32, 32))
    # out_proj is scaled by 1/sqrt(n_res): stage 0 has n_res = 2 + 1 = 3.
    w = model.backbone.encoder.layers[0].mixer.out_proj.weight
    assert abs(float(w.std()) - 0.02 / 3**0.5) < 0.003


def test_save_and_load_round_trip(tmp_path):
    model = _model("2stage")
    ids = _ids(2, 20)
    path = model.save_pretrained(tmp_path / "ckpt")
    loaded = HNetForCausalLM.from_pretrained(path)
    assert loaded.config == model.config
    torch.testing.assert_close(loaded.eval()(ids).logits, model(ids).logits, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="not a saved model folder"):
        HNetForCausalLM.from_pretrained(tmp_path / "nothing")
