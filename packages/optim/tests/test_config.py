"""OptimConfig.build: the optimizer set and schedule a run's [optim] section stands for.

The expected objects are written out here the long way (`build_optimizers` with explicit
`OptimizerHParams`, `LRSchedule` with explicit arguments: what train's setup does with its
[optim] section today), and the lrs per role against numbers computed by hand.
"""

import math

import pytest
import torch

from tinylm.optim import (
    OPTIMIZER_KINDS,
    SCHEDULE_KINDS,
    LRSchedule,
    OptimConfig,
    OptimizerHParams,
    build_optimizers,
)


def _roles() -> dict[str, list[torch.nn.Parameter]]:
    gen = torch.Generator().manual_seed(0)

    def p(*shape):
        return torch.nn.Parameter(torch.randn(*shape, generator=gen))

    return {
        "matrix": [p(8, 4), p(4, 8), p(4, 4)],
        "embedding": [p(16, 4)],
        "head": [p(16, 4)],
        "scalar": [p(4), p(4)],
    }


def _by_role(opt) -> dict[str, dict]:
    return {g["role"]: g for g in opt.param_groups}


def test_defaults_are_the_train_defaults():
    c = OptimConfig()
    assert (c.optimizer, c.schedule, c.lr, c.min_lr, c.warmup_steps) == (
        "adamw",
        "cosine",
        3e-3,
        3e-4,
        20,
    )
    assert (c.cosine_steps, c.decay_fraction, c.fit_to_time, c.grad_clip) == (0, 0.2, False, 1.0)
    assert (c.weight_decay, c.beta1, c.beta2, c.eps) == (0.1, 0.9, 0.95, 1e-8)
    assert (c.muon_lr, c.muon_momentum, c.muon_nesterov, c.muon_ns_steps) == (0.02, 0.95, True, 5)
    assert (c.muon_weight_decay, c.momentum_warmup_steps, c.momentum_start) == (0.0, 0, 0.85)
    assert c.scalar_weight_decay == 0.0 and c.embedding_lr is None and c.head_betas is None
    assert c.min_lr_ratio == pytest.approx(0.1)
    assert OptimConfig(lr=0.0).min_lr_ratio == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "sgd"}, "optim.optimizer must be one of adamw, muon, got 'sgd'"),
        ({"schedule": "linear"}, "optim.schedule must be one of cosine, wsd, got 'linear'"),
        ({"decay_fraction": 1.5}, "optim.decay_fraction must be in [0, 1], got 1.5"),
        (
            {"head_betas": (0.9,)},
            "optim.head_betas must be two numbers [beta1, beta2], got (0.9,)",
        ),
        ({"lr": -1.0}, "optim.lr, optim.min_lr and optim.muon_lr must be >= 0"),
        ({"muon_lr": -0.1}, "optim.lr, optim.min_lr and optim.muon_lr must be >= 0"),
    ],
)
def test_bad_values_raise_one_line_naming_the_key(kwargs, message):
    with pytest.raises(ValueError) as e:
        OptimConfig(**kwargs)
    assert str(e.value) == message
    assert set(OPTIMIZER_KINDS) == {"adamw", "muon"} and set(SCHEDULE_KINDS) == {"cosine", "wsd"}


