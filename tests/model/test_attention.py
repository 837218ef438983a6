"""CausalMHA / RotaryEmbedding against explicit float64 references."""

from __future__ import annotations

import math

import pytest
import torch

from hnet_dna.model.attention import (
    AttentionCache,
    CausalMHA,
    attention_mask,
    cu_seqlens_from_seq_idx,
)
from hnet_dna.model.rotary import RotaryEmbedding, sequence_positions

F64 = torch.float64


# ----------------------------------------------------------------------------- references
def rotary_reference(x: torch.Tensor, positions: list[list[int]], dim: int, base: float = 1e4):
    """Rotate channel pairs (i, i + dim/2) of x (B, L, H, hd) one pair at a time, in float64."""
    out = x.clone()
    half = dim // 2
    for b, row in enumerate(positions):
        for t, pos in enumerate(row):
            for i in range(half):
                theta = pos * base ** (-2.0 * i / dim)
                c, s = math.cos(theta), math.sin(theta)
                a, bb = x[b, t, :, i], x[b, t, :, i + half]
                out[b, t, :, i] = a * c - bb * s
                out[b, t, :, i + half] = bb * c + a * s
    return out


def reference_mha(
    mha: CausalMHA,
    x: torch.Tensor,
    seq_idx: torch.Tensor | None = None,
    softmax_scale: float | None = None,
):
    """Explicit softmax attention: visibility and positions built with python loops."""
    batch, length, d = x.shape
    h, hd = mha.num_heads, mha.head_dim
    scale = 1.0 / math.sqrt(hd) if softmax_scale is None else softmax_scale
    qkv = x @ mha.Wqkv.weight.T
    if mha.Wqkv.bias is not None:
        qkv = qkv + mha.Wqkv.bias
    q, k, v = (qkv[..., i * d : (i + 1) * d].reshape(batch, length, h, hd) for i in range(3))
    ids = [[0] * length for _ in range(batch)] if seq_idx is None else seq_idx.tolist()
    positions = []
    for row in ids:
        pos: list[int] = []
        for t, s in enumerate(row):
            pos.append(0 if t == 0 or s != row[t - 1] else pos[-1] + 1)
        positions.append(pos)
    if mha.rotary_emb_dim:
        q = rotary_reference(q, positions, mha.rotary_emb_dim)
        k = rotary_reference(k, positions, mha.rotary_emb_dim)
    w = mha.window_size
    out = torch.zeros(batch, length, h, hd, dtype=x.dtype)
    for b in range(batch):
        for i in range(length):
            keys = [
                j
                for j in range(length)
                if 0 <= i - j and (w < 0 or i - j <= w) and ids[b][j] == ids[b][i]
            ]
            scores = torch.einsum("hd,nhd->hn", q[b, i], k[b, keys]) * scale
            probs = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
            probs = probs / probs.sum(dim=1, keepdim=True)
            out[b, i] = torch.einsum("hn,nhd->hd", probs, v[b, keys])
    y = out.reshape(batch, length, d) @ mha.out_proj.weight.T
    if mha.out_proj.bias is not None:
        y = y + mha.out_proj.bias
    return y


def make_mha(seed: int = 0, **kwargs) -> CausalMHA:
    torch.manual_seed(seed)
    kw = {"d_model": 16, "num_heads": 2, "rotary_emb_dim": 4, "window_size": -1}
    kw.update(kwargs)
    return CausalMHA(**kw, dtype=F64)


# ----------------------------------------------------------------------------- rotary
def test_rotary_matches_pairwise_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 8, dtype=F64)
    k = torch.randn(2, 5, 3, 8, dtype=F64)
    positions = torch.tensor([[0, 1, 2, 3, 4], [7, 0, 1, 900, 3]])
    rot = RotaryEmbedding(6)
    q_out, k_out = rot(x, k, positions)
    torch.testing.assert_close(
        q_out, rotary_reference(x, positions.tolist(), 6), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        k_out, rotary_reference(k, positions.tolist(), 6), rtol=0, atol=1e-12
    )
    assert torch.equal(q_out[..., 6:], x[..., 6:])  # channels beyond dim untouched


