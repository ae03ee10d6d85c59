"""RoPE against a complex-number formulation of interleaved rotary embeddings."""

import pytest
import torch

import tinylm.nn
from tinylm.nn import RotaryEmbedding


def complex_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Oracle: pair (x[2i], x[2i+1]) as x[2i] + i·x[2i+1], times e^{i·p·θ^(-2i/d)}."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.double()[..., None] * freqs  # (..., seq, d/2)
    rotation = torch.polar(torch.ones_like(angles), angles)
    pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(pairs * rotation).flatten(-2)


def test_rope_matches_complex_formulation():
    torch.manual_seed(0)
    rope = RotaryEmbedding(theta=10000.0, d_k=16, max_seq_len=64)
    x = torch.randn(2, 10, 16)
    positions = torch.randint(0, 64, (2, 10))
    torch.testing.assert_close(
        rope(x, positions).double(), complex_rope(x, positions, 10000.0), rtol=1e-5, atol=1e-5
    )


def test_rope_positions_broadcast_over_leading_dims():
    torch.manual_seed(0)
    rope = RotaryEmbedding(theta=500.0, d_k=8, max_seq_len=32)
    x = torch.randn(3, 4, 7, 8)  # (batch, heads, seq, d_k)
    positions = torch.arange(7)  # one position row shared by all
    expected = complex_rope(x, positions.expand(3, 4, 7), 500.0)
    torch.testing.assert_close(rope(x, positions).double(), expected, rtol=1e-5, atol=1e-5)


def test_rope_preserves_norm_and_encodes_relative_position():
    torch.manual_seed(0)
    rope = RotaryEmbedding(theta=10000.0, d_k=8, max_seq_len=64)
    q, k = torch.randn(8), torch.randn(8)

    def score(pq, pk):
        return rope(q[None], torch.tensor([pq])) @ rope(k[None], torch.tensor([pk]))[0]

    torch.testing.assert_close(score(5, 2), score(40, 37), rtol=1e-4, atol=1e-4)
    rotated = rope(q[None], torch.tensor([17]))[0]
    torch.testing.assert_close(rotated.norm(), q.norm())


def test_rope_buffers_are_not_persistent():
    rope = RotaryEmbedding(theta=10000.0, d_k=8, max_seq_len=16)
    assert rope.state_dict() == {}
    assert {name for name, _ in rope.named_buffers()} == {"cos", "sin"}


def test_rope_errors():
    with pytest.raises(ValueError, match="even d_k"):
        RotaryEmbedding(10000.0, 7, 16)
    if not tinylm.nn.TYPECHECK:
        return  # the position check reads values: off with TINYLM_TYPECHECK=0
    rope = RotaryEmbedding(10000.0, 8, 16)
    with pytest.raises(ValueError, match="max_seq_len=16"):
        rope(torch.randn(1, 8), torch.tensor([16]))


def test_rope_keeps_bf16_dtype():
    rope = RotaryEmbedding(10000.0, 8, 16)
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    y = rope(x, torch.arange(4))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), rope(x.float(), torch.arange(4)), atol=2e-2, rtol=2e-2)
