"""Checkpoints of the official H-Net release: a synthetic one, written here the way the official
code writes them (its JSON fields only, `torch.save` of a state dict with the official module
names and dtypes), must load strictly, round-trip through `convert-official` and keep its logits.

The names and shapes below are derived from the official modules (hnet/modules/*.py and
mamba_ssm's Mamba2 defaults), not from our model, so a rename on our side fails here."""

import json
import os

import pytest
import torch

from hnet_dna.cli import main as cli_main
from hnet_dna.model import HNetForCausalLM
from hnet_dna.model.config import expand_layout_string

# Official fields only: no headdim / ngroups (Mamba-2 defaults 64 / 1 apply), vocabulary 256.
OFFICIAL_CONFIG = {
    "arch_layout": ["m2", ["T1m1", ["T2"], "m1T1"], "m2"],
    "d_model": [64, 64, 96],
    "d_intermediate": [0, 128, 192],
    "vocab_size": 256,
    "ssm_cfg": {"chunk_size": 256, "d_conv": 4, "d_state": 16, "expand": 2},
    "attn_cfg": {"num_heads": [4, 4, 4], "rotary_emb_dim": [8, 8, 16], "window_size": [7, 7, -1]},
    "tie_embeddings": False,
}


def _official_shapes(cfg: dict) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """name -> (shape, dtype) of the official HNetForCausalLM state dict for ``cfg``."""
    ssm, bf16 = cfg["ssm_cfg"], torch.bfloat16
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}

    def isotropic(prefix: str, spec: str, d: int, d_int: int) -> None:
        for i, kind in enumerate(expand_layout_string(spec)):
            p = f"{prefix}.layers.{i}"
            shapes[f"{p}.norm1.weight"] = ((d,), bf16)
            if kind in "mM":  # mamba_ssm Mamba2: headdim 64, ngroups 1
                d_inner = ssm["expand"] * d
                nheads, conv = d_inner // 64, d_inner + 2 * ssm["d_state"]
                shapes[f"{p}.mixer.in_proj.weight"] = ((d_inner + conv + nheads, d), bf16)
                shapes[f"{p}.mixer.conv1d.weight"] = ((conv, 1, ssm["d_conv"]), bf16)
                shapes[f"{p}.mixer.conv1d.bias"] = ((conv,), bf16)
                for name in ("dt_bias", "A_log", "D"):
                    shapes[f"{p}.mixer.{name}"] = ((nheads,), bf16)
                shapes[f"{p}.mixer.norm.weight"] = ((d_inner,), bf16)
                shapes[f"{p}.mixer.out_proj.weight"] = ((d, d_inner), bf16)
            else:  # CausalMHA: fused qkv, no biases (rotary inv_freq is not persistent)
                shapes[f"{p}.mixer.Wqkv.weight"] = ((3 * d, d), bf16)
                shapes[f"{p}.mixer.out_proj.weight"] = ((d, d), bf16)
            if kind.isupper():  # SwiGLU, hidden width rounded up to a multiple of 128
                hidden = -(-d_int // 128) * 128
                shapes[f"{p}.norm2.weight"] = ((d,), bf16)
                shapes[f"{p}.mlp.fc1.weight"] = ((2 * hidden, d), bf16)
                shapes[f"{p}.mlp.fc2.weight"] = ((d, hidden), bf16)
        shapes[f"{prefix}.rmsnorm.weight"] = ((d,), bf16)

    def hnet(prefix: str, layout: list, stage: int, d_outer: int) -> None:
        d, d_int = cfg["d_model"][stage], cfg["d_intermediate"][stage]
        if d > d_outer:
            shapes[f"{prefix}.pad_dimension"] = ((d - d_outer,), bf16)
        if len(layout) == 1:
            isotropic(f"{prefix}.main_network", layout[0], d, d_int)
            return
        isotropic(f"{prefix}.encoder", layout[0], d, d_int)
        hnet(f"{prefix}.main_network", layout[1], stage + 1, d)
        isotropic(f"{prefix}.decoder", layout[2], d, d_int)
        shapes[f"{prefix}.routing_module.q_proj_layer.weight"] = ((d, d), bf16)
        shapes[f"{prefix}.routing_module.k_proj_layer.weight"] = ((d, d), bf16)
        shapes[f"{prefix}.residual_proj.weight"] = ((d, d), torch.float32)  # fp32 by design
        shapes[f"{prefix}.residual_proj.bias"] = ((d,), torch.float32)

    d0, vocab = cfg["d_model"][0], cfg["vocab_size"]
    shapes["embeddings.weight"] = ((vocab, d0), bf16)
    hnet("backbone", cfg["arch_layout"], 0, d0)
    shapes["lm_head.weight"] = ((vocab, d0), bf16)
    return shapes


def _write_official(tmp_path, cfg=OFFICIAL_CONFIG, seed=0):
    gen = torch.Generator().manual_seed(seed)
    state = {
        name: (0.2 * torch.randn(shape, generator=gen)).to(dtype)
        for name, (shape, dtype) in _official_shapes(cfg).items()
    }
    config_path, weights_path = tmp_path / "hnet_tiny.json", tmp_path / "hnet_tiny.pt"
    config_path.write_text(json.dumps(cfg, indent=4))
    torch.save(state, weights_path)
    return config_path, weights_path, state


def _ids(seed=0):
    return torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(seed))


