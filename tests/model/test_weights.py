"""A damaged or mismatched model folder is refused at load with one line naming the file."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from hnet_dna.errors import InputError
from hnet_dna.model.config import HNetConfig
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.model.weights import WeightsError

CONFIG = HNetConfig(
    arch_layout=["m1", ["t1"], "m1"],
    d_model=[32, 64],
    d_intermediate=[0, 0],
    ssm_cfg={"d_state": 16, "headdim": 16, "chunk_size": 32},
    attn_cfg={"num_heads": [2, 2], "rotary_emb_dim": [8, 8], "window_size": [-1, -1]},
)


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    model = HNetForCausalLM(CONFIG)
    model.init_weights()
    return model.save_pretrained(tmp_path / "model")


def _data_offset(path) -> int:
    # safetensors layout: 8-byte little-endian header length, JSON header, then tensor data
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    return 8 + header_len


def test_intact_folder_loads(folder):
    assert HNetForCausalLM.from_pretrained(folder).config == CONFIG


def test_flipped_block_of_nan_names_the_tensor_and_file(folder):
    # A 4 KB block of 0xFF bytes in the data: float32 NaNs that safetensors parses without
    # complaint (it has no checksum); before, the model loaded and scored everything as 0.
    weights = folder / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    start = _data_offset(weights) + 4096
    raw[start:start + 4096] = b"\xff" * 4096
    weights.write_bytes(bytes(raw))
    with pytest.raises(InputError,
                       match=r"model\.safetensors: tensor '[^']+' holds 1,024 non-finite"):
        HNetForCausalLM.from_pretrained(folder)


def test_inf_weight_is_refused(folder):
    weights = folder / "model.safetensors"
    header = json.loads(weights.read_bytes()[8:_data_offset(weights)])
    name = "embeddings.weight"
    begin = header[name]["data_offsets"][0] + _data_offset(weights)
    raw = bytearray(weights.read_bytes())
    raw[begin:begin + 4] = struct.pack("<f", float("inf"))
    weights.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match=f"tensor '{name}' holds 1 non-finite"):
        HNetForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "garbage", "empty"])
def test_corrupt_weights_file_is_an_input_error_naming_it(folder, damage):
    weights = folder / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes({
        "truncated": raw[: len(raw) // 2],
        "zeroed": bytes(len(raw)),
        "garbage": b"\x13" * 8 + raw[8:],
        "empty": b"",
    }[damage])
    with pytest.raises(InputError, match=f"{weights}: corrupt or truncated safetensors"):
        HNetForCausalLM.from_pretrained(folder)


def test_config_far_larger_than_the_weights_is_refused_before_building(folder, monkeypatch):
    config = json.loads((folder / "config.json").read_text())
    config["d_model"] = [32_768, 65_536]  # would allocate tens of GB
    (folder / "config.json").write_text(json.dumps(config))
    built = []
    original = HNetForCausalLM.__init__

    def spy(self, cfg, device=None, dtype=None):
        built.append(device or torch.get_default_device())
        original(self, cfg, device=device, dtype=dtype)

    monkeypatch.setattr(HNetForCausalLM, "__init__", spy)
    with pytest.raises(InputError, match=r"config\.json does not describe .*model\.safetensors"):
        HNetForCausalLM.from_pretrained(folder)
    assert built and all(d.type == "meta" for d in built)  # only the shape probe ran


def test_config_with_other_shapes_is_refused(folder):
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = config.get("vocab_size", 12) - 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="embeddings.weight: config"):
        HNetForCausalLM.from_pretrained(folder)


def test_unreadable_config_names_the_file(folder):
    (folder / "config.json").write_bytes(b"\x00\xff binary")
    with pytest.raises(InputError, match=r"config\.json: not a JSON model config"):
        HNetForCausalLM.from_pretrained(folder)


def test_non_finite_weights_are_called_non_finite_not_damaged(folder):
    weights = folder / "model.safetensors"
    header = json.loads(weights.read_bytes()[8:_data_offset(weights)])
    begin = header["embeddings.weight"]["data_offsets"][0] + _data_offset(weights)
    raw = bytearray(weights.read_bytes())
    raw[begin:begin + 4] = struct.pack("<f", float("nan"))
    weights.write_bytes(bytes(raw))
    with pytest.raises(WeightsError) as info:
        HNetForCausalLM.from_pretrained(folder)
    message = str(info.value)
    assert "tensor 'embeddings.weight' holds 1 non-finite value" in message
    assert "damaged" not in message and "\n" not in message


@pytest.mark.parametrize("text", ["[1, 2]", '"hnet"', "3", "null"])
def test_config_json_that_is_not_an_object_names_the_file(folder, text):
    (folder / "config.json").write_text(text)
    with pytest.raises(WeightsError, match=f"{folder / 'config.json'}: .*JSON object"):
        HNetForCausalLM.from_pretrained(folder)


def test_heads_that_do_not_divide_d_model_name_the_config(folder):
    config = json.loads((folder / "config.json").read_text())
    config["attn_cfg"]["num_heads"] = [3, 3]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=f"{folder / 'config.json'}: .*divisible by num_heads"):
        HNetForCausalLM.from_pretrained(folder)
