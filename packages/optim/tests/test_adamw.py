"""AdamW against torch.optim.AdamW (the oracle) over hundreds of steps."""

import copy
import io

import pytest
import torch

from tinylm.optim import AdamW


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 4),
    )


def _run(model, opt, steps: int, seed: int = 1) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.randn(32, 8, generator=gen)
        y = torch.randn(32, 4, generator=gen)
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# The three update kernels (adamw.UPDATES), each selected explicitly.
KERNELS = {
    "loop": dict(foreach=False, fused=False),
    "foreach": dict(foreach=True, fused=False),
    "fused": dict(fused=True),
}


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize(
    "hp",
    [
        dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
        dict(lr=3e-3, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.1),
        dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.0),
    ],
)
def test_matches_torch_adamw(hp, kernel):
    ours, ref = _model(), _model()
    opt = AdamW(ours.parameters(), **KERNELS[kernel], **hp)
    assert opt.kernel(torch.device("cpu"), torch.float32) == kernel
    _run(ours, opt, 300)
    _run(ref, torch.optim.AdamW(ref.parameters(), **hp), 300)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_param_groups_and_skipped_params():
    ours, ref = _model(), _model()

    def groups(m):
        layers = list(m.children())
        return [
            {"params": layers[0].parameters(), "lr": 2e-3, "weight_decay": 0.0},
            {"params": list(layers[2].parameters()) + list(layers[4].parameters())},
        ]

    ours_opt = AdamW(groups(ours), lr=1e-3, weight_decay=0.1)
    ref_opt = torch.optim.AdamW(groups(ref), lr=1e-3, weight_decay=0.1)
    # Freeze one layer: params without grad must be left untouched and get no state.
    for m in (ours, ref):
        m[2].weight.requires_grad_(False)
    _run(ours, ours_opt, 100)
    _run(ref, ref_opt, 100)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert ours[2].weight not in ours_opt.state
    assert set(ours_opt.state[ours[0].weight]) == {"step", "exp_avg", "exp_avg_sq"}
    assert float(ours_opt.state[ours[0].weight]["step"]) == 100


def test_state_dict_round_trip_continues_identically():
    model = _model()
    opt = AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    _run(model, opt, 50, seed=1)

    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = _model(seed=123)
    resumed.load_state_dict(saved["model"])
    resumed_opt = AdamW(resumed.parameters(), lr=0.5)  # hyperparameters come back from the state
    resumed_opt.load_state_dict(saved["opt"])
    assert resumed_opt.param_groups[0]["lr"] == 3e-3

    _run(model, opt, 50, seed=2)
    _run(resumed, resumed_opt, 50, seed=2)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_dict_interchangeable_with_torch():
    ours, ref = _model(), _model()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3)
    _run(ref, ref_opt, 20)
    ours.load_state_dict(ref.state_dict())
    ours_opt = AdamW(ours.parameters(), lr=1e-3)
    ours_opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
    _run(ref, ref_opt, 30, seed=5)
    _run(ours, ours_opt, 30, seed=5)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_bias_correction_first_step_is_lr_times_sign():
    # With m̂ = g and v̂ = g² after one step, the update is lr · g/(|g| + eps) ≈ lr · sign(g).
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = AdamW([p], lr=0.1, weight_decay=0.0)
    p.grad = torch.tensor([0.5, -4.0, 1e-3])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.9, -1.9, 2.9]), atol=1e-4, rtol=0)


def test_decoupled_weight_decay_with_zero_grad():
    p = torch.nn.Parameter(torch.tensor([2.0]))
    opt = AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.zeros(1)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([2.0 * (1 - 0.1 * 0.5)]))


def test_mixed_dtypes_in_one_group():
    a = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(4, dtype=torch.float32))
    a_ref, b_ref = (torch.nn.Parameter(t.detach().clone()) for t in (a, b))
    opt, ref = AdamW([a, b], lr=0.01), torch.optim.AdamW([a_ref, b_ref], lr=0.01)
    for _ in range(10):
        for x, y in ((a, a_ref), (b, b_ref)):
            x.grad = x.detach() * 2
            y.grad = y.detach() * 2
        opt.step()
        ref.step()
    torch.testing.assert_close(a, a_ref)
    torch.testing.assert_close(b, b_ref)


def test_default_kernel_is_fused_on_cpu_and_foreach_elsewhere():
    opt = AdamW([torch.nn.Parameter(torch.zeros(1))])
    assert opt.kernel(torch.device("cpu"), torch.float32) == "fused"
    assert opt.kernel(torch.device("cpu"), torch.bfloat16) == "fused"
    assert opt.kernel(torch.device("cuda"), torch.float32) == "foreach"
    assert (
        AdamW([torch.nn.Parameter(torch.zeros(1))], foreach=False).kernel(
            torch.device("cuda"), torch.float32
        )
        == "loop"
    )


def test_fused_true_refuses_parameters_it_cannot_serve():
    with pytest.raises(ValueError, match="fused=True needs CPU"):
        AdamW([torch.nn.Parameter(torch.zeros(2, device="meta"))], fused=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernels_agree_over_groups_and_mixed_steps(dtype):
    """fused = foreach = loop on tensors of many shapes, two groups, and a parameter that joins
    late (its own step count) — what a model's buckets look like. The oracle is the loop in
    float64; fp32 kernels match it to rounding, bf16 ones within a few bf16 ulps (the fused kernel
    rounds once per step, the others once per line)."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(7,), (16, 3), (5, 4, 3), (1,), (33, 9)]
    init = [torch.randn(s, generator=gen) for s in shapes]

    def run(kw, run_dtype):
        params = [torch.nn.Parameter(t.to(dtype).to(run_dtype, copy=True)) for t in init]
        groups = [
            {"params": params[:2], "weight_decay": 0.0, "lr": 3e-2},
            {"params": params[2:]},
        ]
        opt = AdamW(groups, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1, **kw)
        g = torch.Generator().manual_seed(1)
        for step in range(20):
            grads = [torch.randn(p.shape, generator=g) for p in params]
            for i, p in enumerate(params):
                late = i == 4 and step < 7  # no grad for 7 steps: a smaller step count
                p.grad = None if late else grads[i].to(dtype).to(run_dtype)
            opt.step()
        assert float(opt.state[params[4]]["step"]) == 13
        return params

    oracle = run(KERNELS["loop"], torch.float64)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else dict(atol=5e-2, rtol=3e-2)
    for name, kw in KERNELS.items():
        for a, b in zip(run(kw, dtype), oracle, strict=True):
            assert a.dtype == dtype
            torch.testing.assert_close(a.double(), b, **tol, msg=f"{name} {dtype}")


@pytest.mark.parametrize(
    "kwargs", [dict(lr=-1.0), dict(betas=(1.0, 0.9)), dict(eps=-1.0), dict(weight_decay=-0.1)]
)
def test_rejects_invalid_hyperparameters(kwargs):
    with pytest.raises(ValueError):
        AdamW([torch.nn.Parameter(torch.zeros(1))], **kwargs)


@pytest.mark.gpu
def test_matches_torch_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    ours, ref = _model().cuda(), _model().cuda()
    ours_opt, ref_opt = (
        AdamW(ours.parameters(), lr=1e-3),
        torch.optim.AdamW(ref.parameters(), lr=1e-3),
    )
    gen = torch.Generator(device="cuda").manual_seed(0)
    for _ in range(100):
        x = torch.randn(32, 8, device="cuda", generator=gen)
        for m, o in ((ours, ours_opt), (ref, ref_opt)):
            o.zero_grad()
            (m(x) ** 2).mean().backward()
            o.step()
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
