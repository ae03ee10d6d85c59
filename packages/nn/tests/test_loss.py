"""cross_entropy and linear_cross_entropy against torch.nn.functional.cross_entropy."""

import pytest
import torch
import torch.nn.functional as F

import tinylm.nn
from tinylm.nn import cross_entropy
from tinylm.nn.loss import linear_cross_entropy

value_checks = pytest.mark.skipif(
    not tinylm.nn.TYPECHECK, reason="value checks are off with TINYLM_TYPECHECK=0"
)


@pytest.mark.parametrize("leading", [(6,), (2, 5), (2, 3, 4)])
def test_cross_entropy_matches_functional_over_leading_dims(leading):
    torch.manual_seed(0)
    logits = torch.randn(*leading, 11)
    targets = torch.randint(0, 11, leading)
    expected = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
    torch.testing.assert_close(cross_entropy(logits, targets), expected)


def test_cross_entropy_large_logits_are_finite_and_exact():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [5e3, 5e3, 5e3]])
    targets = torch.tensor([0, 2, 1])
    loss = cross_entropy(logits, targets)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, F.cross_entropy(logits.double(), targets).float())


def test_cross_entropy_bf16_logits_accumulate_in_float32():
    torch.manual_seed(0)
    logits = (torch.randn(64, 1000) * 1e4).bfloat16()
    targets = torch.randint(0, 1000, (64,))
    loss = cross_entropy(logits, targets)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, F.cross_entropy(logits.float(), targets))
    logits.requires_grad_(True)
    cross_entropy(logits, targets).backward()
    assert torch.isfinite(logits.grad.float()).all()


def test_gradcheck_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 5, (2, 3))
    assert torch.autograd.gradcheck(lambda z: cross_entropy(z, targets), (logits,))


def test_cross_entropy_shape_mismatch():
    with pytest.raises(ValueError, match="does not match"):
        cross_entropy(torch.randn(2, 3, 5), torch.zeros(3, 2, dtype=torch.long))


@value_checks
def test_cross_entropy_target_out_of_range():
    with pytest.raises(ValueError, match=r"target id 5 .*vocab=5"):
        cross_entropy(torch.randn(2, 5), torch.tensor([1, 5]))


# --- linear_cross_entropy: the chunked lm-head + loss, against the unfused reference -----------


def _reference(hidden, weight, targets, softcap=0.0):
    logits = hidden @ weight.t()
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if softcap > 0:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


GRAD_IN_FORWARD = pytest.mark.parametrize(
    "grad_in_forward", [False, True], ids=["recompute", "grad-in-forward"]
)


@GRAD_IN_FORWARD
@pytest.mark.parametrize("softcap", [0.0, 5.0])
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_linear_cross_entropy_matches_reference_value_and_grads(
    softcap, chunk_size, grad_in_forward
):
    torch.manual_seed(0)
    hidden = (torch.randn(3, 11, 16) * 2).requires_grad_(True)
    weight = torch.randn(37, 16).requires_grad_(True)
    targets = torch.randint(0, 37, (3, 11))
    loss = linear_cross_entropy(
        hidden,
        weight,
        targets,
        softcap=softcap,
        chunk_size=chunk_size,
        grad_in_forward=grad_in_forward,
    )
    expected = _reference(hidden, weight, targets, softcap)
    torch.testing.assert_close(loss, expected)
    gh, gw = torch.autograd.grad(loss, (hidden, weight))
    eh, ew = torch.autograd.grad(expected, (hidden, weight))
    torch.testing.assert_close(gh, eh)
    torch.testing.assert_close(gw, ew)


@GRAD_IN_FORWARD
def test_linear_cross_entropy_gradcheck_float64(grad_in_forward):
    torch.manual_seed(0)
    hidden = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 6, (5,))
    for softcap in (0.0, 2.0):
        assert torch.autograd.gradcheck(
            lambda h, w, c=softcap: linear_cross_entropy(
                h, w, targets, softcap=c, chunk_size=2, grad_in_forward=grad_in_forward
            ),
            (hidden, weight),
        )