def test_rotary_scores_depend_only_on_relative_position():
    torch.manual_seed(1)
    rot = RotaryEmbedding(8)
    q = torch.randn(1, 1, 1, 8, dtype=F64)
    k = torch.randn(1, 1, 1, 8, dtype=F64)

    def score(pq: int, pk: int) -> float:
        qr, _ = rot(q, q, torch.tensor([[pq]]))
        kr, _ = rot(k, k, torch.tensor([[pk]]))
        return float((qr * kr).sum())

    assert score(10, 3) == pytest.approx(score(107, 100), abs=1e-10)
    assert score(10, 3) != pytest.approx(score(10, 4), abs=1e-3)


def test_rotary_angles_stay_fp32_after_casting_module():
    torch.manual_seed(2)
    rot = RotaryEmbedding(8).to(torch.bfloat16)
    assert rot.inv_freq.dtype == torch.bfloat16
    assert "inv_freq" not in rot.state_dict()
    x = torch.randn(1, 1, 1, 8)
    positions = torch.tensor([[3000]])
    out, _ = rot(x, x, positions)
    expected = rotary_reference(x.to(F64), [[3000]], 8)
    torch.testing.assert_close(out.to(F64), expected, rtol=0, atol=1e-5)


def test_rotary_half_precision_output_dtype():
    rot = RotaryEmbedding(4)
    x = torch.randn(1, 3, 2, 8, dtype=torch.bfloat16)
    q, k = rot(x, x, torch.arange(3)[None])
    assert q.dtype == k.dtype == torch.bfloat16


def test_sequence_positions_restart():
    seq_idx = torch.tensor([[0, 0, 0, 1, 1, 2], [5, 5, 5, 5, 5, 5]], dtype=torch.int32)
    expected = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])
    assert torch.equal(sequence_positions(seq_idx), expected)


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_size": -1, "rotary_emb_dim": 4},
        {"window_size": 3, "rotary_emb_dim": 4},
        {"window_size": 0, "rotary_emb_dim": 8},
        {"window_size": 2, "rotary_emb_dim": 0},
        {"window_size": -1, "rotary_emb_dim": 2, "qkv_proj_bias": True, "out_proj_bias": True},
        {"window_size": 4, "rotary_emb_dim": 6, "softmax_scale": 0.7},
    ],
)
def test_forward_matches_explicit_attention(kwargs):
    mha = make_mha(**kwargs)
    if mha.Wqkv.bias is not None:
        torch.nn.init.normal_(mha.Wqkv.bias)
        torch.nn.init.normal_(mha.out_proj.bias)
    x = torch.randn(2, 11, 16, dtype=F64)
    want = reference_mha(mha, x, softmax_scale=kwargs.get("softmax_scale"))
    torch.testing.assert_close(mha(x), want, rtol=1e-10, atol=1e-10)


def test_forward_gradients_match_reference():
    mha = make_mha(window_size=3, rotary_emb_dim=4)
    x = torch.randn(2, 7, 16, dtype=F64, requires_grad=True)
    grads = torch.autograd.grad(mha(x).square().sum(), [x, mha.Wqkv.weight])
    ref = torch.autograd.grad(reference_mha(mha, x).square().sum(), [x, mha.Wqkv.weight])
    for got, want in zip(grads, ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("window_size", [-1, 2])
def test_packed_equals_separate_sequences(window_size):
    mha = make_mha(window_size=window_size, rotary_emb_dim=4)
    seq_idx = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 2, 2], [3, 3, 3, 3, 3, 3, 4, 4, 4, 4]])
    seq_idx = seq_idx.to(torch.int32)
    x = torch.randn(2, 10, 16, dtype=F64)
    out = mha(x, seq_idx=seq_idx)
    torch.testing.assert_close(out, reference_mha(mha, x, seq_idx), rtol=1e-10, atol=1e-10)
    for b in range(2):
        for s in seq_idx[b].unique():
            cols = (seq_idx[b] == s).nonzero().squeeze(1)
            alone = mha(x[b : b + 1, cols])
            torch.testing.assert_close(out[b : b + 1, cols], alone, rtol=1e-10, atol=1e-10)


def test_packed_rotary_positions_restart_per_sequence():
    mha = make_mha(rotary_emb_dim=4)
    seen = []
    mha.rotary_emb.register_forward_pre_hook(lambda mod, args: seen.append(args[2].clone()))
    seq_idx = torch.tensor([[0, 0, 1, 1, 1]], dtype=torch.int32)
    mha(torch.randn(1, 5, 16, dtype=F64), seq_idx=seq_idx)
    assert torch.equal(seen[0], torch.tensor([[0, 1, 0, 1, 2]]))


