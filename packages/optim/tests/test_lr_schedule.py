"""LRSchedule: per-group base lrs, both kinds, Muon momentum warmup, wall-clock fitting, resume."""

import io
import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from tinylm.optim import SCHEDULE_KINDS, AdamW, LRSchedule, Muon, OptimizerSet


def cosine_ref(t, lo, warmup, total):
    if t < warmup:
        return t / warmup
    if t <= total:
        return lo + 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup))) * (1 - lo)
    return lo


def wsd_ref(t, lo, warmup, decay, total):
    if t < warmup:
        return t / warmup
    if t < total - decay:
        return 1.0
    if t <= total and decay > 0:
        return lo + (1 - lo) * (total - t) / decay  # from the end: exact at t == total
    return lo


def _optimizers():
    mats = [torch.nn.Parameter(torch.zeros(3, 4)), torch.nn.Parameter(torch.zeros(4, 4))]
    vecs = [torch.nn.Parameter(torch.zeros(4)) for _ in range(3)]
    adamw = AdamW(
        [
            {"params": vecs[:1], "lr": 1e-3, "role": "embedding"},
            {"params": vecs[1:2], "lr": 4e-3, "role": "head"},
            {"params": vecs[2:], "lr": 0.5, "role": "scalar"},
        ]
    )
    muon = Muon(
        [{"params": mats[:1], "lr": 0.02}, {"params": mats[1:], "lr": 0.05, "momentum": 0.9}]
    )
    return adamw, muon


@pytest.mark.parametrize("kind", ["cosine", "wsd"])
def test_every_group_keeps_its_base_lr(kind):
    adamw, muon = _optimizers()
    bases = [g["lr"] for g in (*adamw.param_groups, *muon.param_groups)]
    sched = LRSchedule(
        [adamw, muon], kind, total_iters=30, warmup_iters=5, min_lr_ratio=0.1, decay_fraction=0.4
    )
    for t in range(36):
        f = cosine_ref(t, 0.1, 5, 30) if kind == "cosine" else wsd_ref(t, 0.1, 5, 12, 30)
        assert sched.factor == pytest.approx(f, abs=1e-12)
        for group, base in zip((*adamw.param_groups, *muon.param_groups), bases, strict=True):
            assert group["base_lr"] == base
            assert group["lr"] == pytest.approx(base * f, rel=1e-12, abs=1e-15)
        assert sched.step() == pytest.approx(
            cosine_ref(t + 1, 0.1, 5, 30) if kind == "cosine" else wsd_ref(t + 1, 0.1, 5, 12, 30)
        )


def test_drives_an_optimizer_set_like_one_optimizer():
    adamw, muon = _optimizers()
    opts = OptimizerSet({"adamw": adamw, "muon": muon})
    sched = LRSchedule(opts, "wsd", total_iters=10, decay_fraction=0.5, min_lr_ratio=0.0)
    for _ in range(8):
        sched.step()
    assert muon.param_groups[1]["lr"] == pytest.approx(0.05 * 0.4)
    assert opts.lr_by_role()["scalar"] == pytest.approx(0.5 * 0.4)


def test_momentum_warmup_reaches_each_groups_own_momentum():
    adamw, muon = _optimizers()
    sched = LRSchedule(
        [adamw, muon], "cosine", total_iters=50, momentum_warmup_iters=10, momentum_start=0.85
    )
    for t in range(15):
        w = min(1.0, t / 10)
        assert muon.param_groups[0]["momentum"] == pytest.approx(0.85 + (0.95 - 0.85) * w)
        assert muon.param_groups[1]["momentum"] == pytest.approx(0.85 + (0.9 - 0.85) * w)
        assert all("momentum" not in g for g in adamw.param_groups)
        sched.step()
    assert muon.param_groups[0]["momentum"] == 0.95  # exactly the base once warm


def test_no_momentum_warmup_leaves_momentum_alone():
    _, muon = _optimizers()
    sched = LRSchedule(muon, "wsd", total_iters=5)
    sched.step()
    assert [g["momentum"] for g in muon.param_groups] == [0.95, 0.9]


@example(progress=1.0, t=0, warmup=0, decay=5e-324, kind="wsd")  # total − decay rounds to total
@example(progress=1.0, t=0, warmup=0, decay=0.0, kind="wsd")  # no decay phase at all
@given(
    progress=st.floats(0.0, 1.0),
    t=st.integers(0, 10_000),
    warmup=st.integers(0, 100),
    decay=st.floats(0.0, 1.0),
    kind=st.sampled_from(["cosine", "wsd"]),
)
def test_progress_fitting_follows_the_fraction(progress, t, warmup, decay, kind):
    adamw, _ = _optimizers()
    sched = LRSchedule(
        adamw, kind, total_iters=100, warmup_iters=warmup, min_lr_ratio=0.05, decay_fraction=decay
    )
    sched.t = t - 1
    sched.step(progress=progress)
    ramp = min(1.0, t / warmup) if warmup else 1.0
    shape = (
        cosine_ref(progress, 0.05, 0, 1)
        if kind == "cosine"
        else wsd_ref(progress, 0.05, 0, decay, 1)
    )
    assert sched.factor == pytest.approx(ramp * shape, abs=1e-12)
    assert adamw.param_groups[2]["lr"] == pytest.approx(0.5 * ramp * shape, abs=1e-12)
    if kind == "wsd" and t >= warmup:
        if progress < 1 - decay:
            assert sched.factor == 1.0
        if progress == 1.0:
            assert sched.factor == pytest.approx(0.05)


