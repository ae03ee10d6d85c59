"""clip_grad_norm against torch.nn.utils.clip_grad_norm_."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.optim import clip_grad_norm


def _params(seed: int, scale: float, with_none: bool):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (7,), (2, 2, 2), (5, 1)]
    params = []
    for i, shape in enumerate(shapes):
        p = torch.nn.Parameter(torch.randn(shape, generator=gen))
        if not (with_none and i == 1):
            p.grad = torch.randn(shape, generator=gen) * scale
        params.append(p)
    return params


@settings(deadline=None, max_examples=50)
@given(
    seed=st.integers(0, 10_000),
    scale=st.sampled_from([1e-4, 0.1, 1.0, 10.0, 1e3]),
    max_norm=st.floats(0.01, 100.0),
    with_none=st.booleans(),
)
def test_matches_torch(seed, scale, max_norm, with_none):
    ours, ref = _params(seed, scale, with_none), _params(seed, scale, with_none)
    norm = clip_grad_norm(ours, max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    torch.testing.assert_close(norm, ref_norm)
    for a, b in zip(ours, ref, strict=True):
        if b.grad is None:
            assert a.grad is None
        else:
            torch.testing.assert_close(a.grad, b.grad)


def test_returns_pre_clip_norm_and_clips_to_max():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    norm = clip_grad_norm([p], 1.0)
    assert norm.item() == pytest.approx(5.0)
    assert p.grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_below_max_is_untouched():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([0.3, 0.4])
    assert clip_grad_norm([p], 1.0).item() == pytest.approx(0.5)
    assert torch.equal(p.grad, torch.tensor([0.3, 0.4]))


def test_no_grads():
    assert clip_grad_norm([torch.nn.Parameter(torch.zeros(2))], 1.0).item() == 0.0
