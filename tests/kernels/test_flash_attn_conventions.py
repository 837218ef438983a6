"""flash-attn argument conventions of ``CausalMHA._flash`` (causal, window tuple, varlen
cu_seqlens / max_seqlen) through flash-attn's real Python interface.

flash-attn's attention kernels are CUDA only. The extension ``flash_attn_2_cuda`` is the torch
stand-in of conftest.py: it implements flash_attn_func's documented semantics (bottom-right
causal mask; query i sees keys [i + sk - sq - left, i + sk - sq + right]) and rejects what the
CUDA extension rejects (dtype, strides, cu_seqlens dtype and bounds). It is checked here against
flash-attn's own reference ``attention_forward_pytorch_ref_impl`` (causal, dense and varlen;
that reference has no sliding window, so windows rest on the docstring). Our call goes through
the real ``flash_attn_func`` / ``flash_attn_varlen_func`` and their custom ops unchanged.
"""

from __future__ import annotations

import pytest
import torch
from _compare import compare

from hnet_dna.model import attention as attention_mod
from hnet_dna.model.attention import CausalMHA

BF16 = torch.bfloat16


def qkv(seed: int, shape, dtype=BF16):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=gen).to(dtype) for _ in range(3)]


@pytest.mark.parametrize("varlen", [False, True])
def test_stand_in_matches_flash_attn_reference(kernels, varlen):
    from flash_attn.flash_attn_triton_amd.fwd_ref import attention_forward_pytorch_ref_impl

    fa = kernels.flash_attn
    scale = 0.3
    if varlen:
        q, k, v = qkv(0, (23, 2, 16))
        cu = torch.tensor([0, 5, 6, 23], dtype=torch.int32)
        got = fa.flash_attn_varlen_func(q, k, v, cu, cu, 17, 17, softmax_scale=scale,
                                        causal=True)
        layout, args = "thd", (cu, cu, 17, 17)
    else:
        q, k, v = qkv(1, (2, 13, 2, 16))
        got = fa.flash_attn_func(q, k, v, softmax_scale=scale, causal=True)
        layout, args = "bshd", (None, None, 13, 13)
    want = torch.empty_like(q, dtype=torch.float32)
    attention_forward_pytorch_ref_impl(q.float(), k.float(), v.float(), want, scale, None, True,
                                       layout, *args, 0.0, None, None, False)
    compare(f"flash stand-in vs flash-attn reference (varlen={varlen})", got, want,
            atol=1e-2, rtol=1e-2)


def test_stand_in_rejects_what_the_extension_rejects(kernels):
    fa = kernels.flash_attn
    q, k, v = qkv(2, (7, 2, 16))
    with pytest.raises(AssertionError, match="int32"):
        cu = torch.tensor([0, 7])
        fa.flash_attn_varlen_func(q, k, v, cu, cu, 7, 7, causal=True)
    with pytest.raises(AssertionError, match="fp16/bf16"):
        q32, k32, v32 = (t.float()[None] for t in (q, k, v))
        fa.flash_attn_func(q32, k32, v32, causal=True)


@pytest.mark.parametrize("window_size", [-1, 0, 3, 6])
@pytest.mark.parametrize("packed", [False, True])
def test_flash_branch_matches_sdpa_semantics(kernels, monkeypatch, window_size, packed):
    fa = kernels.flash_attn
    calls = []

    def spied(fn):
        return lambda *a, **kw: calls.append((fn.__name__, a, kw)) or fn(*a, **kw)

    monkeypatch.setattr(attention_mod, "flash_attn_func", spied(fa.flash_attn_func))
    monkeypatch.setattr(attention_mod, "flash_attn_varlen_func",
                        spied(fa.flash_attn_varlen_func))
    # The real gate also asks for CUDA; everything else about it still applies.
    usable = attention_mod._flash_usable
    monkeypatch.setattr(attention_mod, "_flash_usable",
                        lambda q: usable(q) or (q.dtype in (BF16, torch.float16) and not q.is_cuda))

    torch.manual_seed(0)
    mha = CausalMHA(64, num_heads=4, rotary_emb_dim=8, window_size=window_size)
    L = 19
    x = torch.randn(2, L, 64)
    seq_idx = None
    if packed:
        seq_idx = torch.zeros(2, L, dtype=torch.long)
        seq_idx[0, 4:] = 1
        seq_idx[0, 5:] = 2  # a one-token sequence
        seq_idx[1, 12:] = 3
    with torch.no_grad():
        got = mha.to(BF16)(x.to(BF16), seq_idx=seq_idx)
        want = mha.double()(x.to(BF16).double(), seq_idx=seq_idx)  # bf16 weights, f64 math
    assert len(calls) == 1
    name, args, kw = calls[0]
    assert kw["causal"] is True and kw["window_size"] == (window_size, -1)
    if packed:
        assert name == "flash_attn_varlen_func"
        cu = args[3]
        # Every packed sequence, in flattened (B * L) token order, row starts included.
        assert cu.tolist() == [0, 4, 5, 19, 31, 38] and args[5] == 14
    else:
        assert name == "flash_attn_func"
    compare(f"CausalMHA flash branch vs f64 sdpa (window={window_size}, packed={packed})",
            got, want, atol=3e-2, rtol=3e-2)