def test_time_limited_wsd_run_finishes_its_decay():
    """An injected clock: uneven step times, a 60 s budget, far fewer steps than total_iters."""
    adamw, _ = _optimizers()
    sched = LRSchedule(adamw, "wsd", total_iters=10_000, warmup_iters=3, decay_fraction=0.25)
    budget, clock, factors = 60.0, 0.0, []
    step = 0
    while clock < budget:
        clock += 0.5 + (step % 7) * 0.3  # the "measured" step time
        step += 1
        factors.append((clock / budget, sched.step(progress=clock / budget)))
    assert step < 200
    assert factors[-1][1] == pytest.approx(0.1)  # the floor, reached exactly at the budget
    assert all(f == 1.0 for p, f in factors[3:] if p < 0.75)
    decaying = [f for p, f in factors if 0.75 < p < 1.0]
    assert decaying and all(0.1 < f < 1.0 for f in decaying)
    assert decaying == sorted(decaying, reverse=True)


def test_progress_is_clamped_and_checked():
    adamw, _ = _optimizers()
    sched = LRSchedule(adamw, "wsd", total_iters=10, decay_fraction=0.5)
    assert sched.step(progress=1.7) == pytest.approx(0.1)
    assert sched.step(progress=-3.0) == 1.0
    with pytest.raises(ValueError, match="finite"):
        sched.step(progress=float("nan"))


def test_state_dict_round_trip_through_weights_only_load():
    adamw, muon = _optimizers()
    sched = LRSchedule(
        [adamw, muon], "wsd", total_iters=40, warmup_iters=4, momentum_warmup_iters=20
    )
    for _ in range(7):
        sched.step()
    buf = io.BytesIO()
    torch.save({"s": sched.state_dict(), "a": adamw.state_dict(), "m": muon.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    # A fresh process: same construction from config, then the checkpoint loaded on top.
    adamw2, muon2 = _optimizers()
    sched2 = LRSchedule(
        [adamw2, muon2], "wsd", total_iters=40, warmup_iters=4, momentum_warmup_iters=20
    )
    adamw2.load_state_dict(saved["a"])
    muon2.load_state_dict(saved["m"])
    sched2.load_state_dict(saved["s"])
    assert sched2.state_dict() == sched.state_dict()
    for _ in range(40):
        assert sched2.step() == sched.step()
        for g, h in zip(
            (*adamw.param_groups, *muon.param_groups),
            (*adamw2.param_groups, *muon2.param_groups),
            strict=True,
        ):
            assert (g["lr"], g.get("momentum")) == (h["lr"], h.get("momentum"))


def test_construction_after_optimizer_resume_keeps_base_lrs():
    adamw, _ = _optimizers()
    sched = LRSchedule(adamw, "cosine", total_iters=10, warmup_iters=2)
    for _ in range(4):
        sched.step()
    adamw2 = AdamW([{"params": [torch.nn.Parameter(torch.zeros(4))]} for _ in range(3)])
    adamw2.load_state_dict(adamw.state_dict())  # groups now hold scheduled lrs *and* base_lr
    sched2 = LRSchedule(adamw2, "cosine", total_iters=10, warmup_iters=2)
    sched2.load_state_dict(sched.state_dict())
    assert [g["lr"] for g in adamw2.param_groups] == [g["lr"] for g in adamw.param_groups]


def test_rejects_bad_settings():
    adamw, _ = _optimizers()
    with pytest.raises(ValueError, match="valid kinds: cosine, wsd"):
        LRSchedule(adamw, "linear", total_iters=10)
    assert set(SCHEDULE_KINDS) == {"cosine", "wsd"}
    for kwargs in (
        dict(total_iters=5, warmup_iters=6),
        dict(total_iters=5, decay_fraction=1.5),
        dict(total_iters=5, min_lr_ratio=-0.1),
        dict(total_iters=5, momentum_start=1.0),
    ):
        with pytest.raises(ValueError):
            LRSchedule(adamw, "wsd", **kwargs)


def test_missing_base_lr_is_a_clear_error():
    adamw, _ = _optimizers()
    sched = LRSchedule(adamw, "cosine", total_iters=10)
    del adamw.param_groups[1]["base_lr"]  # what loading a pre-schedule optimizer state does
    with pytest.raises(ValueError, match="'head' has no base_lr"):
        sched.step()
