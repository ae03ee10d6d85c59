"""cross_entropy against torch.nn.functional.cross_entropy."""

import pytest
import torch
import torch.nn.functional as F

import tinylm.nn
from tinylm.nn import cross_entropy

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
