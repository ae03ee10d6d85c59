"""Where a run's metrics go: metrics.jsonl, the loss curve, and Weights & Biases when asked.

Rank 0 alone writes; the other ranks' sinks are disabled and every call returns at once. The
records written so far are kept in memory to redraw loss.png at each checkpoint. A resumed run
first drops the lines logged after its checkpoint, so its log reads like an unbroken one. A run
that fails keeps what it has shown: a last {"event": "diverged" | "failed"} line and the curve.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tinylm.train.errors import RunFailed, TrainingDiverged, one_line
from tinylm.train.run.metrics import MetricsLog, init_wandb, plot_losses
from tinylm.train.runtime import Timer

__all__ = ["MetricsSink"]


class MetricsSink:
    def __init__(
        self,
        run_dir: Path,
        *,
        timer: Timer,
        title: str = "",
        baseline: float | None = None,
        enabled: bool = True,
    ) -> None:
        """`title` and `baseline` (the unigram entropy, dashed) go on the loss plot."""
        self.run_dir, self.timer, self.enabled = run_dir, timer, enabled
        self.title, self.baseline = title, baseline
        self.log = MetricsLog(run_dir / "metrics.jsonl")
        self.records: list[dict[str, Any]] = []
        self.wandb_run = None

    def resume_at(self, step: int) -> None:
        """Drop the lines written after `step` (those of a run that went on past its
        checkpoint before it was stopped)."""
        if self.enabled:
            self.log.truncate_after(step)

    def open(self, wandb: tuple[str, str, dict[str, Any]] | None = None) -> None:
        """Load the records so far; `wandb` = (project, run name, config) starts a W&B run."""
        if not self.enabled:
            return
        self.records = self.log.read()
        if wandb is not None:
            project, name, config = wandb
            self.wandb_run = init_wandb(project, name, config, self.run_dir)

    def write(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl line (and a W&B point at its step)."""
        if not self.enabled:
            return
        self.log.write(record)
        self.records.append(record)
        if self.wandb_run is not None:
            point = {k: v for k, v in record.items() if v is not None}
            self.wandb_run.log(point, step=record["step"])

    def plot(self) -> None:
        """Redraw loss.png from the records so far (cheap, but not free)."""
        if self.enabled:
            with self.timer("plot"):
                plot_losses(
                    self.records,
                    self.run_dir / "loss.png",
                    title=self.title or self.run_dir.name,
                    baseline=self.baseline,
                )

    @contextmanager
    def recording_failure(
        self, position: Callable[[], dict[str, Any]], kept: Callable[[], str]
    ) -> Iterator[None]:
        """Around the loop: on divergence or any failure, keep what the run has shown so far
        (see `failed`; `position()`: step, tokens, wallclock); an I/O error becomes RunFailed
        naming the step and what the run keeps (`kept()`: its last good checkpoint)."""
        try:
            yield
        except (RunFailed, OSError) as e:
            where = position()
            self.failed(e, where)
            if isinstance(e, OSError):
                raise RunFailed(
                    f"I/O error at step {where['step']}: {e.strerror or e}"
                    f"{f' ({e.filename})' if e.filename else ''}; {kept()}"
                ) from e
            raise

    def failed(self, error: BaseException, position: dict[str, Any]) -> None:
        """Record why the run ended early (`position`: step, tokens, wallclock), best effort:
        a disk that just failed may fail these writes too."""
        if not self.enabled:
            return
        event = "diverged" if isinstance(error, TrainingDiverged) else "failed"
        with contextlib.suppress(OSError):
            self.write({"event": event, **position, "reason": one_line(error)})
            self.plot()

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()