def test_official_checkpoint_loads_strictly_with_official_defaults(tmp_path):
    config_path, weights_path, state = _write_official(tmp_path)
    model = HNetForCausalLM.from_official(config_path, weights_path)
    assert model.config.ssm_cfg.headdim == 64 and model.config.ssm_cfg.ngroups == 1
    assert model.config.vocab_size == 256
    ours = model.state_dict()
    assert set(ours) == set(state)
    for name, tensor in state.items():  # every value arrives unchanged (bf16 -> fp32 is exact)
        assert torch.equal(ours[name], tensor.float()), name
    assert model.vocabulary == {"name": "utf8_bytes", "tokens": {"BOS": 254, "EOS": 255}}


def test_convert_official_round_trip_keeps_logits(tmp_path, capsys):
    config_path, weights_path, _ = _write_official(tmp_path)
    official = HNetForCausalLM.from_official(config_path, weights_path).eval()
    out = tmp_path / "converted"
    assert cli_main(["convert-official", str(config_path), str(weights_path), str(out)]) == 0
    assert "from_pretrained" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                      "model.safetensors"]
    meta = json.loads((out / "config.json").read_text())
    assert meta["model_type"] == "hnet_dna" and meta["vocabulary"]["tokens"]["BOS"] == 254
    converted = HNetForCausalLM.from_pretrained(out).eval()
    ids = _ids()
    with torch.no_grad():
        expected, got = official(ids), converted(ids)
    assert torch.isfinite(expected.logits).all()
    assert torch.equal(got.logits, expected.logits)
    for a, b in zip(got.routing, expected.routing, strict=True):
        assert torch.equal(a.boundary_mask, b.boundary_mask)


def test_tied_official_checkpoint(tmp_path):
    cfg = {**OFFICIAL_CONFIG, "tie_embeddings": True}
    config_path, weights_path, state = _write_official(tmp_path, cfg)
    state["lm_head.weight"] = state["embeddings.weight"]  # what torch.save of a tied model holds
    torch.save(state, weights_path)
    model = HNetForCausalLM.from_official(config_path, weights_path)
    assert model.lm_head.weight is model.embeddings.weight
    assert torch.equal(model.lm_head.weight, state["embeddings.weight"].float())


def test_official_config_rejects_fields_it_does_not_have(tmp_path):
    config_path, weights_path, _ = _write_official(tmp_path)
    for bad in ({"headdim": 32}, {"ssm_cfg": {**OFFICIAL_CONFIG["ssm_cfg"], "ngroups": 2}}):
        config_path.write_text(json.dumps({**OFFICIAL_CONFIG, **bad}))
        with pytest.raises(ValueError, match=r"hnet_tiny\.json.*not fields of the official"):
            HNetForCausalLM.from_official(config_path, weights_path)
    config_path.write_text(json.dumps({k: v for k, v in OFFICIAL_CONFIG.items() if k != "d_model"}))
    with pytest.raises(ValueError, match=r"lacks \['d_model'\]"):
        HNetForCausalLM.from_official(config_path, weights_path)


