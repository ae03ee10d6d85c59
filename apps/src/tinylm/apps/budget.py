"""Fitting a step-based schedule into a wall-clock budget.

The schedule (cosine or WSD) is defined in steps, so a time budget has to become a step count
before the run starts. A short calibration (the first `calibrate_steps` steps of the real run,
all inside the linear warmup, so they are the same whatever the total turns out to be) measures:

    step_seconds    steady-state seconds per optimizer step (log records after the first one)
    warmup_seconds  one-off cost at the start of a train() call (torch.compile, CUDA init)
    setup_seconds   time a train() call spends outside train's own clock (model build, data)
    checkpoint_seconds  one checkpoint + loss-curve refresh

and estimates an evaluation as `eval.iters` forward passes (a third of a training step each,
×1.5 for safety, plus one compile when compiling). `fit_steps` then finds the largest step count
whose predicted time fits. `train.max_seconds` stays as the hard stop, set so that even a stop
at the last moment (one more step, an eval, a checkpoint, the sample) ends inside the budget.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "BudgetPlan",
    "describe_plan",
    "fit_steps",
    "measure_speed",
    "plan_budget",
    "uncalibrated_max_seconds",
]

SAMPLE_SECONDS_PER_TOKEN = 0.02  # generous: decoding is latency-bound, ~ms/token on a GPU


@dataclass(frozen=True)
class Speed:
    step_seconds: float
    warmup_seconds: float


@dataclass(frozen=True)
class BudgetPlan:
    budget_seconds: float
    calibrate_steps: int
    step_seconds: float
    warmup_seconds: float
    setup_seconds: float
    eval_seconds: float
    checkpoint_seconds: float
    tail_seconds: float
    max_steps: int  # train.max_steps = optim.cosine_steps of the main run
    max_seconds: float  # train.max_seconds of the main run (train's clock): the hard stop
    predicted_seconds: float  # predicted whole training stage at max_steps
    used_seconds: float = 0.0  # budget spent when planning (the budget's clock)
    clock_seconds: float = 0.0  # train's clock at that moment (loops only, no setup)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_speed(records: list[dict[str, Any]]) -> Speed:
    """Steady-state step time and start-up cost from metrics.jsonl records of a short run."""
    rows = sorted((r for r in records if r.get("step", 0) > 0), key=lambda r: r["step"])
    if not rows:
        raise ValueError("calibration logged no steps; raise app.calibrate_steps")
    first, last = rows[0], rows[-1]
    if last["step"] > first["step"]:
        step = (last["wallclock"] - first["wallclock"]) / (last["step"] - first["step"])
    else:  # one record only: the start-up cost is folded into the step time (pessimistic)
        step = last["wallclock"] / last["step"]
    step = max(step, 1e-6)
    return Speed(step, max(0.0, first["wallclock"] - first["step"] * step))


def _events(start: int, end: int, interval: int) -> int:
    """How many of steps start+1..end are multiples of `interval`, plus one at `end` if not."""
    return end // interval - start // interval + (0 if end % interval == 0 else 1)


def fit_steps(
    available: float,
    *,
    start_step: int,
    step_seconds: float,
    fixed_seconds: float,
    eval_seconds: float,
    eval_interval: int,
    checkpoint_seconds: float,
    checkpoint_interval: int,
) -> tuple[int, float]:
    """Largest end step > start_step whose predicted time (from start_step) fits `available`.

    Returns (steps, predicted seconds); at least start_step + 1 even when nothing fits.
    """

    def cost(end: int) -> float:
        return (
            fixed_seconds
            + (end - start_step) * step_seconds
            + _events(start_step, end, eval_interval) * eval_seconds
            + _events(start_step, end, checkpoint_interval) * checkpoint_seconds
        )

    lo = start_step + 1
    hi = start_step + 1 + max(0, math.ceil(available / step_seconds))
    if cost(lo) > available:
        return lo, cost(lo)  # the caller decides: plan_budget then plans no further step
    while lo < hi:  # cost is increasing in end: binary search for the last end that fits
        mid = (lo + hi + 1) // 2
        if cost(mid) <= available:
            lo = mid
        else:
            hi = mid - 1
    return lo, cost(lo)


def plan_budget(
    *,
    budget_seconds: float,
    margin: float,
    used_seconds: float,
    clock_seconds: float,
    calibrate_steps: int,
    records: list[dict[str, Any]],
    timings: dict[str, float],
    setup_seconds: float,
    config,
) -> BudgetPlan:
    """Plan the main run after calibration (see the module doc).

    `used_seconds` is the budget spent so far (calibration included), `clock_seconds` train's
    clock at the calibration checkpoint (the main run resumes from it), `config` the TrainConfig.
    """
    speed = measure_speed(records)
    eval_seconds = _eval_seconds(speed, config.train, config.eval)
    # Eval mode recompiles: the first evaluation pays the start-up cost again.
    first_eval_extra = speed.warmup_seconds if config.compute.compile else 0.0
    checkpoint_seconds = timings.get("checkpoint", 0.0) + timings.get("plot", 0.0) / 2
    tail = checkpoint_seconds + SAMPLE_SECONDS_PER_TOKEN * config.sample.max_new_tokens
    # Budget left for the main run's loop: minus its own setup and its tail after the last step.
    remaining = budget_seconds - used_seconds - setup_seconds - tail
    steps, loop_seconds = fit_steps(
        remaining - margin * budget_seconds,
        start_step=calibrate_steps,
        step_seconds=speed.step_seconds,
        fixed_seconds=speed.warmup_seconds + first_eval_extra,
        eval_seconds=eval_seconds,
        eval_interval=config.eval.interval,
        checkpoint_seconds=checkpoint_seconds,
        checkpoint_interval=config.run.checkpoint_interval,
    )
    # Hard stop: a stop right at max_seconds still finishes one step, maybe an eval, a checkpoint;
    # half the margin stays free for a run that slows down after calibration.
    last_moment = (
        speed.step_seconds + eval_seconds + checkpoint_seconds + margin * budget_seconds / 2
    )
    max_seconds = max(0.0, clock_seconds + remaining - last_moment)
    fits = loop_seconds <= remaining - margin * budget_seconds and max_seconds > clock_seconds
    if not fits:
        # Not one more step fits (a slow calibration): the plan says so itself, so no config
        # written from it can disagree: the run ends at the calibration checkpoint.
        steps, loop_seconds, max_seconds = calibrate_steps, 0.0, clock_seconds
    return BudgetPlan(
        budget_seconds=budget_seconds,
        calibrate_steps=calibrate_steps,
        step_seconds=speed.step_seconds,
        warmup_seconds=speed.warmup_seconds,
        setup_seconds=setup_seconds,
        eval_seconds=eval_seconds,
        checkpoint_seconds=checkpoint_seconds,
        tail_seconds=tail,
        max_steps=steps,
        max_seconds=max_seconds,
        predicted_seconds=used_seconds + setup_seconds + loop_seconds + tail,
        used_seconds=used_seconds,
        clock_seconds=clock_seconds,
    )


def _eval_seconds(speed: Speed, tc, ec) -> float:
    """One evaluation: `eval.iters` forward passes of an eval batch, each a third of a training
    step's work per sequence, ×1.5 for safety ([train] `tc`, [eval] `ec`)."""
    eval_batch = ec.batch_size or tc.batch_size
    return 1.5 * ec.iters * speed.step_seconds * eval_batch / (3 * tc.batch_size * tc.grad_accum)


