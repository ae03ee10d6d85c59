"""When a run logs, evaluates, checkpoints and stops: a pure function of the step.

    log         every train.log_interval steps, at the end step, and when interrupted
    evaluate    every eval.interval steps, at train.max_steps, and when the time budget is spent
                (a planned end: the run is judged as if finished); not at a stop_at end step or
                on a signal (the resumed run evaluates when it gets there)
    checkpoint  every run.checkpoint_interval steps, at the end step, and when interrupted
    plot        with every checkpoint of a run that goes on or ends at its end step (an
                interrupted run draws its curve once, after the loop)
    stop        at the end step (min(max_steps, stop_at)) or when interrupted

"Interrupted" is a signal or the time budget; under DDP the ranks agree on it only at
log_interval steps (`agrees_on_stop`), so every rank stops at the same step with one all-reduce
per interval rather than one per step. Nothing here reads a clock or a tensor: the loop asks,
the cadence answers, and the tests check every rule on arbitrary intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Actions", "Cadence"]


@dataclass(frozen=True)
class Actions:
    """What the loop does after one step."""

    log: bool  # a train-loss line (metrics.jsonl, progress)
    eval: bool  # a held-out evaluation (its val_loss joins the metrics line)
    checkpoint: bool
    plot: bool  # redraw loss.png after the checkpoint
    stop: bool  # leave the loop after this step

    @property
    def report(self) -> bool:
        """A metrics.jsonl line is written at this step (a log or an eval)."""
        return self.log or self.eval

    @property
    def read_loss(self) -> bool:
        """The mean loss must reach the host (to report it, or to check it before a checkpoint)."""
        return self.report or self.checkpoint


@dataclass(frozen=True)
class Cadence:
    log_interval: int
    eval_interval: int
    checkpoint_interval: int
    max_steps: int  # where the schedule ends (train.max_steps)
    end_step: int  # where this invocation ends: min(max_steps, stop_at)

    @classmethod
    def of(
        cls,
        *,
        log_interval: int,
        eval_interval: int,
        checkpoint_interval: int,
        max_steps: int,
        stop_at: int | None = None,
    ) -> Cadence:
        end_step = max_steps if stop_at is None else min(max_steps, stop_at)
        return cls(log_interval, eval_interval, checkpoint_interval, max_steps, end_step)

    def at(self, step: int, interrupted: bool = False, signalled: bool = False) -> Actions:
        """The actions after `step` (the count of steps done); `interrupted`: a signal or the
        time budget asks to stop, `signalled`: it was a signal."""
        is_last = step == self.end_step
        budget_spent = interrupted and not signalled
        checkpoint = step % self.checkpoint_interval == 0 or is_last or interrupted
        return Actions(
            log=step % self.log_interval == 0 or is_last or interrupted,
            eval=(
                step % self.eval_interval == 0
                or (is_last and self.end_step == self.max_steps)
                or budget_spent
            ),
            checkpoint=checkpoint,
            plot=checkpoint and not interrupted,
            stop=is_last or interrupted,
        )

    def agrees_on_stop(self, step: int) -> bool:
        """Whether DDP ranks compare their stop requests after `step` (one all-reduce)."""
        return step % self.log_interval == 0

    def end_reason(self, step: int, interrupted: bool = False, signalled: bool = False) -> str:
        """RunResult.stopped for a run that left the loop after `step`: "stop_at" when it
        reached a stop_at before max_steps (even if interrupted there), else "interrupted" (a
        signal), "time budget", or "finished"."""
        if step == self.end_step and self.end_step < self.max_steps:
            return "stop_at"
        if interrupted:
            return "interrupted" if signalled else "time budget"
        return "finished"