def test_official_weights_must_match_exactly(tmp_path):
    config_path, weights_path, state = _write_official(tmp_path)
    renamed = dict(state)
    renamed["backbone.routing_module.q_proj.weight"] = renamed.pop(
        "backbone.routing_module.q_proj_layer.weight"
    )
    torch.save(renamed, weights_path)
    with pytest.raises(ValueError, match=r"hnet_tiny\.pt.*1 missing.*q_proj_layer.*1 unexpected"):
        HNetForCausalLM.from_official(config_path, weights_path)
    reshaped = dict(state, **{"lm_head.weight": torch.zeros(255, 64, dtype=torch.bfloat16)})
    torch.save(reshaped, weights_path)
    with pytest.raises(ValueError, match=r"another shape.*lm_head.weight: \(255, 64\)"):
        HNetForCausalLM.from_official(config_path, weights_path)


class _NotATensor:
    pass


def test_official_weights_are_read_with_weights_only(tmp_path):
    config_path, weights_path, state = _write_official(tmp_path)
    torch.save({**state, "extra": _NotATensor()}, weights_path)
    with pytest.raises(ValueError, match=r"hnet_tiny\.pt: not a torch state dict loadable with "):
        HNetForCausalLM.from_official(config_path, weights_path)


def test_convert_official_never_overwrites(tmp_path, capsys):
    config_path, weights_path, _ = _write_official(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli_main(["convert-official", str(config_path), str(weights_path), str(out)]) == 2
    assert "not overwriting" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    missing = tmp_path / "missing.pt"
    assert cli_main(["convert-official", str(config_path), str(missing), str(tmp_path / "o")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_non_finite_official_weights_are_refused_at_conversion(tmp_path, capsys):
    config_path, weights_path, state = _write_official(tmp_path)
    name = "backbone.routing_module.q_proj_layer.weight"
    state[name][0, 1] = float("nan")
    torch.save(state, weights_path)
    with pytest.raises(ValueError, match=rf"hnet_tiny\.pt: tensor '{name}' holds 1 non-finite"):
        HNetForCausalLM.from_official(config_path, weights_path)
    out = tmp_path / "converted"
    assert cli_main(["convert-official", str(config_path), str(weights_path), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"'{name}' holds 1 non-finite value" in err and "damaged" not in err
    assert err.count("\n") == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "hnet_tiny.json", "hnet_tiny.pt"]


def test_pickled_object_is_refused_in_one_line_without_torchs_advice(tmp_path, capsys):
    config_path, weights_path, state = _write_official(tmp_path)
    torch.save({**state, "extra": _NotATensor()}, weights_path)
    assert cli_main(["convert-official", str(config_path), str(weights_path),
                     str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights_only=False" not in err
    assert "hnet_tiny.pt: not a torch state dict loadable with weights_only=True" in err
    assert "_NotATensor" in err  # what was refused


def test_heads_that_do_not_divide_d_model_name_the_official_config(tmp_path, capsys):
    attn = {**OFFICIAL_CONFIG["attn_cfg"], "num_heads": [4, 5, 4]}
    config_path, weights_path, _ = _write_official(tmp_path)
    config_path.write_text(json.dumps({**OFFICIAL_CONFIG, "attn_cfg": attn}))
    with pytest.raises(ValueError, match=r"hnet_tiny\.json: .*d_model.* divisible by num_heads"):
        HNetForCausalLM.from_official(config_path, weights_path)
    assert cli_main(["convert-official", str(config_path), str(weights_path),
                     str(tmp_path / "o")]) == 2
    assert "hnet_tiny.json" in capsys.readouterr().err


def test_converted_folder_gets_umask_permissions(tmp_path):
    config_path, weights_path, _ = _write_official(tmp_path)
    out = tmp_path / "converted"
    previous = os.umask(0o022)
    try:
        assert cli_main(["convert-official", str(config_path), str(weights_path), str(out)]) == 0
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {
        "config.json": 0o644, "model.safetensors": 0o644, "README.md": 0o644}