@GRAD_IN_FORWARD
def test_linear_cross_entropy_bf16_inputs_within_bf16_tolerance(grad_in_forward):
    torch.manual_seed(0)
    hidden = torch.randn(64, 32).bfloat16().requires_grad_(True)
    weight = (torch.randn(500, 32) * 0.3).bfloat16().requires_grad_(True)
    targets = torch.randint(0, 500, (64,))
    loss = linear_cross_entropy(
        hidden, weight, targets, softcap=15.0, chunk_size=16, grad_in_forward=grad_in_forward
    )
    assert loss.dtype == torch.float32
    # Oracle in float64 from the same bf16 values.
    h64, w64 = hidden.double().detach().requires_grad_(), weight.double().detach().requires_grad_()
    expected = _reference(h64, w64, targets, 15.0)
    torch.testing.assert_close(loss.double(), expected, atol=2e-2, rtol=1e-2)
    loss.backward()
    expected.backward()
    assert hidden.grad.dtype == torch.bfloat16 and weight.grad.dtype == torch.bfloat16
    torch.testing.assert_close(hidden.grad.double(), h64.grad, atol=2e-3, rtol=2e-2)
    torch.testing.assert_close(weight.grad.double(), w64.grad, atol=2e-3, rtol=2e-2)


@GRAD_IN_FORWARD
def test_linear_cross_entropy_under_autocast_matches_autocast_reference(grad_in_forward):
    torch.manual_seed(0)
    hidden = torch.randn(2, 9, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=True)
    targets = torch.randint(0, 40, (2, 9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(
            hidden, weight, targets, chunk_size=5, grad_in_forward=grad_in_forward
        )
        expected = _reference(hidden, weight, targets)
    torch.testing.assert_close(loss, expected, atol=1e-2, rtol=1e-2)
    gh, gw = torch.autograd.grad(loss, (hidden, weight))
    eh, ew = torch.autograd.grad(expected, (hidden, weight))
    assert gh.dtype == torch.float32 and gw.dtype == torch.float32  # grads land in fp32 params
    torch.testing.assert_close(gh, eh, atol=1e-2, rtol=5e-2)
    torch.testing.assert_close(gw, ew, atol=1e-2, rtol=5e-2)


@GRAD_IN_FORWARD
def test_linear_cross_entropy_autocast_weight_grad_is_the_float32_sum(grad_in_forward):
    # The matmuls run in bf16, but the weight gradient is accumulated in float32 and must reach
    # the float32 parameter as that float32 sum, not rounded through bf16 on the way.
    torch.manual_seed(0)
    hidden = torch.randn(48, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=True)
    targets = torch.randint(0, 40, (48,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(
            hidden, weight, targets, chunk_size=7, grad_in_forward=grad_in_forward
        )
    gh, gw = torch.autograd.grad(loss, (hidden, weight))
    assert gh.dtype == torch.float32 and gw.dtype == torch.float32
    assert (gw.bfloat16().float() != gw).any()
    # ... and still the gradient of the bf16-rounded inputs (to bf16 accuracy of the softmax
    # gradient that enters each matmul).
    h64 = hidden.detach().bfloat16().double().requires_grad_()
    w64 = weight.detach().bfloat16().double().requires_grad_()
    _reference(h64, w64, targets).backward()
    torch.testing.assert_close(gw.double(), w64.grad, atol=1e-3, rtol=5e-2)


def test_linear_cross_entropy_mixed_dtypes_promote_and_return_each_dtype():
    torch.manual_seed(0)
    hidden = torch.randn(10, 8).bfloat16().requires_grad_()
    weight = torch.randn(30, 8, requires_grad=True)
    targets = torch.randint(0, 30, (10,))
    loss = linear_cross_entropy(hidden, weight, targets, chunk_size=4)
    expected = _reference(hidden.float(), weight, targets)
    torch.testing.assert_close(loss, expected)
    gh, gw = torch.autograd.grad(loss, (hidden, weight))
    eh, ew = torch.autograd.grad(expected, (hidden, weight))
    assert gh.dtype == torch.bfloat16 and gw.dtype == torch.float32
    torch.testing.assert_close(gh, eh)
    torch.testing.assert_close(gw, ew)


@GRAD_IN_FORWARD
def test_linear_cross_entropy_no_rows_gives_zero_loss_and_zero_grads(grad_in_forward):
    hidden = torch.randn(0, 8, requires_grad=True)
    weight = torch.randn(30, 8, requires_grad=True)
    loss = linear_cross_entropy(
        hidden, weight, torch.zeros(0, dtype=torch.long), grad_in_forward=grad_in_forward
    )
    loss.backward()
    assert loss.item() == 0.0
    assert hidden.grad.shape == (0, 8)
    assert weight.grad.shape == (30, 8) and not weight.grad.any()


def test_linear_cross_entropy_large_logits_finite():
    hidden = torch.tensor([[1e2, 0.0], [0.0, -1e2]], requires_grad=True)
    weight = torch.tensor([[1e2, 0.0], [0.0, 1e2], [-1e2, 0.0]], requires_grad=True)
    targets = torch.tensor([1, 2])
    loss = linear_cross_entropy(hidden, weight, targets, chunk_size=1)
    torch.testing.assert_close(loss, _reference(hidden.double(), weight.double(), targets).float())
    loss.backward()
    assert torch.isfinite(hidden.grad).all() and torch.isfinite(weight.grad).all()


def test_linear_cross_entropy_bad_input():
    with pytest.raises(ValueError, match="does not match"):
        linear_cross_entropy(torch.randn(2, 3, 4), torch.randn(5, 4), torch.zeros(3, 2).long())
    with pytest.raises(ValueError, match="chunk_size"):
        linear_cross_entropy(
            torch.randn(2, 4), torch.randn(5, 4), torch.zeros(2).long(), chunk_size=0
        )


@value_checks
def test_linear_cross_entropy_target_out_of_range():
    with pytest.raises(ValueError, match=r"target id 5 .*vocab=5"):
        linear_cross_entropy(torch.randn(2, 4), torch.randn(5, 4), torch.tensor([1, 5]))


# --- grad_in_forward: gradients computed in the forward, scaled in the backward ---------------


def _inputs(seed=0, rows=(2, 9), d=8, vocab=23):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*rows, d, generator=g, requires_grad=True)
    weight = torch.randn(vocab, d, generator=g, requires_grad=True)
    targets = torch.randint(0, vocab, rows, generator=g)
    return hidden, weight, targets


def _assert_same_value_and_grads(loss, expected, inputs):
    torch.testing.assert_close(loss, expected)
    for a, b in zip(
        torch.autograd.grad(loss, inputs), torch.autograd.grad(expected, inputs), strict=True
    ):
        torch.testing.assert_close(a, b)


def test_grad_in_forward_scales_by_grad_output_and_survives_retain_graph():
    hidden, weight, targets = _inputs()
    loss = linear_cross_entropy(hidden, weight, targets, chunk_size=4, grad_in_forward=True)
    expected = _reference(hidden, weight, targets)
    # A scaled and a summed use of the loss: gradient accumulation divides, schedules multiply.
    (0.25 * loss).backward(retain_graph=True)
    (3.0 * loss).backward()
    eh, ew = torch.autograd.grad(3.25 * expected, (hidden, weight))
    torch.testing.assert_close(hidden.grad, eh)
    torch.testing.assert_close(weight.grad, ew)


def test_grad_in_forward_applies_only_where_a_backward_can_follow():
    hidden, weight, targets = _inputs()
    expected = _reference(hidden, weight, targets)
    with torch.no_grad():  # eval: the forward alone, same value, nothing to differentiate
        loss = linear_cross_entropy(hidden, weight, targets, chunk_size=4, grad_in_forward=True)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, expected)
    frozen = weight.detach()  # only hidden needs a gradient (a frozen lm-head)
    loss = linear_cross_entropy(hidden, frozen, targets, chunk_size=4, grad_in_forward=True)
    (gh,) = torch.autograd.grad(loss, hidden)
    (eh,) = torch.autograd.grad(_reference(hidden, frozen, targets), hidden)
    torch.testing.assert_close(gh, eh)


def test_fused_linear_kernel_is_grad_in_forward_linear_cross_entropy():
    from tinylm.nn import LOSS_KERNELS

    hidden, weight, targets = _inputs(rows=(3, 200))  # 600 rows: more than one chunk
    loss = LOSS_KERNELS["fused_linear"](hidden, weight, targets, softcap=4.0)
    expected = _reference(hidden, weight, targets, 4.0)
    _assert_same_value_and_grads(loss, expected, (hidden, weight))


@pytest.mark.slow  # one dynamo trace + inductor compile: ~10 s
@GRAD_IN_FORWARD
def test_linear_cross_entropy_compiles_fullgraph_and_matches_eager(grad_in_forward):
    hidden, weight, targets = _inputs(rows=(2, 13))

    def loss_fn(h, w):
        return linear_cross_entropy(
            h, w, targets, softcap=3.0, chunk_size=5, grad_in_forward=grad_in_forward
        )

    compiled = torch.compile(loss_fn, fullgraph=True)  # a graph break raises
    loss = compiled(hidden, weight)
    expected = _reference(hidden, weight, targets, 3.0)
    _assert_same_value_and_grads(loss, expected, (hidden, weight))
