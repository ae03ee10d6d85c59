"""cosine_lr and wsd_lr against the optim README's formulas on grids; CosineSchedule driving an
optimizer."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tinylm.optim import AdamW, CosineSchedule, cosine_lr, wsd_lr


def reference(t, max_lr, min_lr, warmup, cycle):
    if t < warmup:
        return t / warmup * max_lr
    if t <= cycle:
        return min_lr + 0.5 * (1 + math.cos(math.pi * (t - warmup) / (cycle - warmup))) * (
            max_lr - min_lr
        )
    return min_lr


def test_known_values():
    # The CS336 reference grid: max 1, min 0.1, warmup 7, cycle 21.
    expected = [
        0,
        0.14285714285714285,
        0.2857142857142857,
        0.42857142857142855,
        0.5714285714285714,
        0.7142857142857143,
        0.8571428571428571,
        1.0,
        0.9887175604818206,
        0.9554359905560885,
        0.9018241671106134,
        0.8305704108364301,
        0.7452476826029011,
        0.6501344202803414,
        0.55,
        0.44986557971965857,
        0.3547523173970989,
        0.26942958916356996,
        0.19817583288938662,
        0.14456400944391146,
        0.11128243951817937,
        0.1,
        0.1,
        0.1,
        0.1,
    ]
    got = [cosine_lr(t, 1.0, 0.1, 7, 21) for t in range(25)]
    assert got == pytest.approx(expected, abs=1e-12)


@given(
    t=st.integers(0, 3000),
    max_lr=st.floats(1e-5, 1.0),
    frac=st.floats(0.0, 1.0),
    warmup=st.integers(1, 500),
    extra=st.integers(1, 2000),
)
def test_formula_grid(t, max_lr, frac, warmup, extra):
    min_lr = max_lr * frac
    cycle = warmup + extra
    got = cosine_lr(t, max_lr, min_lr, warmup, cycle)
    assert got == pytest.approx(reference(t, max_lr, min_lr, warmup, cycle), rel=1e-12, abs=1e-15)
    assert 0 <= got <= max_lr * (1 + 1e-12)


def test_zero_warmup_starts_at_max():
    assert cosine_lr(0, 1e-3, 1e-4, 0, 100) == pytest.approx(1e-3)
    assert cosine_lr(100, 1e-3, 1e-4, 0, 100) == pytest.approx(1e-4)
    assert cosine_lr(0, 1e-3, 1e-4, 0, 0) == pytest.approx(1e-3)


def test_schedule_drives_optimizer_and_round_trips():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    opt = AdamW([{"params": params[:1]}, {"params": params[1:], "lr_scale": 0.5}], lr=123.0)
    sched = CosineSchedule(opt, max_lr=1.0, min_lr=0.1, warmup_iters=7, cosine_cycle_iters=21)
    assert opt.param_groups[0]["lr"] == 0.0
    for t in range(1, 12):
        lr = sched.step()
        assert lr == sched.lr == pytest.approx(reference(t, 1.0, 0.1, 7, 21))
        assert opt.param_groups[0]["lr"] == pytest.approx(lr)
        assert opt.param_groups[1]["lr"] == pytest.approx(lr * 0.5)

    state = sched.state_dict()
    assert all(isinstance(v, int | float) for v in state.values())
    opt2 = AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5.0)
    sched2 = CosineSchedule(opt2, max_lr=9.0, min_lr=9.0, warmup_iters=0, cosine_cycle_iters=0)
    sched2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == pytest.approx(sched.lr)
    for _ in range(15):
        assert sched2.step() == sched.step()


def test_schedule_rejects_bad_iters():
    opt = AdamW([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="warmup_iters"):
        CosineSchedule(opt, 1.0, 0.1, warmup_iters=10, cosine_cycle_iters=5)


def wsd_reference(t, max_lr, min_lr, warmup, decay, total):
    """Warmup–stable–decay as the optim README states it, written out independently."""
    if t < warmup:
        return max_lr * t / warmup
    if t < total - decay:
        return max_lr
    if t <= total:
        return max_lr + (min_lr - max_lr) * (t - (total - decay)) / decay
    return min_lr


def test_wsd_known_values():
    # max 1, min 0.1, warmup 4, decay 5, total 12: ramp, plateau 4..6, linear 7..12, floor.
    got = [wsd_lr(t, 1.0, 0.1, 4, 5, 12) for t in range(15)]
    expected = [0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 0.82, 0.64, 0.46, 0.28, 0.1, 0.1, 0.1]
    assert got == pytest.approx(expected, abs=1e-12)


def test_wsd_grid_matches_formula():
    for warmup in (0, 1, 3, 10):
        for decay in (1, 4, 20):
            total = warmup + decay + 7
            for t in range(total + 5):
                got = wsd_lr(t, 2e-3, 1e-4, warmup, decay, total)
                assert got == pytest.approx(
                    wsd_reference(t, 2e-3, 1e-4, warmup, decay, total), rel=1e-12, abs=1e-18
                )


@given(
    t=st.floats(0, 5000),
    max_lr=st.floats(1e-6, 10.0),
    frac=st.floats(0.0, 1.0),
    warmup=st.integers(0, 500),
    stable=st.integers(0, 2000),
    decay=st.integers(1, 2000),
)
def test_wsd_bounds_and_shape(t, max_lr, frac, warmup, stable, decay):
    min_lr = max_lr * frac
    total = warmup + stable + decay
    got = wsd_lr(t, max_lr, min_lr, warmup, decay, total)
    assert got == pytest.approx(wsd_reference(t, max_lr, min_lr, warmup, decay, total), rel=1e-9)
    assert 0 <= got <= max_lr * (1 + 1e-12)
    if t >= warmup:  # after warmup: never below the floor, never rising
        assert got >= min_lr * (1 - 1e-12)
        later = wsd_lr(t + 1.0, max_lr, min_lr, warmup, decay, total)
        assert later <= got * (1 + 1e-12)
    if t >= total:
        assert got == pytest.approx(min_lr)


def test_wsd_without_decay_is_a_step():
    assert wsd_lr(9, 1.0, 0.1, 2, 0, 10) == 1.0
    assert wsd_lr(10, 1.0, 0.1, 2, 0, 10) == 0.1
    assert wsd_lr(0, 1.0, 0.1, 0, 5, 10) == 1.0