def test_causality_and_window_dependence():
    """d out[i] / d x[j] is non-zero exactly when 0 <= i - j <= window (w + 1 keys)."""
    w, length = 2, 7
    mha = make_mha(window_size=w)
    x = torch.randn(1, length, 16, dtype=F64)
    jac = torch.autograd.functional.jacobian(lambda inp: mha(inp)[0], x)[:, :, 0]  # (L,D,L,D)
    depends = jac.abs().amax(dim=(1, 3)) > 0  # (L query, L key)
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    assert torch.equal(depends, (i - j >= 0) & (i - j <= w))
    assert depends.sum(dim=1).tolist() == [1, 2, 3, 3, 3, 3, 3]


def test_attention_mask_window_edge():
    mask = attention_mask(6, 2, None)[0]
    assert mask.sum(dim=1).tolist() == [1, 2, 3, 3, 3, 3]
    assert mask[5, 3] and not mask[5, 2] and not mask[2, 3]
    assert torch.equal(attention_mask(4, -1, None)[0], torch.ones(4, 4, dtype=torch.bool).tril())


def test_cu_seqlens_from_seq_idx():
    seq_idx = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 2]], dtype=torch.int32)
    cu, max_len = cu_seqlens_from_seq_idx(seq_idx)
    assert cu.dtype == torch.int32 and isinstance(max_len, int)
    # Row 1 starts a new sequence even though its id (1) equals the id ending row 0.
    assert cu.tolist() == [0, 2, 5, 9, 10] and max_len == 4


# ----------------------------------------------------------------------------- cache
def test_allocate_cache_shapes():
    mha = make_mha(d_model=24, num_heads=3)
    cache = mha.allocate_cache(4, 9)
    assert isinstance(cache, AttentionCache)
    assert cache.k.shape == cache.v.shape == (4, 9, 3, 8) and cache.max_seqlen == 9
    assert cache.k.dtype == F64 and cache.lengths.dtype == torch.long
    assert cache.lengths.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("window_size", [-1, 2])
def test_step_decoding_matches_forward(window_size):
    mha = make_mha(window_size=window_size, rotary_emb_dim=4)
    x = torch.randn(3, 9, 16, dtype=F64)
    full = mha(x)
    cache = mha.allocate_cache(3, 9)
    outs = [mha.step(x[:, t : t + 1], cache) for t in range(9)]
    torch.testing.assert_close(torch.cat(outs, dim=1), full, rtol=1e-10, atol=1e-10)
    assert cache.lengths.tolist() == [9, 9, 9]


def test_prefill_padded_rows_then_steps_match_forward():
    mha = make_mha(window_size=2, rotary_emb_dim=4)
    total, lengths = 10, [5, 3, 7]
    seqs = [torch.randn(1, total, 16, dtype=F64) for _ in lengths]
    prompt = torch.zeros(3, max(lengths), 16, dtype=F64)
    prompt += 100.0  # padding content must not matter
    for b, n in enumerate(lengths):
        prompt[b, :n] = seqs[b][0, :n]
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    cache = mha.allocate_cache(3, total)
    prefill = mha(prompt, mask=mask, cache=cache)
    assert cache.lengths.tolist() == lengths
    for b, n in enumerate(lengths):
        torch.testing.assert_close(prefill[b, :n], mha(seqs[b])[0, :n], rtol=1e-10, atol=1e-10)
    # Each row continues from its own length: row b at step s feeds its token lengths[b] + s.
    for s in range(total - max(lengths)):
        tok = torch.cat([seqs[b][:, n + s : n + s + 1] for b, n in enumerate(lengths)])
        out = mha.step(tok, cache)
        for b, n in enumerate(lengths):
            want = mha(seqs[b][:, : n + s + 1])[0, -1]
            torch.testing.assert_close(out[b, 0], want, rtol=1e-10, atol=1e-10)