def test_adamw_build_equals_the_long_way_and_the_hand_computed_lrs():
    config = OptimConfig(
        lr=2e-3, min_lr=2e-4, warmup_steps=5, embedding_lr=0.1, head_betas=(0.8, 0.9),
        head_weight_decay=0.0, beta1=0.85, eps=1e-7,
    )  # fmt: skip
    opt, sched = config.build(_roles(), max_steps=40)
    ref_opt = build_optimizers(
        _roles(),
        "adamw",
        OptimizerHParams(
            adamw_lr=2e-3, embedding_lr=0.1, head_betas=(0.8, 0.9), head_weight_decay=0.0,
            betas=(0.85, 0.95), eps=1e-7,
        ),
    )  # fmt: skip
    ref = LRSchedule(ref_opt, "cosine", total_iters=40, warmup_iters=5, min_lr_ratio=0.1)
    assert list(opt) == ["adamw"]
    groups = _by_role(opt)
    assert {r: g["base_lr"] for r, g in groups.items()} == {
        "matrix": 2e-3,
        "embedding": 0.1,
        "head": 2e-3,
        "scalar": 2e-3,
    }
    assert groups["head"]["betas"] == (0.8, 0.9) and groups["matrix"]["betas"] == (0.85, 0.95)
    assert groups["head"]["weight_decay"] == 0.0 and groups["embedding"]["weight_decay"] == 0.1
    assert groups["scalar"]["weight_decay"] == 0.0
    assert all(g["eps"] == 1e-7 for g in groups.values())
    _same_schedule(sched, ref, opt, ref_opt, steps=45)
    # cosine by hand at step 25 (warmup 5, end 40, floor 0.1) for the embedding role
    expected = 0.1 * (0.1 + 0.5 * (1 + math.cos(math.pi * 20 / 35)) * 0.9)
    sched2, _ = _fresh(config, 40)
    for _ in range(25):
        sched2.step()
    assert _by_role(sched2.optimizers[0])["embedding"]["lr"] == pytest.approx(expected, rel=1e-12)


def _fresh(config: OptimConfig, max_steps: int):
    opt, sched = config.build(_roles(), max_steps=max_steps)
    return sched, opt


def _same_schedule(sched, ref, opt, ref_opt, steps: int) -> None:
    """Both schedules set the same lr (and momentum) on every role at every step."""
    assert sched.state_dict() == ref.state_dict()
    for _ in range(steps):
        got = {r: (g["lr"], g.get("momentum")) for r, g in _by_role(opt).items()}
        want = {r: (g["lr"], g.get("momentum")) for r, g in _by_role(ref_opt).items()}
        assert got == want
        sched.step()
        ref.step()


def test_muon_wsd_build_equals_the_long_way():
    config = OptimConfig(
        optimizer="muon", schedule="wsd", lr=0.3, min_lr=0.0, warmup_steps=50, cosine_steps=30,
        decay_fraction=0.4, muon_lr=0.03, head_lr=0.008, scalar_lr=0.02, weight_decay=0.05,
        muon_momentum=0.9, muon_nesterov=False, muon_ns_steps=4, muon_weight_decay=0.1,
        momentum_warmup_steps=10, momentum_start=0.8,
    )  # fmt: skip
    opt, sched = config.build(_roles(), max_steps=1000)  # cosine_steps wins over max_steps
    hp = OptimizerHParams(
        adamw_lr=0.3, muon_lr=0.03, head_lr=0.008, scalar_lr=0.02, weight_decay=0.05,
        muon_momentum=0.9, nesterov=False, ns_steps=4, muon_weight_decay=0.1,
    )  # fmt: skip
    ref_opt = build_optimizers(_roles(), "muon", hp)
    ref = LRSchedule(
        ref_opt, "wsd", total_iters=30, warmup_iters=30, min_lr_ratio=0.0, decay_fraction=0.4,
        momentum_warmup_iters=10, momentum_start=0.8,
    )  # fmt: skip
    assert list(opt) == ["muon", "adamw"]
    matrix = _by_role(opt)["matrix"]
    assert (matrix["base_lr"], matrix["nesterov"], matrix["ns_steps"]) == (0.03, False, 4)
    assert matrix["weight_decay"] == 0.1 and matrix["momentum"] == 0.8  # t = 0: momentum_start
    assert {r: g["base_lr"] for r, g in _by_role(opt).items() if r != "matrix"} == {
        "embedding": 0.3,
        "head": 0.008,
        "scalar": 0.02,
    }
    assert sched.warmup_iters == 30  # warmup is capped at the schedule's end
    _same_schedule(sched, ref, opt, ref_opt, steps=35)


def test_schedule_ends_at_max_steps_when_cosine_steps_is_zero():
    _, capped = OptimConfig(warmup_steps=500).build(_roles(), max_steps=100)
    assert (capped.total_iters, capped.warmup_iters) == (100, 100)
    _, sched = OptimConfig(warmup_steps=5).build(_roles(), max_steps=100)
    for _ in range(100):
        sched.step()
    assert sched.factor == pytest.approx(0.1)


def test_build_refuses_roles_without_parameters():
    with pytest.raises(ValueError, match="no trainable parameters"):
        OptimConfig().build({"matrix": []}, max_steps=10)
