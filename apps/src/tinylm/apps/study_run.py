"""Running a study: one `train-lm` process per point, skipped when finished, resumed when cut short.

Each point is `<study dir>/<point name>`, an ordinary run directory, trained by the command that
`point_command` returns (and `study --print-commands` prints): absolute paths, runnable by hand or
by a scheduler. Its state is read back from what train-lm left there:

    done      the newest checkpoint is at train.max_steps (or its clock reached train.max_seconds)
    diverged  train-lm exited 1 on a non-finite loss (or logged {"event": "diverged"}): a result,
              kept in study.json with the step; never re-run
    oom       the batch did not fit (CUDA out of memory); larger batches are not tried
    partial   checkpoints exist but the run is not done: re-run with --resume
    new       nothing usable yet (a log without a checkpoint is discarded: it would be appended to)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tinylm.apps.study import Point, StudyPlan
from tinylm.train import (
    MetricsLog,
    TrainConfig,
    atomic_write,
    find_checkpoints,
    load_config,
    prepare_data,
    prepare_text_files,
    read_checkpoint,
)

__all__ = [
    "PointState",
    "point_command",
    "point_config",
    "point_overrides",
    "point_state",
    "prepare_study_data",
    "run_study",
    "train_lm_prefix",
]

FINAL = ("done", "diverged", "oom")
_STEP = re.compile(r"at step (\d+)")


@dataclass(frozen=True)
class PointState:
    status: str  # new | partial | done | diverged | oom | failed
    step: int | None = None
    message: str = ""


def train_lm_prefix() -> list[str]:
    """The `train-lm` of this environment as an absolute command (no uv needed to run it)."""
    script = Path(sys.executable).parent / "train-lm"
    return (
        [str(script)] if script.is_file() else [sys.executable, "-m", "tinylm.train.cli.train_lm"]
    )


def prepare_study_data(
    plan: StudyPlan, study_dir: Path, train_text: str = "", val_text: str = "", log=print
) -> dict[str, str]:
    """Prepare the tokens once for every point (cached in <study>/_data); their data overrides."""
    cache = (study_dir / "_data").resolve()
    if bool(train_text) != bool(val_text):
        raise ValueError("--train-text and --val-text go together")
    if train_text:
        data = plan.reference.data
        p = prepare_text_files(train_text, val_text, data, cache, progress=True, log=log)
        return {
            "data.train_tokens": str(p.train_path.resolve()),
            "data.val_tokens": str(p.val_path.resolve()),
            "data.tokenizer_dir": str(p.tokenizer_dir.resolve()),
        }
    if plan.scale != "cpu" and not plan.reference.data.train_tokens:
        raise ValueError(f"--scale {plan.scale} needs --train-text FILE --val-text FILE")
    prepare_data(plan.reference.data, cache, log=log)
    return {"data.cache_dir": str(cache)}


def point_overrides(
    plan: StudyPlan, study_dir: Path, point: Point, data: dict[str, str]
) -> dict[str, str]:
    """Shared (scale + user) overrides, then the data's, then the point's own (they win)."""
    run = {"run.root": str(study_dir.resolve()), "run.name": point.name}
    return plan.overrides | data | point.overrides | run


def point_config(plan: StudyPlan, study_dir: Path, point: Point, data: dict[str, str]):
    """The TrainConfig the point's command trains (as train-lm will read it)."""
    source = point.config or plan.config
    return load_config(source, point_overrides(plan, study_dir, point, data))


def point_command(
    plan: StudyPlan, study_dir: Path, point: Point, data: dict[str, str], resume: bool = False
) -> list[str]:
    """argv of the point's train-lm run: --config, --no-progress, every override, [--resume]."""
    cmd = [*train_lm_prefix(), "--config", str(point.config or plan.config), "--no-progress"]
    for key, value in point_overrides(plan, study_dir, point, data).items():
        cmd += [f"--{key}", value]
    return cmd + (["--resume"] if resume else [])


def point_state(config: TrainConfig) -> PointState:
    """Where the point in `config.run_dir` stands (see the module doc)."""
    run_dir = config.run_dir
    record = run_dir / "study.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("status") in ("diverged", "oom"):
            return PointState(saved["status"], saved.get("step"), saved.get("message", ""))
    for event in MetricsLog(run_dir / "metrics.jsonl").read():
        if event.get("event") == "diverged":
            return PointState("diverged", event.get("step"), event.get("message", ""))
    checkpoints = find_checkpoints(run_dir)
    if not checkpoints:
        return PointState("new")
    payload = read_checkpoint(checkpoints[-1])
    step, seconds = int(payload["iteration"]), float(payload.get("wallclock", 0.0))
    budget = config.train.max_seconds
    if step >= config.train.max_steps or (budget > 0 and seconds >= budget):
        return PointState("done", step)
    return PointState("partial", step)


