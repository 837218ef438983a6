"""Routing, chunking, dechunking and the ratio loss against explicit references."""

import pytest
import torch
import torch.nn.functional as F

from hnet_dna.model.chunking import (
    EMA_P_MIN,
    ChunkLayer,
    DeChunkLayer,
    RoutingModule,
    RoutingOutput,
    ratio_loss,
    straight_through,
)


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _routing(p: torch.Tensor, mask: torch.Tensor | None = None) -> RoutingOutput:
    b = p > 0.5
    if mask is not None:
        b = b & mask
    return RoutingOutput(p, b, torch.where(b, p, 1 - p), mask)


def test_routing_probability_matches_cosine_formula_and_starts():
    torch.manual_seed(0)
    router = RoutingModule(8)
    with torch.no_grad():
        router.q_proj_layer.weight.normal_()
        router.k_proj_layer.weight.normal_()
    x = torch.randn(2, 7, 8)
    seq_idx = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 0, 2, 2]], dtype=torch.int32)
    out = router(x, seq_idx=seq_idx)
    q = x[:, :-1] @ router.q_proj_layer.weight.T
    k = x[:, 1:] @ router.k_proj_layer.weight.T
    cos = F.cosine_similarity(q, k, dim=-1)
    expected = torch.cat([torch.ones(2, 1), (1 - cos) / 2], dim=1)
    expected[0, 3] = 1.0  # packed sequence starts
    expected[1, 5] = 1.0
    torch.testing.assert_close(out.boundary_prob, expected)
    assert torch.equal(out.boundary_mask, expected > 0.5)
    torch.testing.assert_close(
        out.selected_prob, torch.where(expected > 0.5, expected, 1 - expected)
    )


def test_routing_identity_init_and_padding_never_boundary():
    router = RoutingModule(4)
    assert torch.equal(router.q_proj_layer.weight, torch.eye(4))
    x = torch.tensor([[[1.0, 0, 0, 0], [1.0, 0, 0, 0], [-1.0, 0, 0, 0], [0, 1.0, 0, 0]]])
    mask = torch.tensor([[True, True, True, False]])
    out = router(x, mask=mask)
    # identical -> p=0, opposite -> p=1, orthogonal -> p=0.5 (not a boundary: strict >).
    torch.testing.assert_close(out.boundary_prob, torch.tensor([[1.0, 0.0, 1.0, 0.5]]))
    assert out.boundary_mask.tolist() == [[True, False, True, False]]
    out_nomask = router(x)
    assert out_nomask.boundary_mask.tolist() == [[True, False, True, False]]  # 0.5 is not > 0.5


def test_chunk_layer_gathers_boundaries_in_order_with_padding():
    x = torch.arange(2 * 6, dtype=torch.float64).reshape(2, 6, 1)
    b = torch.tensor([[1, 0, 1, 1, 0, 0], [1, 0, 0, 0, 0, 1]], dtype=torch.bool)
    seq_idx = torch.tensor([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]])
    chunked = ChunkLayer()(x, b, seq_idx)
    assert chunked.hidden.shape == (2, 3, 1)
    assert chunked.hidden[0, :, 0].tolist() == [0.0, 2.0, 3.0]
    assert chunked.hidden[1, :2, 0].tolist() == [6.0, 11.0]
    assert chunked.mask.tolist() == [[True, True, True], [True, True, False]]
    assert chunked.order[1, :2].tolist() == [0, 5]
    assert chunked.seq_idx[1, :2].tolist() == [0, 1]


def _dechunk_reference(inner, p, b, seq_idx=None):
    """Token loop: each boundary updates the EMA with its chunk's inner output."""
    batch, length = b.shape
    out = torch.zeros(batch, length, inner.shape[-1])
    for row in range(batch):
        state = torch.zeros(inner.shape[-1])
        chunk = -1
        for t in range(length):
            if seq_idx is not None and t > 0 and seq_idx[row, t] != seq_idx[row, t - 1]:
                state = torch.zeros(inner.shape[-1])
            if b[row, t]:
                chunk += 1
                pt = p[row, t].clamp(EMA_P_MIN, 1 - EMA_P_MIN)
                state = pt * inner[row, chunk] + (1 - pt) * state
            out[row, t] = state
    return out


@pytest.mark.parametrize("packed", [False, True])
def test_dechunk_matches_token_loop(packed):
    torch.manual_seed(1)
    batch, length, dim = 3, 41, 4
    p = torch.rand(batch, length)
    p[:, 0] = 1.0
    seq_idx = None
    if packed:
        seq_idx = (torch.arange(length) >= 17).long().expand(batch, -1).clone()
        p[:, 17] = 1.0
    routing = _routing(p)
    chunked = ChunkLayer()(torch.randn(batch, length, dim), routing.boundary_mask, seq_idx)
    inner = torch.randn(batch, chunked.hidden.shape[1], dim)
    out = DeChunkLayer(dim, chunk_size=8)(inner, routing, chunked)
    expected = _dechunk_reference(inner, p, routing.boundary_mask, seq_idx)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_dechunk_step_matches_forward_per_row():
    torch.manual_seed(2)
    batch, length, dim = 3, 12, 4
    p = torch.rand(batch, length)
    p[:, 0] = 1.0
    routing = _routing(p)
    chunked = ChunkLayer()(torch.randn(batch, length, dim), routing.boundary_mask)
    inner = torch.randn(batch, chunked.hidden.shape[1], dim)
    layer = DeChunkLayer(dim)
    full = layer(inner, routing, chunked)
    state = layer.allocate_state(batch, dtype=torch.float64)
    counts = torch.zeros(batch, dtype=torch.long)
    for t in range(length):
        b = routing.boundary_mask[:, t]
        idx = (counts - 1 + b.long()).clamp(min=0)
        step_inner = inner[torch.arange(batch), idx][:, None]
        out = layer.step(step_inner, p[:, t], b, state)
        counts += b.long()
        torch.testing.assert_close(out[:, 0], full[:, t])


def test_ratio_loss_values():
    n = 3.0
    # F = G = 1/N gives exactly 1.
    p = torch.tensor([[0.9, 0.2, 0.2, 0.9, 0.2, 0.2]])
    p_mean = torch.full_like(p, 1 / 3)
    out = RoutingOutput(p_mean, torch.tensor([[1, 0, 0, 1, 0, 0]], dtype=torch.bool), p_mean, None)
    torch.testing.assert_close(ratio_loss(out, n), torch.tensor(1.0))
    # Hand-computed: F = 2/6, G = mean(p) = 2.6/6; L = 1.5*(2*F*G + (1-F)*(1-G)).
    out = _routing(p)
    f, g = 2 / 6, 2.6 / 6
    expected = 1.5 * (2 * f * g + (1 - f) * (1 - g))
    torch.testing.assert_close(ratio_loss(out, n), torch.tensor(expected))
    # Padding is excluded from F and G.
    pad_mask = torch.tensor([[1] * 6 + [0] * 3]).bool()
    padded = _routing(torch.cat([p, torch.ones(1, 3)], 1), mask=pad_mask)
    torch.testing.assert_close(ratio_loss(padded, n), torch.tensor(expected))
    with pytest.raises(ValueError, match="target_ratio must be > 1"):
        ratio_loss(out, 1.0)


def test_straight_through_is_one_forward_identity_backward():
    x = torch.tensor([0.3, 0.9], requires_grad=True)
    y = straight_through(x)
    assert torch.equal(y.detach(), torch.ones(2))
    (y * torch.tensor([2.0, 5.0])).sum().backward()
    assert x.grad.tolist() == [2.0, 5.0]
