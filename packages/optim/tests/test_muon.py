"""newton_schulz and Muon against the optim README's formulas ("Muon"), written out step by step."""

import io
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.optim import Muon, newton_schulz

A, B, C = 3.4445, -4.7750, 2.0315


def ns_reference(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The README's quintic iteration, literally: one 2-D matrix, plain matmuls."""
    X = G.T if G.shape[0] > G.shape[1] else G
    X = X / (torch.linalg.norm(X) + 1e-7)
    for _ in range(steps):
        Am = X @ X.T
        Bm = B * Am + C * Am @ Am
        X = A * X + Bm @ X
    return X.T if G.shape[0] > G.shape[1] else X


def muon_reference(weights, grads_per_step, lr, momentum, nesterov, wd, ns_steps=5):
    """The README's Muon update on copies of `weights`, one list of grads per step."""
    ws = [w.clone() for w in weights]
    bufs = [torch.zeros_like(w) for w in ws]
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            bufs[i] = momentum * bufs[i] + (1 - momentum) * g
            u = (1 - momentum) * g + momentum * bufs[i] if nesterov else bufs[i]
            rows, cols = u.shape
            o = ns_reference(u, ns_steps) * math.sqrt(max(1.0, rows / cols))
            ws[i] = ws[i] * (1 - lr * wd) - lr * o
    return ws, bufs


def scalar_map(sigma: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """What the iteration does to each singular value of the normalised matrix."""
    for _ in range(steps):
        sigma = A * sigma + B * sigma**3 + C * sigma**5
    return sigma


# Several shapes incl. tall, wide, square and repeated ones (so batches form across transposition).
SHAPES = [(16, 32), (32, 16), (16, 32), (24, 24), (40, 8), (8, 40), (24, 24), (5, 7)]


@pytest.mark.parametrize("shape", [(16, 32), (32, 16), (24, 24), (1, 9), (9, 1)])
def test_newton_schulz_matches_formula(shape):
    G = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    got = newton_schulz(G)
    assert got.shape == G.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, ns_reference(G), atol=1e-5, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 24),
    cols=st.integers(1, 24),
    steps=st.integers(0, 7),
    seed=st.integers(0, 99),
)
def test_newton_schulz_formula_any_shape(rows, cols, steps, seed):
    G = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 10 ** (
        seed % 5 - 2
    )
    torch.testing.assert_close(
        newton_schulz(G, steps), ns_reference(G, steps), atol=2e-5, rtol=1e-4
    )


def test_batched_equals_unbatched():
    gen = torch.Generator().manual_seed(1)
    for shape in [(6, 16, 32), (6, 32, 16), (2, 3, 12, 12)]:
        G = torch.randn(shape, generator=gen) * torch.rand((*shape[:-2], 1, 1), generator=gen) * 5
        flat = G.reshape(-1, *shape[-2:])
        one_by_one = torch.stack([newton_schulz(g) for g in flat]).reshape(shape)
        torch.testing.assert_close(newton_schulz(G), one_by_one, atol=1e-6, rtol=1e-6)


def _with_spectrum(rows, cols, sigma, seed):
    gen = torch.Generator().manual_seed(seed)
    k = min(rows, cols)
    U, _ = torch.linalg.qr(torch.randn(rows, k, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(cols, k, generator=gen, dtype=torch.float64))
    return (U * sigma) @ V.T


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: torch.randn(32, 128, generator=torch.Generator().manual_seed(2)), id="wide"
        ),
        pytest.param(
            lambda: torch.randn(128, 32, generator=torch.Generator().manual_seed(3)), id="tall"
        ),
        pytest.param(
            lambda: torch.randn(48, 64, generator=torch.Generator().manual_seed(4)),
            id="near-square",
        ),
        # condition number 100 and 1e4, log-spaced spectra
        pytest.param(
            lambda: _with_spectrum(
                48, 32, torch.logspace(0, -2, 32, dtype=torch.float64), 5
            ).float(),
            id="cond1e2",
        ),
        pytest.param(
            lambda: _with_spectrum(
                32, 32, torch.logspace(0, -4, 32, dtype=torch.float64), 6
            ).float(),
            id="cond1e4",
        ),
        pytest.param(
            lambda: (
                1e-3
                * _with_spectrum(20, 40, torch.logspace(0, -2, 20, dtype=torch.float64), 7).float()
            ),
            id="tiny-scale",
        ),
    ],
)
def test_singular_values_near_one(make):
    """σ(out) = f⁵(σ(G)/‖G‖_F) with f(s) = a·s + b·s³ + c·s⁵; in [0.68, 1.14] once σ/‖G‖_F ≥ 1e-2.

    (Measured band of f⁵ on a fine grid: [0.6818, 1.1344] for s ≥ 1e-2, [0.6818, 1.2024] for
    s ≥ 2e-3; smaller s are amplified by ≈ a⁵ ≈ 488 and stay below the band after 5 steps.)
    """
    G = make().double()
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    s_in = S / (torch.linalg.norm(G) + 1e-7)
    # In G's singular bases the output must be diagonal, with f⁵ of each normalised σ on it.
    M = U.T @ newton_schulz(G.float()).double() @ Vh.T
    torch.testing.assert_close(M, torch.diag(scalar_map(s_in)), atol=2e-4, rtol=0)
    s_out = M.diagonal()
    converged = s_in >= 1e-2
    assert converged.sum() >= 8  # the band is checked on many directions, not a handful
    assert s_out[converged].min() >= 0.68 and s_out[converged].max() <= 1.14
    assert s_out[s_in >= 2e-3].min() >= 0.68 and s_out[s_in >= 2e-3].max() <= 1.21
    print(f"band for s >= 1e-2: [{s_out[converged].min():.4f}, {s_out[converged].max():.4f}]")


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_muon_matches_formula(nesterov, wd):
    gen = torch.Generator().manual_seed(10)
    weights = [torch.randn(s, generator=gen) for s in SHAPES]
    grads = [[torch.randn(s, generator=gen) for s in SHAPES] for _ in range(6)]
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    opt = Muon(params, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=wd)
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        opt.step()
    expected, bufs = muon_reference(weights, grads, 0.05, 0.9, nesterov, wd)
    for p, e, buf in zip(params, expected, bufs, strict=True):
        torch.testing.assert_close(p.detach(), e, atol=2e-5, rtol=0)
        assert set(opt.state[p]) == {"momentum_buffer"}
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], buf, atol=1e-6, rtol=0)