def _outcome(code: int, config: TrainConfig, log_path: Path) -> PointState:
    """Classify a finished train-lm process by its exit status and its last lines."""
    text = log_path.read_text(errors="replace") if log_path.is_file() else ""
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    message = errors[-1][len("error: ") :] if errors else ""
    if code == 0:
        return point_state(config)
    if "out of memory" in text.lower() or "OutOfMemoryError" in text:
        return PointState("oom", None, message or "out of memory")
    if code == 1:
        diverged = point_state(config)
        if diverged.status == "diverged":
            return diverged
        found = _STEP.search(message)
        if "loss became" in message or "diverged" in message:
            return PointState("diverged", int(found.group(1)) if found else None, message)
    return PointState("failed", None, message or f"exit status {code} (see {log_path})")


def _launch(cmd: list[str], log_path: Path, env: dict[str, str]) -> int:
    """Run `cmd` with its output in `log_path`; a Ctrl-C lets train-lm checkpoint first."""
    with open(log_path, "a") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            return process.wait()
        except KeyboardInterrupt:  # the child got the SIGINT too and is writing its checkpoint
            process.wait()
            raise


def _devices() -> list[str]:
    """Visible CUDA devices (one point per device), or [] without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [d for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def run_study(
    plan: StudyPlan,
    study_dir: Path,
    data: dict[str, str],
    *,
    jobs: int = 1,
    log=print,
    progress: bool = False,
    launch: Callable[[list[str], Path, dict[str, str]], int] = _launch,
) -> dict[str, PointState]:
    """Run every point not finished yet (up to `jobs` at once); the state of each point.

    `progress` shows a bar over the points (elapsed, s/point, ETA); log lines print above it.
    """
    from tqdm.auto import tqdm

    study_dir.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(plan.points), unit="point", desc=plan.study, disable=not progress)
    say = log
    if progress:

        def say(message: str) -> None:
            bar.write(message, file=sys.stderr)

    runner = _Runner(plan, study_dir, data, jobs, say, bar.update, launch)
    with bar:
        if runner.jobs == 1:
            for i, point in enumerate(plan.points):
                runner.run_point(i, point)
        else:
            with ThreadPoolExecutor(runner.jobs) as pool:
                list(pool.map(runner.run_point, range(len(plan.points)), plan.points))
    return {p.name: runner.states[p.name] for p in plan.points}


class _Runner:
    """The points of one `run_study` call and what they share: the free CUDA devices (one
    point per device), the batch sizes that ran out of memory, the states so far."""

    def __init__(self, plan, study_dir, data, jobs, say, advance, launch) -> None:
        self.plan, self.study_dir, self.data = plan, study_dir, data
        self.say, self.advance, self.launch = say, advance, launch
        self.devices = _devices()
        self.jobs = max(1, min(jobs, len(self.devices))) if self.devices else max(1, jobs)
        self.free = list(self.devices)
        self.lock = threading.Lock()
        self.states: dict[str, PointState] = {}
        self.oom_at: list[float] = []  # batch sizes that did not fit: larger ones are not tried

    def run_point(self, index: int, point: Point) -> None:
        """Skip the point if it is final, else train it (resuming a partial one) and record."""
        config = point_config(self.plan, self.study_dir, point, self.data)
        state = self._known_state(config, point)
        tag = f"[{index + 1}/{len(self.plan.points)}] {point.name}"
        if state.status in FINAL:
            self.say(f"{tag}: {state.status} (step {state.step}); skipped")
            self._done(point, state)
            return
        run_dir = config.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        if state.status == "new":  # no checkpoint: a stale log would be appended to
            (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        resume = state.status == "partial"
        cmd = point_command(self.plan, self.study_dir, point, self.data, resume=resume)
        verb = f"resuming at step {state.step}" if resume else "running"
        code = self._launch_on_a_device(cmd, run_dir / "train.log", tag, verb)
        state = _outcome(code, config, run_dir / "train.log")
        if state.status == "oom" and point.value is not None:
            with self.lock:
                self.oom_at.append(point.value)
        record = {"status": state.status, "step": state.step, "message": state.message}
        atomic_write(run_dir / "study.json", json.dumps(record | {"exit_status": code}) + "\n")
        self.say(f"{tag}: {state.status}" + (f" ({state.message})" if state.message else ""))
        self._done(point, state)

    def _known_state(self, config: TrainConfig, point: Point) -> PointState:
        """The point's state on disk; "oom" untried when a smaller batch ran out of memory."""
        state = point_state(config)
        if state.status not in FINAL and self.plan.sweep == "train.batch_size":
            with self.lock:
                if any(point.value is not None and point.value > b for b in self.oom_at):
                    state = PointState("oom", None, "not tried: a smaller batch ran out of memory")
        return state

    def _launch_on_a_device(self, cmd: list[str], log_path: Path, tag: str, verb: str) -> int:
        """Run `cmd` on a free CUDA device (or on a share of the cores); its exit status."""
        env = dict(os.environ)
        device = None
        with self.lock:
            if self.devices:
                device = self.free.pop()
                env["CUDA_VISIBLE_DEVICES"] = device
            elif self.jobs > 1:  # share the cores instead of oversubscribing them
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.jobs))
        self.say(f"{tag}: {verb} (log {log_path})")
        try:
            return self.launch(cmd, log_path, env)
        finally:
            if device is not None:
                with self.lock:
                    self.free.append(device)

    def _done(self, point: Point, state: PointState) -> None:
        self.states[point.name] = state
        self.advance(1)
