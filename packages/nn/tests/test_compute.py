"""compute.py's fast kernels against their from-scratch references (and torch's formulas)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.nn import ComputeConfig, ModelConfig, RMSNorm, TransformerLM, compute, cross_entropy
from tinylm.nn.compute import (
    LOSS_KERNELS,
    NAIVE_ATTENTION_BY_POINTWISE,
    POINTWISE_KERNELS,
    complex_rope,
    torch_rms_norm,
)
from tinylm.nn.layers import ACTIVATIONS, SwiGLU, rms_norm
from tinylm.nn.rope import RotaryEmbedding, rotate_pairs

FAST = ComputeConfig(attention="sdpa", fused_qkv=True, pointwise="torch", loss="fused")
BASE = ModelConfig(vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)


def test_the_tables_pair_every_fast_kernel_with_its_reference():
    assert set(POINTWISE_KERNELS) == {"naive", "torch"}
    naive, fast = POINTWISE_KERNELS["naive"], POINTWISE_KERNELS["torch"]
    assert set(naive) == set(fast) == {"rms_norm", "rope", *ACTIVATIONS}
    assert naive["rms_norm"] is rms_norm and naive["silu"] is ACTIVATIONS["silu"]
    assert fast["silu"] is F.silu


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 6),
    d=st.integers(1, 40),
    affine=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**16),
)
def test_torch_rms_norm_equals_the_reference(rows, d, affine, dtype, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, d, generator=g) * scale).to(dtype).requires_grad_()
    w = (torch.rand(d, generator=g) + 0.5).requires_grad_() if affine else None
    out_ref = rms_norm(x, w, 1e-5)
    grads_ref = torch.autograd.grad(out_ref.float().square().sum(), [x, *([w] if affine else [])])
    out = torch_rms_norm(x, w, 1e-5)
    grads = torch.autograd.grad(out.float().square().sum(), [x, *([w] if affine else [])])
    assert out.dtype == dtype  # returns the input dtype, like the reference
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(out, out_ref, **tol)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3 if dtype == torch.float32 else 5e-2, atol=1e-3)


@settings(max_examples=25, deadline=None)
@given(
    heads=st.integers(1, 3),
    seq=st.integers(1, 12),
    half=st.integers(1, 8),
    transposed=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    seed=st.integers(0, 2**16),
)
def test_complex_rope_equals_the_pair_rotation(heads, seq, half, transposed, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    rope = RotaryEmbedding(10_000.0, 2 * half, 16)
    x = torch.randn(2, seq, heads, 2 * half, generator=g)
    # As attention passes it: (batch, heads, seq, d_k), often a transposed (strided) view.
    x = (x.transpose(1, 2) if transposed else x.reshape(2, heads, seq, 2 * half)).to(dtype)
    x.requires_grad_()
    positions = torch.randint(0, 16, (seq,), generator=g)
    cos, sin = rope.cos[positions], rope.sin[positions]
    ref, fast = rotate_pairs(x, cos, sin), complex_rope(x, cos, sin)
    assert fast.dtype == dtype and fast.shape == x.shape
    tol = {} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(fast, ref, **tol)
    weights = torch.randn(x.shape, generator=g)
    (g_ref,) = torch.autograd.grad((ref.float() * weights).sum(), x)
    (g_fast,) = torch.autograd.grad((fast.float() * weights).sum(), x)
    torch.testing.assert_close(g_fast, g_ref, **tol)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_torch_activations_equal_the_references_in_value_and_gradient(name):
    x = torch.linspace(-6, 6, 241, dtype=torch.float64).requires_grad_()
    ref, fast = ACTIVATIONS[name](x), POINTWISE_KERNELS["torch"][name](x)
    torch.testing.assert_close(fast, ref)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    (g_fast,) = torch.autograd.grad(fast.sum(), x)
    torch.testing.assert_close(g_fast, g_ref)


@pytest.mark.parametrize("softcap", [0.0, 3.0])
def test_fused_loss_equals_full_and_torch_cross_entropy(softcap):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 7, 16, generator=g, requires_grad=True)
    weight = torch.randn(30, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 30, (2, 7), generator=g)
    full = LOSS_KERNELS["full"](hidden, weight, targets, softcap=softcap)
    fused = LOSS_KERNELS["fused"](hidden, weight, targets, softcap=softcap)
    logits = hidden @ weight.t()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    oracle = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    torch.testing.assert_close(fused, oracle)
    torch.testing.assert_close(fused, full, rtol=1e-6, atol=1e-6)
    g_full = torch.autograd.grad(full, [hidden, weight])
    g_fused = torch.autograd.grad(fused, [hidden, weight])
    for a, b in zip(g_fused, g_full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        LOSS_KERNELS["fused"](hidden, weight, torch.full((2, 7), 30), softcap=softcap)


def test_set_compute_plugs_pointwise_kernels_into_every_norm_and_ffn():
    torch.manual_seed(0)
    model = TransformerLM(BASE)
    norms = [m for m in model.modules() if isinstance(m, RMSNorm)]
    ffns = [m for m in model.modules() if isinstance(m, SwiGLU)]
    assert len(norms) == 2 * BASE.num_layers + 1 and len(ffns) == BASE.num_layers
    assert all(m.kernel is rms_norm for m in norms)
    model.set_compute(FAST)
    assert all(m.kernel is torch_rms_norm for m in norms)
    assert all(m.activation is F.silu for m in ffns)
    assert model.layers[0].attn.rope.rotate is complex_rope
    model.set_compute(ComputeConfig())
    assert all(m.kernel is rms_norm for m in norms)


def test_fast_kernel_set_trains_the_same_function_as_the_reference():
    """The plain (SwiGLU, affine-norm) model; test_recipe covers every switch on."""
    torch.manual_seed(0)
    reference = TransformerLM(BASE)
    fast = TransformerLM(BASE, FAST)
    fast.load_state_dict(reference.state_dict())
    g = torch.Generator().manual_seed(1)
    ids, targets = torch.randint(0, 50, (2, 16), generator=g), torch.randint(0, 50, (2, 16))
    loss_ref, loss_fast = reference(ids, targets=targets), fast(ids, targets=targets)
    torch.testing.assert_close(loss_fast, loss_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_ref, cross_entropy(reference(ids), targets))
    loss_ref.backward()
    loss_fast.backward()
    grads = dict(fast.named_parameters())
    for name, p in reference.named_parameters():
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("past", [0, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "seq, block",
    [(7, 64), (7, 3), (12, 4), (150, 64)],  # one block; ragged and even blocks; the real size
)
def test_naive_attention_on_torch_softmax_equals_the_reference(
    past, dtype, seq, block, monkeypatch
):
    monkeypatch.setattr(compute, "NAIVE_QUERY_BLOCK", block)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, seq, 8, generator=g).to(dtype).requires_grad_()
    k, v = (torch.randn(2, 3, seq + past, 8, generator=g).to(dtype).requires_grad_() for _ in "kv")
    ref = NAIVE_ATTENTION_BY_POINTWISE["naive"](q, k, v, past)
    fast = NAIVE_ATTENTION_BY_POINTWISE["torch"](q, k, v, past)
    assert fast.dtype == ref.dtype == dtype
    tol = {} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(fast, ref, **tol)
    w = torch.randn(ref.shape, generator=g)
    grads_ref = torch.autograd.grad((ref.float() * w).sum(), (q, k, v))
    grads_fast = torch.autograd.grad((fast.float() * w).sum(), (q, k, v))
    for a, b in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(a, b, **tol)
    model = TransformerLM(BASE, dataclasses.replace(FAST, attention="naive"))
    assert model.layers[0].attn.attention_kernel is NAIVE_ATTENTION_BY_POINTWISE["torch"]
