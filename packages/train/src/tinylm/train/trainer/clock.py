"""A run's clock: wall-clock seconds continued across resumes, and time per phase.

`wallclock()` counts the training loop only (with its evals and checkpoints), not data
preparation, and goes on from the checkpoint's value when a run is resumed, so metrics.jsonl
reads like one unbroken run. `timer("data")` etc. add up each phase for RunResult.timings.
"""

from __future__ import annotations

import time

from tinylm.train.runtime import Timer

__all__ = ["RunClock"]


class RunClock:
    def __init__(self, offset: float = 0.0, setup_start: float | None = None) -> None:
        """`offset`: the wall-clock a resumed run had reached; `setup_start`: when the command
        began (perf_counter), for the "total" timing."""
        self.offset = offset
        self.setup_start = time.perf_counter() if setup_start is None else setup_start
        self.started = self.setup_start
        self.timer = Timer()

    def start(self) -> None:
        """The loop begins: wall-clock counts from here."""
        self.started = time.perf_counter()

    def wallclock(self) -> float:
        return self.offset + time.perf_counter() - self.started

    def timings(self) -> dict[str, float]:
        """Seconds per phase, the loop ("train") and the whole command ("total")."""
        timings = {k: round(v, 4) for k, v in self.timer.totals.items()}
        timings["train"] = round(time.perf_counter() - self.started, 4)
        timings["total"] = round(time.perf_counter() - self.setup_start, 4)
        return timings
