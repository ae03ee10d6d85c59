"""Linear, Embedding, RMSNorm, silu, softmax and the FFNs against torch.nn.functional / float64."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import tinylm.nn
from tinylm.nn import Embedding, Linear, RMSNorm, SiLUFeedForward, SwiGLU, silu, softmax

value_checks = pytest.mark.skipif(
    not tinylm.nn.TYPECHECK, reason="value checks are off with TINYLM_TYPECHECK=0"
)


def test_linear_matches_functional_linear():
    torch.manual_seed(0)
    layer = Linear(7, 5)
    assert layer.weight.shape == (5, 7)
    assert list(layer.state_dict()) == ["weight"]
    x = torch.randn(2, 3, 7)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight))


def test_embedding_matches_functional_embedding():
    torch.manual_seed(0)
    emb = Embedding(11, 4)
    assert emb.weight.shape == (11, 4)
    ids = torch.randint(0, 11, (3, 5))
    torch.testing.assert_close(emb(ids), F.embedding(ids, emb.weight))


@value_checks
def test_embedding_rejects_out_of_range_id_naming_vocab_size():
    emb = Embedding(11, 4)
    with pytest.raises(ValueError, match=r"token id 11 .*vocab_size=11"):
        emb(torch.tensor([[1, 11]]))


def test_linear_init_statistics():
    torch.manual_seed(0)
    layer = Linear(600, 400)
    std = math.sqrt(2 / 1000)
    w = layer.weight.detach()
    assert abs(w.mean().item()) < 0.02 * std
    # A normal truncated at ±3σ has std ≈ 0.9866σ.
    assert w.std().item() == pytest.approx(0.9866 * std, rel=0.02)
    assert w.abs().max().item() <= 3 * std + 1e-7
    assert w.abs().max().item() > 2.5 * std  # truncated, not clipped to something narrower


def test_embedding_init_statistics():
    torch.manual_seed(0)
    w = Embedding(1000, 256).weight.detach()
    assert abs(w.mean().item()) < 0.01
    assert w.std().item() == pytest.approx(0.9866, rel=0.02)
    assert w.abs().max().item() <= 3.0


def test_rmsnorm_matches_float64_formula_and_functional():
    torch.manual_seed(0)
    norm = RMSNorm(16, eps=1e-5)
    torch.testing.assert_close(norm.weight.detach(), torch.ones(16))
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    x = torch.randn(2, 3, 16)
    x64 = x.double()
    expected = x64 / torch.sqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight.double()
    torch.testing.assert_close(norm(x).double(), expected, rtol=1e-5, atol=1e-6)
    if hasattr(F, "rms_norm"):
        torch.testing.assert_close(norm(x), F.rms_norm(x, (16,), norm.weight, eps=1e-5))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rmsnorm_low_precision_inputs_are_finite_and_keep_dtype(dtype):
    norm = RMSNorm(64)
    x = (torch.randn(4, 64) * 1e3).to(dtype)  # x² = 1e6 overflows float16
    y = norm(x)
    assert y.dtype == dtype
    assert torch.isfinite(y).all()
    expected = RMSNorm(64)(x.float())
    torch.testing.assert_close(y.float(), expected, rtol=1e-2, atol=1e-2)


def test_rmsnorm_rejects_wrong_d_model():
    with pytest.raises(ValueError, match="d_model=8, expected 16"):
        RMSNorm(16)(torch.randn(2, 8))


def test_silu_matches_functional():
    x = torch.randn(50)
    torch.testing.assert_close(silu(x), F.silu(x))


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    scale=st.sampled_from([1.0, 30.0, 1e4]),
    seed=st.integers(0, 2**16),
)
def test_softmax_matches_functional_on_any_shape_and_dim(shape, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * scale
    for dim in range(-len(shape), len(shape)):
        torch.testing.assert_close(softmax(x, dim), F.softmax(x, dim))


def test_softmax_is_stable_for_large_logits():
    x = torch.tensor([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]])
    y = softmax(x, dim=-1)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, F.softmax(x.double(), -1).float())
    yb = softmax(x.bfloat16(), dim=-1)
    assert yb.dtype == torch.bfloat16 and torch.isfinite(yb).all()
    torch.testing.assert_close(yb.float(), y, atol=1e-2, rtol=1e-2)


def test_softmax_fully_masked_row_gives_zeros():
    x = torch.tensor([[0.0, float("-inf")], [float("-inf"), float("-inf")]])
    torch.testing.assert_close(softmax(x, -1), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_gradcheck_rmsnorm_and_softmax():
    torch.manual_seed(0)
    norm = RMSNorm(6, dtype=torch.float64)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6, dtype=torch.float64))
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(norm, (x,))
    assert torch.autograd.gradcheck(lambda t: softmax(t, dim=-1), (x,))
    assert torch.autograd.gradcheck(lambda t: softmax(t, dim=0), (x,))


def test_swiglu_and_silu_ffn_match_functional_formulas():
    torch.manual_seed(0)
    ffn = SwiGLU(8, 24)
    assert ffn.w1.weight.shape == (24, 8) and ffn.w3.weight.shape == (24, 8)
    assert ffn.w2.weight.shape == (8, 24)
    assert sorted(ffn.state_dict()) == ["w1.weight", "w2.weight", "w3.weight"]
    x = torch.randn(2, 5, 8)
    expected = F.linear(
        F.silu(F.linear(x, ffn.w1.weight)) * F.linear(x, ffn.w3.weight), ffn.w2.weight
    )
    torch.testing.assert_close(ffn(x), expected)

    plain = SiLUFeedForward(8, 36)
    assert sorted(plain.state_dict()) == ["w1.weight", "w2.weight"]
    expected = F.linear(F.silu(F.linear(x, plain.w1.weight)), plain.w2.weight)
    torch.testing.assert_close(plain(x), expected)


def test_device_and_dtype_arguments():
    for module in (
        Linear(3, 4, dtype=torch.float64),
        Embedding(5, 3, dtype=torch.float64),
        RMSNorm(3, dtype=torch.float64),
        SwiGLU(4, 8, dtype=torch.float64),
    ):
        assert all(p.dtype == torch.float64 for p in module.parameters())
        assert all(p.device.type == "cpu" for p in module.parameters())


@pytest.mark.parametrize(
    "dtype, wide",
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_upcast_and_cast_skip_no_op_conversions(dtype, wide):
    # Batch-1 decoding runs ~80 dtype conversions per token; those that would not change the
    # dtype must return the tensor itself (no dispatch), the others must equal Tensor.to.
    from tinylm.nn.layers import cast, upcast

    x = torch.randn(3, 4).to(dtype)
    up = upcast(x)
    assert up.dtype == wide and torch.equal(up, x.to(wide))
    assert (up is x) == (dtype == wide)
    assert cast(x, dtype) is x
    other = torch.float64 if dtype != torch.float64 else torch.float32
    converted = cast(x, other)
    assert converted.dtype == other and torch.equal(converted, x.to(other))