def test_inactive_rows_untouched_and_interleaved_decoding():
    mha = make_mha(window_size=3, rotary_emb_dim=4)
    length = 8
    x = torch.randn(3, length, 16, dtype=F64)
    full = mha(x)
    cache = mha.allocate_cache(3, length)
    torch.nn.init.normal_(cache.k)  # garbage in unused slots must stay exactly as it is
    torch.nn.init.normal_(cache.v)
    gen = torch.Generator().manual_seed(3)
    done = [0, 0, 0]
    while min(done) < length:
        active = torch.rand(3, generator=gen) < 0.5
        active &= torch.tensor([n < length for n in done])
        tok = torch.stack([x[b, min(n, length - 1)] for b, n in enumerate(done)])[:, None]
        before_k, before_v = cache.k.clone(), cache.v.clone()
        before_len = cache.lengths.clone()
        out = mha.step(tok, cache, active=active)
        for b in range(3):
            if active[b]:
                torch.testing.assert_close(out[b, 0], full[b, done[b]], rtol=1e-10, atol=1e-10)
                done[b] += 1
            else:
                assert torch.equal(cache.k[b], before_k[b]) and torch.equal(cache.v[b], before_v[b])
                assert cache.lengths[b] == before_len[b]
        assert cache.lengths.tolist() == done


def test_step_all_inactive_is_noop():
    mha = make_mha()
    cache = mha.allocate_cache(2, 4)
    k_before = cache.k.clone()
    mha.step(torch.randn(2, 1, 16, dtype=F64), cache, active=torch.tensor([False, False]))
    assert torch.equal(cache.k, k_before) and cache.lengths.tolist() == [0, 0]


def test_inactive_row_output_stays_finite():
    """An inactive row far ahead of the active ones sees no key of the shared range: its
    (unspecified) output must be finite so that masking it out downstream is safe (torch >= 2.5
    SDPA already returns 0 for such rows; older versions gave NaN), and the active row that
    starts from an empty cache (length-0 prefill) must still be exact."""
    mha = make_mha(window_size=1)
    cache = mha.allocate_cache(2, 12)
    x = torch.randn(2, 8, 16, dtype=F64)
    mha(x, mask=torch.tensor([[True] * 8, [False] * 8]), cache=cache)
    assert cache.lengths.tolist() == [8, 0]
    out = mha.step(x[:, :1], cache, active=torch.tensor([False, True]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], mha(x[1:, :1])[0], rtol=1e-10, atol=1e-10)


def test_prefill_does_not_track_gradients():
    mha = make_mha()
    cache = mha.allocate_cache(1, 4)
    mha(torch.randn(1, 3, 16, dtype=F64), cache=cache)
    assert not cache.k.requires_grad and not cache.v.requires_grad


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 10, "num_heads": 3}, r"d_model \(10\) must be divisible by num_heads \(3\)"),
        (
            {"d_model": 16, "num_heads": 2, "rotary_emb_dim": 10},
            r"rotary_emb_dim \(10\) must be even and in \[0, head_dim=8\]",
        ),
        (
            {"d_model": 16, "num_heads": 2, "rotary_emb_dim": 3},
            r"rotary_emb_dim \(3\) must be even and in \[0, head_dim=8\]",
        ),
        (
            {"d_model": 16, "num_heads": 2, "window_size": -2},
            r"window_size must be -1 \(global\) or >= 0, got -2",
        ),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CausalMHA(**kwargs)


def test_rotary_dim_error():
    with pytest.raises(ValueError, match="rotary dim must be a positive even number, got 5"):
        RotaryEmbedding(5)


def test_cache_errors():
    mha = make_mha()
    x = torch.randn(2, 5, 16, dtype=F64)
    with pytest.raises(ValueError, match=r"prefill with seq_idx \(packed sequences\)"):
        mha(x, seq_idx=torch.zeros(2, 5, dtype=torch.int32), cache=mha.allocate_cache(2, 8))
    with pytest.raises(ValueError, match="prefill of 5 tokens exceeds cache max_seqlen 4"):
        mha(x, cache=mha.allocate_cache(2, 4))
    with pytest.raises(ValueError, match="cache batch size 3 != input batch 2"):
        mha(x, cache=mha.allocate_cache(3, 8))
    cache = mha.allocate_cache(2, 5)
    mha(x, cache=cache)
    with pytest.raises(ValueError, match=r"attention cache is full: a row already holds 5 tokens"):
        mha.step(x[:, :1], cache)
    # A full row that is inactive is fine; the other row is not full.
    cache.lengths[1] = 2
    mha.step(x[:, :1], cache, active=torch.tensor([False, True]))
    assert cache.lengths.tolist() == [5, 3]
    with pytest.raises(ValueError, match="step expects one token per row"):
        mha.step(x[:, :2], cache)