def test_batched_muon_equals_per_matrix():
    gen = torch.Generator().manual_seed(11)
    ps = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    fast, slow = Muon(ps, lr=0.03), Muon(qs, lr=0.03, batched=False)
    for _ in range(4):
        for p, q in zip(ps, qs, strict=True):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        fast.step()
        slow.step()
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_params_without_grad_are_untouched():
    p, q = torch.nn.Parameter(torch.randn(4, 6)), torch.nn.Parameter(torch.randn(6, 4))
    before = q.detach().clone()
    p.grad = torch.randn(4, 6)
    Muon([p, q], weight_decay=0.5).step()
    assert torch.equal(q.detach(), before)
    assert q not in Muon([p, q]).state


@pytest.mark.parametrize("shape", [(16,), (2, 3, 4), (), (4, 3, 3, 3)])
def test_rejects_non_matrix(shape):
    good = torch.nn.Parameter(torch.zeros(3, 3))
    bad = torch.nn.Parameter(torch.zeros(shape))
    with pytest.raises(ValueError, match=re.escape(f"parameter 1 of group 0 has shape {shape}")):
        Muon([good, bad])
    opt = Muon([good])
    with pytest.raises(ValueError, match="group 1"):
        opt.add_param_group({"params": [bad]})


@pytest.mark.parametrize(
    "kwargs", [dict(lr=-1.0), dict(momentum=1.0), dict(ns_steps=-1), dict(weight_decay=-0.1)]
)
def test_rejects_invalid_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        Muon([torch.nn.Parameter(torch.zeros(2, 2))], **kwargs)


def test_state_dict_round_trip_is_bit_exact():
    gen = torch.Generator().manual_seed(12)
    grads = [[torch.randn(s, generator=gen) for s in SHAPES] for _ in range(6)]

    def run(params, opt, steps):
        for step_grads in steps:
            for p, g in zip(params, step_grads, strict=True):
                p.grad = g.clone()
            opt.step()

    torch.manual_seed(0)
    ref = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
    ref_opt = Muon(ref, weight_decay=0.01)
    run(ref, ref_opt, grads[:3])
    buf = io.BytesIO()
    torch.save({"params": [p.detach() for p in ref], "opt": ref_opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = [torch.nn.Parameter(w.clone()) for w in saved["params"]]
    res_opt = Muon(resumed, lr=0.5, momentum=0.1)  # hyperparameters come back from the state
    res_opt.load_state_dict(saved["opt"])
    run(ref, ref_opt, grads[3:])
    run(resumed, res_opt, grads[3:])
    for p, q in zip(ref, resumed, strict=True):
        assert torch.equal(p, q)


@pytest.mark.gpu
def test_cuda_bf16_iteration_close_to_float32():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    G = torch.randn(8, 256, 768, generator=torch.Generator().manual_seed(13))
    cpu = newton_schulz(G)
    gpu = newton_schulz(G.cuda())
    assert gpu.dtype == torch.float32 and gpu.device.type == "cuda"
    # bf16 has 8 mantissa bits; the iteration is contracting, so errors stay at bf16 level.
    torch.testing.assert_close(gpu.cpu(), cpu, atol=3e-2 * cpu.abs().max().item(), rtol=0)
    s = torch.linalg.svdvals(gpu.float())
    assert s.min() >= 0.6 and s.max() <= 1.25
    exact = newton_schulz(G.cuda(), dtype=torch.float32)
    torch.testing.assert_close(exact.cpu(), cpu, atol=1e-4, rtol=0)
