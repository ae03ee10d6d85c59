"""Learning-rate formulas (written out in the optim README): warmup + cosine, warmup–stable–decay;
`CosineSchedule`."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["CosineSchedule", "cosine_lr", "wsd_lr"]


def cosine_lr(
    t: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_cycle_iters: int
) -> float:
    """Learning rate at step `t`.

    t < warmup:           t/warmup · max_lr
    warmup ≤ t ≤ cycle:   min + ½(1 + cos(π·(t−warmup)/(cycle−warmup)))·(max−min)
    t > cycle:            min_lr
    """
    if t < warmup_iters:
        return t / warmup_iters * max_lr
    if t > cosine_cycle_iters:
        return min_lr
    span = cosine_cycle_iters - warmup_iters
    if span <= 0:  # degenerate cycle (no decay phase): t == warmup == cycle
        return max_lr
    progress = (t - warmup_iters) / span
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def wsd_lr(
    t: float,
    max_lr: float,
    min_lr: float,
    warmup_iters: float,
    decay_iters: float,
    total_iters: float,
) -> float:
    """Warmup–stable–decay ("trapezoid") learning rate at step `t`.

    t < warmup:                      t/warmup · max_lr
    warmup ≤ t < total − decay:      max_lr                          (the stable plateau)
    total − decay ≤ t ≤ total:       max + (min − max)·(t − (total − decay))/decay   (linear decay)
    t > total:                       min_lr

    The rules are tried in that order, so warmup wins where it overlaps the decay. With
    `decay_iters == 0` there is no decay: max_lr up to and excluding `total`, min_lr from `total`
    on (the limit of the formula). Steps may be fractional (a position fitted to wall-clock time).
    """
    if t < warmup_iters:
        return t / warmup_iters * max_lr
    decay_start = total_iters - decay_iters
    if t < decay_start:
        return max_lr
    if t > total_iters or decay_iters <= 0:
        return min_lr
    # Written from the end of the decay, so t == total gives min_lr exactly even when
    # total − decay rounds to total (a subnormal decay found by hypothesis).
    return min_lr + (max_lr - min_lr) * (total_iters - t) / decay_iters


class CosineSchedule:
    """Drives an optimizer's lr with `cosine_lr`, one `.step()` per optimizer step.

    After construction every param group holds lr(0); after n calls to `.step()` it holds lr(n).
    A group with an `lr_scale` entry gets lr · lr_scale (e.g. a smaller lr for embeddings).
    `state_dict()` holds only plain numbers, so it checkpoints with `torch.save(weights_only=True)`.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_lr: float,
        min_lr: float,
        warmup_iters: int,
        cosine_cycle_iters: int,
    ) -> None:
        if warmup_iters < 0 or cosine_cycle_iters < warmup_iters:
            raise ValueError(
                "need 0 <= warmup_iters <= cosine_cycle_iters, "
                f"got {warmup_iters}, {cosine_cycle_iters}"
            )
        self.optimizer = optimizer
        self.max_lr, self.min_lr = max_lr, min_lr
        self.warmup_iters, self.cosine_cycle_iters = warmup_iters, cosine_cycle_iters
        self.t = 0
        self._apply()

    @property
    def lr(self) -> float:
        """The base learning rate for the current step (before any per-group `lr_scale`)."""
        return cosine_lr(
            self.t, self.max_lr, self.min_lr, self.warmup_iters, self.cosine_cycle_iters
        )

    def step(self) -> float:
        """Advance one step and set the new lr on the optimizer; returns it."""
        self.t += 1
        return self._apply()

    def _apply(self) -> float:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "max_lr": self.max_lr,
            "min_lr": self.min_lr,
            "warmup_iters": self.warmup_iters,
            "cosine_cycle_iters": self.cosine_cycle_iters,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = int(state["t"])
        self.max_lr, self.min_lr = float(state["max_lr"]), float(state["min_lr"])
        self.warmup_iters = int(state["warmup_iters"])
        self.cosine_cycle_iters = int(state["cosine_cycle_iters"])
        self._apply()
