"""The divergence guard: stop a run, before anything is written, once its loss goes bad.

Two ways a run goes bad: a loss (or grad norm) that is NaN or infinite, checked wherever a value
reaches the host; and a finite blow-up, a train loss above ln(vocab_size) + train.diverge_margin
(worse than the uniform guess an untrained model starts from) at train.diverge_patience log
checks in a row. Both raise TrainingDiverged naming the step and what the run keeps, so the last
good checkpoint stays the newest one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from tinylm.train.errors import TrainingDiverged

__all__ = ["DivergenceGuard"]


class DivergenceGuard:
    def __init__(
        self, vocab_size: int, margin: float, patience: int, kept: Callable[[], str]
    ) -> None:
        """`margin` 0 turns the blow-up check off; `kept()` says what a stop leaves behind."""
        self.blowup_line = math.log(vocab_size) + margin if margin > 0 else math.inf
        self.patience, self.kept = patience, kept
        self.above_count = 0  # consecutive log checks with the loss above the blow-up line

    def check_finite(self, value: float, step: int, what: str = "loss") -> None:
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"{what} became {value} at step {step}; stopped ({self.kept()}). "
                "Try a lower --optim.lr or --optim.grad_clip"
            )

    def check_blowup(self, train_loss: float, step: int) -> None:
        """Called at log steps, where the loss is already on the host (no extra sync)."""
        self.above_count = self.above_count + 1 if train_loss > self.blowup_line else 0
        if self.above_count >= self.patience:
            raise TrainingDiverged(
                f"training diverged: train loss {train_loss:.4g} at step {step} has been "
                f"above {self.blowup_line:.2f} (ln vocab_size + train.diverge_margin) for "
                f"{self.above_count} log steps; stopped ({self.kept()}). Try a lower --optim.lr"
            )
