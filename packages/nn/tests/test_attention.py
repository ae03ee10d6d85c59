"""Attention against torch.nn.functional.scaled_dot_product_attention and a reference MHA."""

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from tinylm.nn import (
    ATTENTION_KERNELS,
    QKV_PROJECTIONS,
    CausalSelfAttention,
    RotaryEmbedding,
    scaled_dot_product_attention,
)


@pytest.mark.parametrize("leading", [(3,), (2, 4)])
def test_sdpa_matches_functional_with_bool_mask(leading):
    torch.manual_seed(0)
    Q = torch.randn(*leading, 5, 8)
    K = torch.randn(*leading, 7, 8)
    V = torch.randn(*leading, 7, 6)
    mask = torch.rand(*leading, 5, 7) > 0.3
    mask[..., 0] = True  # every query sees at least one key
    expected = F.scaled_dot_product_attention(Q, K, V, attn_mask=mask)
    torch.testing.assert_close(scaled_dot_product_attention(Q, K, V, mask), expected)
    torch.testing.assert_close(
        scaled_dot_product_attention(Q, K, V), F.scaled_dot_product_attention(Q, K, V)
    )


def test_sdpa_fully_masked_query_gives_zero_not_nan():
    torch.manual_seed(0)
    Q, K, V = torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    mask = torch.ones(2, 3, 3, dtype=torch.bool)
    mask[:, 1] = False
    out = scaled_dot_product_attention(Q, K, V, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 1], torch.zeros(2, 4))


def test_gradcheck_sdpa():
    torch.manual_seed(0)
    Q, K, V = (torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.ones(4, 4, dtype=torch.bool).tril()
    assert torch.autograd.gradcheck(
        lambda q, k, v: scaled_dot_product_attention(q, k, v, mask), (Q, K, V)
    )


def reference_mha(x, attn, rope_theta=None):
    """Causal MHA from torch.nn.functional, the heads split by rows of the projection weights."""
    h = attn.num_heads
    q, k, v = (
        rearrange(F.linear(x, p.weight), "b s (h d) -> b h s d", h=h)
        for p in (attn.q_proj, attn.k_proj, attn.v_proj)
    )
    if rope_theta is not None:
        d = q.shape[-1]
        pos = torch.arange(x.shape[1], dtype=torch.float64)
        ang = pos[:, None] * rope_theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        rot = torch.polar(torch.ones_like(ang), ang)

        def rotate(t):
            c = torch.view_as_complex(t.double().reshape(*t.shape[:-1], d // 2, 2).contiguous())
            return torch.view_as_real(c * rot).flatten(-2).to(t.dtype)

        q, k = rotate(q), rotate(k)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(rearrange(out, "b h s d -> b s (h d)"), attn.output_proj.weight)


@pytest.mark.parametrize("use_rope", [False, True])
def test_causal_self_attention_matches_reference(use_rope):
    torch.manual_seed(0)
    rope = RotaryEmbedding(10000.0, 4, 32) if use_rope else None
    attn = CausalSelfAttention(16, 4, rope)
    assert sorted(attn.state_dict()) == [
        "k_proj.weight",
        "output_proj.weight",
        "q_proj.weight",
        "v_proj.weight",
    ]
    x = torch.randn(2, 9, 16)
    expected = reference_mha(x, attn, 10000.0 if use_rope else None)
    torch.testing.assert_close(attn(x), expected, rtol=1e-4, atol=1e-5)
    # Explicit positions 0..seq-1 are the default.
    torch.testing.assert_close(attn(x, torch.arange(9)), attn(x))


def test_attention_is_causal():
    torch.manual_seed(0)
    attn = CausalSelfAttention(16, 2, RotaryEmbedding(10000.0, 8, 32))
    x = torch.randn(1, 8, 16)
    y = attn(x)
    x2 = x.clone()
    x2[:, 5:] = torch.randn(1, 3, 16)  # changing the future must not change the past
    torch.testing.assert_close(attn(x2)[:, :5], y[:, :5])


def with_kernels(attn, attention="naive", fused_qkv=False):
    attn.set_kernels(ATTENTION_KERNELS[attention], QKV_PROJECTIONS[fused_qkv])
    return attn


@pytest.mark.parametrize("qk_norm", [False, True])
def test_fast_paths_match_naive_path(qk_norm):
    torch.manual_seed(0)
    rope = RotaryEmbedding(10000.0, 4, 32)
    naive = CausalSelfAttention(16, 4, rope, qk_norm=qk_norm)
    x = torch.randn(2, 9, 16)
    for kwargs in (
        {"attention": "sdpa"},
        {"fused_qkv": True},
        {"attention": "sdpa", "fused_qkv": True},
    ):
        fast = with_kernels(CausalSelfAttention(16, 4, rope, qk_norm=qk_norm), **kwargs)
        fast.load_state_dict(naive.state_dict())
        torch.testing.assert_close(fast(x), naive(x), rtol=1e-4, atol=1e-5)
        with torch.no_grad():  # the no-grad fused path reuses a cached stacked weight
            torch.testing.assert_close(fast(x), naive(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention", ["naive", "sdpa"])
def test_kv_cache_prefill_then_decode_matches_full_forward(attention):
    from tinylm.nn.attention import LayerKVCache

    torch.manual_seed(0)
    attn = with_kernels(CausalSelfAttention(16, 4, RotaryEmbedding(10000.0, 4, 32)), attention)
    x = torch.randn(2, 10, 16)
    full = attn(x)
    cache = LayerKVCache(2, 4, 32, 4, device="cpu", dtype=torch.float32)
    parts = [attn(x[:, :6], kv_cache=cache)]
    parts += [attn(x[:, i : i + 1], kv_cache=cache) for i in range(6, 10)]
    assert cache.length == 10
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)


def test_attention_rejects_wrong_d_model():
    attn = CausalSelfAttention(16, 4)
    with pytest.raises(ValueError, match="d_model=12, expected 16"):
        attn(torch.randn(2, 3, 12))
    with pytest.raises(ValueError, match="divisible"):
        CausalSelfAttention(16, 3)
