"""`LRSchedule`: one schedule drives every param group of one or more optimizers.

Each param group keeps its own base learning rate (`group["base_lr"]`, taken from its `lr` when
the schedule is built), so roles keep their own lrs: at every step

    group["lr"] = group["base_lr"] · factor

where `factor` is the schedule's shape with peak 1 and floor `min_lr_ratio`, from a table of kinds:

    "cosine"   cosine_lr(t, 1, min_lr_ratio, warmup_iters, total_iters)
    "wsd"      wsd_lr(t, 1, min_lr_ratio, warmup_iters, decay_fraction·total_iters, total_iters)

Momentum warmup (Muon): every group that has a "momentum" entry keeps it as `base_momentum` and
gets momentum_start + (base_momentum − momentum_start)·min(1, t/momentum_warmup_iters), so the
momentum rises linearly (e.g. 0.85 → 0.95) over the first steps, then stays at its base.

Wall-clock fitting: `step(progress=f)` with f = elapsed_seconds / budget_seconds places the shape by
that fraction instead of by t/total_iters: factor = ramp(t) · shape(f over a unit-length run), where
ramp(t) = min(1, t/warmup_iters) keeps the warmup counted in steps (its length must not depend on
how many steps the budget turns out to hold). A time-limited WSD run so always finishes its decay:
the decay starts when f ≥ 1 − decay_fraction and reaches the floor at f = 1.

Resuming: a step-based schedule is a pure function of t and resumes bit-exactly from
`state_dict()`. A time-fitted one is a function of the clock: the lr of each step depends on how
long the steps took, so a resumed (or repeated) run is not bit-exact, only the same in shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tinylm.optim.schedule import cosine_lr, wsd_lr

__all__ = ["SCHEDULE_KINDS", "LRSchedule"]


class HasParamGroups(Protocol):
    param_groups: list[dict[str, Any]]


# kind -> shape(position, warmup, total, schedule) with peak 1 and floor schedule.min_lr_ratio.
SCHEDULE_KINDS: dict[str, Callable[[float, float, float, LRSchedule], float]] = {
    "cosine": lambda t, warmup, total, s: cosine_lr(t, 1.0, s.min_lr_ratio, warmup, total),
    "wsd": lambda t, warmup, total, s: wsd_lr(
        t, 1.0, s.min_lr_ratio, warmup, s.decay_fraction * total, total
    ),
}


class LRSchedule:
    """Sets lr (and Muon momentum) on every param group; one `.step()` per optimizer step.

    After construction every group holds the values for t = 0; after n calls to `.step()`, those
    for t = n. `optimizers` is an optimizer, an `OptimizerSet`, or a sequence of them (anything
    with `param_groups`). `state_dict()` holds only plain numbers and strings.
    """

    def __init__(
        self,
        optimizers: HasParamGroups | Sequence[HasParamGroups],
        kind: str = "cosine",
        *,
        total_iters: int,
        warmup_iters: int = 0,
        min_lr_ratio: float = 0.1,
        decay_fraction: float = 0.2,
        momentum_warmup_iters: int = 0,
        momentum_start: float = 0.85,
    ) -> None:
        self.optimizers = list(optimizers) if isinstance(optimizers, Sequence) else [optimizers]
        self.kind, self.total_iters, self.warmup_iters = kind, total_iters, warmup_iters
        self.min_lr_ratio, self.decay_fraction = min_lr_ratio, decay_fraction
        self.momentum_warmup_iters, self.momentum_start = momentum_warmup_iters, momentum_start
        self._check()
        self.t = 0
        self.progress: float | None = None
        for group in self.param_groups:
            # setdefault: a group restored from a checkpoint already carries its base values.
            group.setdefault("base_lr", group["lr"])
            if "momentum" in group:
                group.setdefault("base_momentum", group["momentum"])
        self._apply()

    def _check(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(
                f"unknown schedule kind {self.kind!r}; valid kinds: {', '.join(SCHEDULE_KINDS)}"
            )
        if not 0 <= self.warmup_iters <= self.total_iters:
            raise ValueError(
                "need 0 <= warmup_iters <= total_iters, "
                f"got {self.warmup_iters}, {self.total_iters}"
            )
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in [0, 1], got {self.decay_fraction}")
        if self.min_lr_ratio < 0:
            raise ValueError(f"min_lr_ratio must be >= 0, got {self.min_lr_ratio}")
        if self.momentum_warmup_iters < 0 or not 0.0 <= self.momentum_start < 1.0:
            raise ValueError(
                "need momentum_warmup_iters >= 0 and 0 <= momentum_start < 1, got "
                f"{self.momentum_warmup_iters}, {self.momentum_start}"
            )

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    @property
    def factor(self) -> float:
        """The lr multiplier of the current position (peak 1, floor min_lr_ratio)."""
        shape = SCHEDULE_KINDS[self.kind]
        if self.progress is None:
            return shape(self.t, self.warmup_iters, self.total_iters, self)
        ramp = min(1.0, self.t / self.warmup_iters) if self.warmup_iters else 1.0
        return ramp * shape(self.progress, 0.0, 1.0, self)

    @property
    def momentum_factor(self) -> float:
        """How far the momentum warmup has got: 0 at t = 0, 1 from momentum_warmup_iters on."""
        if self.momentum_warmup_iters == 0:
            return 1.0
        return min(1.0, self.t / self.momentum_warmup_iters)

    def step(self, progress: float | None = None) -> float:
        """Advance one step; `progress` (elapsed/budget, clamped to [0, 1]) fits it to time.

        Returns the new factor.
        """
        if progress is not None:
            if not math.isfinite(progress):
                raise ValueError(f"progress must be a finite fraction, got {progress}")
            progress = min(max(float(progress), 0.0), 1.0)
        self.t += 1
        self.progress = progress
        return self._apply()

    def _apply(self) -> float:
        factor, mom = self.factor, self.momentum_factor
        for group in self.param_groups:
            if "base_lr" not in group:  # replaced by an optimizer state saved without a schedule
                raise ValueError(
                    f"param group {group.get('role', '?')!r} has no base_lr; load optimizer state "
                    "saved with an LRSchedule, or set group['base_lr'] before stepping"
                )
            group["lr"] = group["base_lr"] * factor
            if "base_momentum" in group:
                start, base = self.momentum_start, group["base_momentum"]
                group["momentum"] = base if mom >= 1.0 else start + (base - start) * mom
        return factor

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "t": self.t,
            "progress": self.progress,
            "total_iters": self.total_iters,
            "warmup_iters": self.warmup_iters,
            "min_lr_ratio": self.min_lr_ratio,
            "decay_fraction": self.decay_fraction,
            "momentum_warmup_iters": self.momentum_warmup_iters,
            "momentum_start": self.momentum_start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore position and settings, then set every group's lr/momentum for that position."""
        self.kind = str(state["kind"])
        self.t = int(state["t"])
        self.progress = None if state["progress"] is None else float(state["progress"])
        self.total_iters, self.warmup_iters = int(state["total_iters"]), int(state["warmup_iters"])
        self.min_lr_ratio = float(state["min_lr_ratio"])
        self.decay_fraction = float(state["decay_fraction"])
        self.momentum_warmup_iters = int(state["momentum_warmup_iters"])
        self.momentum_start = float(state["momentum_start"])
        self._check()
        self._apply()
