"""``extend``: continuing a forward from a cache over many tokens equals the full forward
(float64, random routing so chunk boundaries are irregular)."""

import pytest
import torch

from hnet_dna.model.config import AttnConfig, HNetConfig, SSMConfig
from hnet_dna.model.hnet import select_rows
from hnet_dna.model.lm import HNetForCausalLM
from hnet_dna.model.mamba2 import balanced_chunk

SSM = SSMConfig(d_state=8, headdim=16, chunk_size=8)


def _attn(n: int, windows: list[int]) -> AttnConfig:
    return AttnConfig(num_heads=[2] * n, rotary_emb_dim=[8] * n, window_size=windows)


CONFIGS = {
    "mamba2": HNetConfig(arch_layout=["m3"], d_model=[32], d_intermediate=[0], vocab_size=12,
                         ssm_cfg=SSM, attn_cfg=_attn(1, [-1])),
    "attention": HNetConfig(arch_layout=["T1t1"], d_model=[32], d_intermediate=[64],
                            vocab_size=12, ssm_cfg=SSM, attn_cfg=_attn(1, [-1])),
    "attention_window": HNetConfig(arch_layout=["t2"], d_model=[32], d_intermediate=[0],
                                   vocab_size=12, ssm_cfg=SSM, attn_cfg=_attn(1, [6])),
    "1stage": HNetConfig(arch_layout=["m1t1", ["T2"], "m1"], d_model=[32, 48],
                         d_intermediate=[0, 96], vocab_size=12, ssm_cfg=SSM,
                         attn_cfg=_attn(2, [5, -1])),
    "2stage": HNetConfig(arch_layout=["m1", ["T1m1", ["M1T1"], "m1t1"], "m1"],
                         d_model=[32, 32, 64], d_intermediate=[0, 64, 128], vocab_size=12,
                         ssm_cfg=SSM, attn_cfg=_attn(3, [-1, 7, -1])),
}
LENGTH = 41


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _model(name: str) -> HNetForCausalLM:
    torch.manual_seed(0)
    model = HNetForCausalLM(CONFIGS[name])
    model.init_weights()
    with torch.no_grad():  # irregular boundaries, every path carrying signal
        for module in model.modules():
            if hasattr(module, "q_proj_layer"):
                module.q_proj_layer.weight.normal_(std=0.5)
                module.k_proj_layer.weight.normal_(std=0.5)
            if hasattr(module, "residual_proj"):
                module.residual_proj.weight.normal_(std=0.1)
            if getattr(module, "pad_dimension", None) is not None:
                module.pad_dimension.normal_()
    return model.eval()


def _ids(batch: int, length: int) -> torch.Tensor:
    return torch.randint(0, 12, (batch, length), generator=torch.Generator().manual_seed(1))


def _segment(ids: torch.Tensor, starts: list[int], ends: list[int]):
    """Rows ``ids[b, starts[b]:ends[b]]`` right-padded, with their mask."""
    width = max(e - s for s, e in zip(starts, ends, strict=True))
    out = torch.zeros(len(starts), width, dtype=torch.long)
    mask = torch.zeros(len(starts), width, dtype=torch.bool)
    for b, (s, e) in enumerate(zip(starts, ends, strict=True)):
        out[b, : e - s], mask[b, : e - s] = ids[b, s:e], True
    return out, mask


@pytest.mark.parametrize("name", list(CONFIGS))
@torch.no_grad()
def test_extend_in_ragged_segments_equals_the_full_forward(name):
    """Rows split at different places into three segments (one row has an empty middle one),
    prefilled by the forward with a cache or by extend on a fresh one, then extended twice:
    every new position's logits equal the full forward's, and a step after them too."""
    model = _model(name)
    ids = _ids(4, LENGTH + 1)
    full = model(ids).logits
    if model.config.num_stages:
        rate = float(model(ids).routing[0].boundary_mask.double().mean())
        assert 0.15 < rate < 0.85, rate  # boundaries both ways
    cuts = [[9, 25], [1, 33], [17, 17], [30, 38]]  # per row: prefix end, middle end
    pre, pre_mask = _segment(ids, [0] * 4, [c[0] for c in cuts])
    for prefill_with in ("forward", "extend"):  # the prefill itself: either path
        cache = model.allocate_inference_cache(4, LENGTH + 1)
        run = model if prefill_with == "forward" else model.extend
        prefill = (run(pre, mask=pre_mask, cache=cache) if prefill_with == "forward"
                   else run(pre, cache, mask=pre_mask)).logits
        for b, (c, _) in enumerate(cuts):
            torch.testing.assert_close(prefill[b, :c], full[b, :c], rtol=0, atol=1e-12)
        bounds = [[c[0] for c in cuts], [c[1] for c in cuts], [LENGTH] * 4]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            seg, mask = _segment(ids, lo, hi)
            out = model.extend(seg, cache, mask=mask).logits
            for b in range(4):
                torch.testing.assert_close(out[b, : hi[b] - lo[b]], full[b, lo[b]:hi[b]],
                                           rtol=0, atol=1e-12)
        step = model.step(ids[:, LENGTH], cache)
        torch.testing.assert_close(step, full[:, LENGTH], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["mamba2", "1stage", "2stage"])
@torch.no_grad()
def test_extend_from_a_fresh_cache_is_a_forward_and_rows_can_be_shared(name):
    """extend on a fresh cache = the forward (a prefill); ``select_rows`` lets one prefix feed
    several different suffixes, each equal to its own full forward."""
    model = _model(name)
    ids = _ids(2, LENGTH)
    prefix = 20
    cache = model.allocate_inference_cache(2, LENGTH)
    first = model.extend(ids[:, :prefix], cache).logits
    torch.testing.assert_close(first, model(ids[:, :prefix]).logits, rtol=0, atol=1e-12)
    # three suffixes: row 0's prefix twice (two alleles), row 1's once, different lengths
    rows = torch.tensor([0, 0, 1])
    tails = [ids[0, prefix:], torch.flip(ids[0, prefix:], [0])[:15], ids[1, prefix:30]]
    width = max(len(t) for t in tails)
    seg = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.bool)
    for i, t in enumerate(tails):
        seg[i, : len(t)], mask[i, : len(t)] = t, True
    out = model.extend(seg, select_rows(cache, rows), mask=mask).logits
    for i, (row, t) in enumerate(zip(rows.tolist(), tails, strict=True)):
        whole = torch.cat([ids[row, :prefix], t])[None]
        torch.testing.assert_close(out[i, : len(t)], model(whole).logits[0, prefix:],
                                   rtol=0, atol=1e-12)


def test_select_rows_copies():
    model = _model("1stage")
    cache = model.allocate_inference_cache(2, 8)
    picked = select_rows(cache, torch.tensor([1, 1, 0]))
    assert picked.encoder[0].ssm_state.shape[0] == 3
    picked.encoder[0].ssm_state.fill_(1.0)
    assert cache.encoder[0].ssm_state.abs().sum() == 0  # the source is untouched


@pytest.mark.parametrize(("length", "limit", "chunk"), [(129, 64, 43), (128, 64, 64),
                                                        (1, 64, 1), (65, 64, 33)])
def test_balanced_chunk(length, limit, chunk):
    assert balanced_chunk(length, limit) == chunk
    assert -(-length // chunk) == -(-length // limit)  # as many chunks as the limit needs
