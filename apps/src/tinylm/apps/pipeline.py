"""One end-to-end run: tokenizer → .npy → training (+ eval, checkpoints, curve, sample) → report.

    run_pipeline(app, config, "runs/tinystories")            # a fresh run
    run_pipeline(app, config, "runs/tinystories", resume=True)

The run directory `out` is train's run directory too (run.root/run.name point at it), so it holds
config.toml, metrics.jsonl, loss.png, sample.txt and checkpoints/, plus this package's run.toml
(the full config with [app], reloaded by --resume), data/ (tokenizer and token files, cached),
budget.json (budgeted runs) and report.md.

A budgeted run (app.budget_hours > 0) is timed by this module from the moment training starts
until train() returns for the last time: calibration, torch.compile, training steps, periodic and
final evaluation, checkpoints, the loss curve and the sample all count. Tokenizer training and
encoding are preprocessing: timed and reported separately, not counted.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinylm.apps.budget import describe_plan, plan_budget, uncalibrated_max_seconds
from tinylm.apps.bundled import split_bundled
from tinylm.apps.config import AppConfig, save_run_config
from tinylm.apps.report import write_report
from tinylm.train import (
    MetricsLog,
    PreparedData,
    RunResult,
    TrainConfig,
    atomic_write,
    check_resume,
    checkpoint_step,
    find_checkpoints,
    prepare_text_files,
    train,
    write_sample,
)

__all__ = ["PipelineResult", "run_pipeline"]


@dataclass
class PipelineResult:
    out: Path
    config: TrainConfig
    prepared: PreparedData
    result: RunResult
    report: Path
    budget: dict[str, Any] | None = None
    preprocess_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def run_pipeline(
    app: AppConfig,
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    log=print,
) -> PipelineResult:
    out = Path(out)
    config = config.replace(run={"root": str(out.parent), "name": out.name})
    check_resume(out, resume, flag="--out")  # train's rule; train() checks again under its lock
    app = _texts(app, config, out, log)
    prepared, config, preprocess_seconds = _prepare(app, config, out, progress, log)
    save_run_config(app, config, out / "run.toml")

    budget = None
    if app.budget_seconds > 0:
        result, config, budget = _train_on_budget(app, config, out, resume, progress, log)
    else:
        result = train(config, resume=resume, progress=progress, log=log)
    if result.sample is None and result.model is not None and config.sample.max_new_tokens > 0:
        # Stopped by a signal, or at the calibration when no further step fits: train() samples
        # only at a planned end (schedule finished, or its time budget spent).
        # This sample comes after the budget and is not counted against it.
        result.sample = write_sample(
            out / "sample.txt", result.model, prepared.tokenizer, config.sample
        )
    report = write_report(
        out,
        app=app,
        model=config.model,
        compute=config.compute,
        optim=config.optim,
        train=config.train,
        evaluation=config.eval,
        sample=config.sample,
        result=result,
        prepared=prepared,
        preprocess_seconds=preprocess_seconds,
        budget=budget,
    )
    log(f"report: {report}")
    return PipelineResult(out, config, prepared, result, report, budget, preprocess_seconds)


def _texts(app: AppConfig, config: TrainConfig, out: Path, log) -> AppConfig:
    """`app` with its train and val texts, both existing files (the bundled corpus split into
    the run's data/ when none is named)."""
    if app.bundled and not (app.train_text or app.val_text):
        eot = config.data.special_tokens[0] if config.data.special_tokens else "<|endoftext|>"
        app = split_bundled(app, out / "data" / "bundled", eot, log=log)
    for value, flag in ((app.train_text, "--train-text"), (app.val_text, "--val-text")):
        if not value:
            raise ValueError(f"{flag} is required (or set app.{flag[2:].replace('-', '_')})")
        if not Path(value).is_file():
            raise FileNotFoundError(f"text file not found: {value} ({flag})")
    return app


def _prepare(
    app: AppConfig, config: TrainConfig, out: Path, progress: bool, log
) -> tuple[PreparedData, TrainConfig, float]:
    """Tokenizer and token files in the run's own data/ (train's two-file preparation, cached);
    the config that reads them, and the seconds it took."""
    start = time.perf_counter()
    prepared = prepare_text_files(
        app.train_text, app.val_text, config.data, out / "data", progress=progress, log=log
    )
    preprocess_seconds = time.perf_counter() - start
    config = config.replace(
        data={
            "train_tokens": str(prepared.train_path),
            "val_tokens": str(prepared.val_path),
            "tokenizer_dir": str(prepared.tokenizer_dir),
        }
    )
    return prepared, config, preprocess_seconds


def _train_on_budget(
    app: AppConfig, config: TrainConfig, out: Path, resume: bool, progress: bool, log
) -> tuple[RunResult, TrainConfig, dict[str, Any]]:
    """Train within app.budget_seconds (see the module doc); returns (result, config, record)."""
    budget = app.budget_seconds
    state_path = out / "budget.json"
    start = time.perf_counter()
    if resume:
        state = _read_json(state_path)
        result, config, plan, used_before = _resume_on_budget(
            app, config, out, state, progress, log
        )
    elif 0 < app.calibrate_steps < config.train.max_steps:
        used_before = 0.0
        result, config, plan = _calibrate_then_train(app, config, out, start, progress, log)
    else:
        used_before, plan = 0.0, None
        stop = uncalibrated_max_seconds(budget, app.budget_margin, config)
        config = config.replace(train={"max_seconds": _hard_stop(config, stop)})
        result = train(config, progress=progress, log=log)

    used = used_before + time.perf_counter() - start
    record = {
        "budget_seconds": budget,
        "used_seconds": used,
        "clock_seconds": result.wallclock,
        "respected": used <= budget,
        "stopped": result.stopped,
        "plan": plan,
    }
    _write_json(state_path, record)
    verdict = "respected" if record["respected"] else "EXCEEDED"
    log(f"budget: {used:.1f} s of {budget:.1f} s used ({100 * used / budget:.1f}%): {verdict}")
    return result, config, record


def _ceiling(config: TrainConfig) -> float:
    """The user's own train.max_seconds (inf when unset): every hard stop stays under it."""
    return config.train.max_seconds or float("inf")


def _hard_stop(config: TrainConfig, seconds: float) -> float:
    return max(1e-3, min(_ceiling(config), seconds))


def _resume_on_budget(
    app: AppConfig, config: TrainConfig, out: Path, state: dict[str, Any], progress: bool, log
) -> tuple[RunResult, TrainConfig, dict[str, Any] | None, float]:
    """Resume with what is left of the budget: (result, config, plan, seconds used before)."""
    budget, margin = app.budget_seconds, app.budget_margin
    # Spent so far: what was recorded, plus train's clock beyond the last record (a crash).
    step = checkpoint_step(find_checkpoints(out)[-1])
    clock = max(
        (r["wallclock"] for r in MetricsLog(out / "metrics.jsonl").read() if r["step"] <= step),
        default=0.0,
    )
    used_before = state.get("used_seconds", 0.0) + max(0.0, clock - state.get("clock_seconds", 0.0))
    left = budget - used_before
    if left <= 0:
        raise ValueError(
            f"the time budget of {budget:.0f} s is already spent ({used_before:.0f} s)"
        )
    plan = state.get("plan")
    reserve = (
        plan["setup_seconds"]
        + plan["tail_seconds"]
        + plan["step_seconds"]
        + plan["eval_seconds"]
        + plan["checkpoint_seconds"]
        + margin * budget / 2
        if plan
        else budget - uncalibrated_max_seconds(budget, margin, config)
    )
    config = config.replace(train={"max_seconds": _hard_stop(config, clock + left - reserve)})
    result = train(config, resume=True, progress=progress, log=log)
    return result, config, plan, used_before


def _calibrate_then_train(
    app: AppConfig, config: TrainConfig, out: Path, start: float, progress: bool, log
) -> tuple[RunResult, TrainConfig, dict[str, Any] | None]:
    """Time the first app.calibrate_steps steps, fit the schedule to the budget from them, then
    train the rest: (result, config trained, plan; None when the calibration did not finish)."""
    budget, calibrate = app.budget_seconds, app.calibrate_steps
    if calibrate > config.optim.warmup_steps:
        warnings.warn(
            f"app.calibrate_steps ({calibrate}) > optim.warmup_steps "
            f"({config.optim.warmup_steps}): the calibration steps' learning rates depend on "
            "a guessed schedule length",
            stacklevel=3,
        )
    stop = uncalibrated_max_seconds(budget, app.budget_margin, config)
    first = config.replace(train={"max_seconds": _hard_stop(config, stop)})
    log(f"budget: timing the first {calibrate} steps to fit the schedule into {budget:.0f} s")
    result = train(first, stop_at=calibrate, progress=progress, log=log)
    elapsed = time.perf_counter() - start
    if result.stopped != "stop_at":
        return result, config, None
    plan, clock = _plan_from_calibration(app, config, out, result, elapsed)
    log(describe_plan(plan))
    # run.toml keeps the user's ceiling, so a --resume with a larger budget can use it.
    ceiling = {"max_seconds": 0.0 if math.isinf(_ceiling(config)) else _ceiling(config)}
    if plan["max_seconds"] <= clock:
        # Not even one more step fits: the calibration checkpoint is the final model. The
        # saved configs say so (max_steps = the calibration's steps) and keep the schedule
        # the calibration ran with, so a later --resume continues that run, not a longer one.
        result.stopped = "time budget"
        ran = {"cosine_steps": config.optim.cosine_steps or config.train.max_steps}
        config = first.replace(train={"max_steps": calibrate}, optim=ran)
        config.save(out / "config.toml")
        save_run_config(app, config.replace(train=ceiling), out / "run.toml")
        return result, config, plan
    config = config.replace(
        train={
            "max_steps": plan["max_steps"],
            "max_seconds": _hard_stop(config, plan["max_seconds"]),
        },
        optim={"cosine_steps": plan["max_steps"]},
    )
    save_run_config(app, config.replace(train=ceiling), out / "run.toml")
    return train(config, resume=True, progress=progress, log=log), config, plan


def _plan_from_calibration(
    app: AppConfig, config: TrainConfig, out: Path, result: RunResult, elapsed: float
) -> tuple[dict[str, Any], float]:
    """The budget plan from the calibration's records (saved to budget.json at once, so a
    resume knows it), and train's clock at the calibration checkpoint."""
    records = MetricsLog(out / "metrics.jsonl").read()
    clock = max(r["wallclock"] for r in records)
    plan = plan_budget(
        budget_seconds=app.budget_seconds,
        margin=app.budget_margin,
        used_seconds=elapsed,
        clock_seconds=clock,
        calibrate_steps=app.calibrate_steps,
        records=records,
        timings=result.timings,
        setup_seconds=max(0.0, elapsed - result.wallclock),
        config=config,
    ).to_dict()
    _write_json(
        out / "budget.json", {"used_seconds": elapsed, "clock_seconds": clock, "plan": plan}
    )
    return plan, clock


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(value, indent=2))