def uncalibrated_max_seconds(budget_seconds: float, margin: float, config) -> float:
    """Hard stop for a budgeted run without calibration: keep a reserve for setup and the tail."""
    tail = SAMPLE_SECONDS_PER_TOKEN * config.sample.max_new_tokens
    reserve = max(margin * budget_seconds, min(max(0.1 * budget_seconds, 2.0), 300.0))
    return max(0.0, budget_seconds - reserve - tail)


def describe_plan(plan: dict[str, Any]) -> str:
    """One line stating the plan on one clock, the budget's (seconds since training started):
    steps planned, when they are predicted to end, and where the hard stop sits."""
    if plan["max_steps"] <= plan["calibrate_steps"]:
        return (
            f"budget: {plan['step_seconds'] * 1e3:.1f} ms/step measured; no further step fits in "
            f"{plan['budget_seconds']:.0f} s, the run ends at the calibration checkpoint "
            f"(step {plan['calibrate_steps']})"
        )
    # max_seconds is on train's clock, which counts loops only: on the budget's clock the stop
    # comes after what was used so far and the main run's setup, plus the rest of that loop.
    hard_stop = (
        plan["used_seconds"] + plan["setup_seconds"] + plan["max_seconds"] - plan["clock_seconds"]
    )
    return (
        f"budget: {plan['step_seconds'] * 1e3:.1f} ms/step measured -> {plan['max_steps']:,} "
        f"steps (the schedule ends there), predicted to end at {plan['predicted_seconds']:.0f} s "
        f"of the {plan['budget_seconds']:.0f} s budget; hard stop at {hard_stop:.0f} s"
    )
