"""Cadence: when the loop logs, evaluates, checkpoints and stops, checked on arbitrary intervals.

The oracle is a run simulated step by step against the rules as a person states them, in sets:
an uninterrupted run logs at the multiples of log_interval and at its end step, evaluates at the
multiples of eval.interval and at max_steps (not at a stop_at end), checkpoints at the multiples
of checkpoint_interval and at its end step; an interruption at step k adds a log line and a
checkpoint at k, an evaluation too when it is the time budget (not a signal), and ends the loop.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.train.trainer import Cadence

intervals = st.integers(1, 12)


def _multiples(interval: int, start: int, end: int) -> set[int]:
    return {s for s in range(start + 1, end + 1) if s % interval == 0}


def _simulate(cadence: Cadence, start: int, interrupt_at: int | None, signalled: bool):
    """Run the loop as the Trainer does; returns the steps of each action and how it ended."""
    done = {"log": set(), "eval": set(), "checkpoint": set(), "plot": set(), "read": set()}
    step, interrupted = start, False
    while step < cadence.end_step:
        step += 1
        interrupted = step == interrupt_at
        now = cadence.at(step, interrupted, signalled and interrupted)
        for name, flag in (("log", now.log), ("eval", now.eval), ("checkpoint", now.checkpoint)):
            if flag:
                done[name].add(step)
        if now.plot:
            done["plot"].add(step)
        if now.read_loss:
            done["read"].add(step)
        assert now.report == (now.log or now.eval)
        if now.stop:
            break
    return done, step, cadence.end_reason(step, interrupted, signalled and interrupted)


@settings(max_examples=400, deadline=None)
@given(
    log=intervals,
    ev=intervals,
    ckpt=intervals,
    max_steps=st.integers(1, 60),
    stop_at=st.none() | st.integers(1, 70),
    start=st.integers(0, 60),
)
def test_an_uninterrupted_run(log, ev, ckpt, max_steps, stop_at, start):
    cadence = Cadence.of(
        log_interval=log,
        eval_interval=ev,
        checkpoint_interval=ckpt,
        max_steps=max_steps,
        stop_at=stop_at,
    )
    end = max_steps if stop_at is None else min(stop_at, max_steps)
    assert cadence.end_step == end
    done, last, reason = _simulate(cadence, start, None, False)
    if start >= end:  # nothing to do: no step, no action
        assert last == start and not any(done.values())
    else:
        assert last == end
        tail = {end}
        assert done["log"] == _multiples(log, start, end) | tail
        assert done["checkpoint"] == _multiples(ckpt, start, end) | tail
        assert done["plot"] == done["checkpoint"]
        assert done["eval"] == _multiples(ev, start, end) | (tail if end == max_steps else set())
        assert done["read"] == done["log"] | done["eval"] | done["checkpoint"]
    reached_stop_at = stop_at is not None and last == stop_at and last < max_steps
    assert reason == ("stop_at" if reached_stop_at else "finished")


@settings(max_examples=400, deadline=None)
@given(
    log=intervals,
    ev=intervals,
    ckpt=intervals,
    max_steps=st.integers(1, 60),
    stop_at=st.none() | st.integers(1, 70),
    at=st.integers(1, 60),
    signalled=st.booleans(),
)
def test_an_interrupted_run(log, ev, ckpt, max_steps, stop_at, at, signalled):
    cadence = Cadence.of(
        log_interval=log,
        eval_interval=ev,
        checkpoint_interval=ckpt,
        max_steps=max_steps,
        stop_at=stop_at,
    )
    end = cadence.end_step
    done, last, reason = _simulate(cadence, 0, at, signalled)
    if at > end:  # the run ended first: as if nothing happened
        assert last == end and reason in ("finished", "stop_at")
        return
    assert last == at
    assert at in done["log"] and at in done["checkpoint"]
    assert at not in done["plot"]  # the curve is drawn once after the loop
    periodic = at % ev == 0 or (at == end == max_steps)
    assert (at in done["eval"]) == (periodic or not signalled)  # a spent budget evaluates
    assert done["log"] - {at} == _multiples(log, 0, at - 1)
    assert done["checkpoint"] - {at} == _multiples(ckpt, 0, at - 1)
    if at == end and end < max_steps:
        assert reason == "stop_at"  # reaching stop_at wins over the interruption there
    else:
        assert reason == ("interrupted" if signalled else "time budget")


@given(log=intervals, step=st.integers(0, 200))
def test_ddp_ranks_agree_on_stopping_at_log_steps_only(log, step):
    cadence = Cadence.of(log_interval=log, eval_interval=1, checkpoint_interval=1, max_steps=9)
    assert cadence.agrees_on_stop(step) == (step % log == 0)


def test_a_checkpoint_between_reports_reads_the_loss_without_reporting():
    cadence = Cadence.of(log_interval=10, eval_interval=50, checkpoint_interval=4, max_steps=100)
    now = cadence.at(8)
    assert now.checkpoint and now.plot and now.read_loss
    assert not now.report and not now.stop
    quiet = cadence.at(7)
    assert not (quiet.read_loss or quiet.checkpoint or quiet.stop)
