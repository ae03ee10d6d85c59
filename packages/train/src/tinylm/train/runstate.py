"""A run's bookkeeping around the training step: position, clock, checkpoints, metrics, summary.

`RunState` owns what survives a step other than the weights and optimizer moments: the step and
token counts, the wall clock (continued across resumes), the newest checkpoint, the metrics log
and its records, phase timers and the optional wandb run. The loop calls it at the points nanoGPT
would inline: `check_finite` after reading a loss, `should_stop` after each step, `checkpoint`,
`log_metrics`, `plot`, and `finish` to print the summary and build the `RunResult`.
"""

from __future__ import annotations

import contextlib
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tinylm.optim import LRSchedule, OptimizerSet
from tinylm.train.checkpoint import save_checkpoint
from tinylm.train.config import TrainConfig, load_config
from tinylm.train.errors import RunFailed, TrainingDiverged, one_line
from tinylm.train.metrics import MetricsLog, init_wandb, plot_losses
from tinylm.train.rundir import checkpoint_path, find_checkpoints, resume_command
from tinylm.train.runtime import Distributed, StopFlag, Timer
from tinylm.train.setup import ResumePoint

__all__ = ["RunResult", "RunState", "changed_settings", "plural", "run_title"]


def changed_settings(cfg: TrainConfig) -> list[str]:
    """`section.key=value` for every setting that differs from the shipped default.toml (what
    plain `train-lm` runs): the part of a config a person chose; config.toml holds the rest."""
    default = load_config().to_dict()
    changed = []
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            if default.get(section, {}).get(key, _UNSET) != value:
                shown = ",".join(map(str, value)) if isinstance(value, list) else value
                changed.append(f"{section}.{key}={shown}")
    return changed


_UNSET = object()


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def run_title(cfg: TrainConfig, params: int) -> str:
    """The run's settings in one line (the loss plot's title)."""
    m, t, o = cfg.model, cfg.train, cfg.optim
    batch = f"{t.batch_size}×{t.grad_accum}" if t.grad_accum > 1 else f"{t.batch_size}"
    return (
        f"{params / 1e6:.2f}M params ({plural(m.num_layers, 'layer')}, d_model {m.d_model}, ctx "
        f"{m.context_length}, vocab {m.vocab_size}) · {o.optimizer} lr {o.lr:g} {o.schedule} · "
        f"batch {batch} · {t.max_steps} steps"
    )


@dataclass
class RunResult:
    run_dir: Path
    step: int
    tokens: int
    wallclock: float
    train_loss: float
    val_loss: float | None
    unigram_entropy: float
    checkpoint: Path | None
    stopped: str  # "finished" | "interrupted" | "time budget" | "stop_at" | "already done"
    sample: str | None = None
    signal: str | None = None  # "SIGINT" / "SIGTERM" when stopped == "interrupted"
    timings: dict[str, float] = field(default_factory=dict)  # seconds in data/eval/checkpoint/total
    model: torch.nn.Module | None = field(default=None, repr=False)


class RunState:
    """Everything but the step itself; rank 0 alone writes files (the others only count)."""

    def __init__(
        self,
        cfg: TrainConfig,
        dist: Distributed,
        model: torch.nn.Module,
        optimizer: OptimizerSet,
        schedule: LRSchedule,
        start: ResumePoint,
        setup_start: float,
        baseline: float | None = None,
        title: str = "",
    ) -> None:
        self.cfg, self.dist, self.run_dir = cfg, dist, cfg.run_dir
        self.baseline, self.title = baseline, title  # of the loss plot
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.step, self.tokens, self.clock_offset = start.step, start.tokens, start.wallclock
        self.last_checkpoint = start.checkpoint
        self.config_pending = start.checkpoint is not None  # resumed: config.toml at 1st ckpt
        self.above_count = 0  # consecutive log checks with the loss above the blow-up line
        self.blowup_line = (
            math.log(cfg.model.vocab_size) + cfg.train.diverge_margin
            if cfg.train.diverge_margin > 0
            else math.inf
        )
        self.setup_start = self.start_time = setup_start
        self.timer = Timer()
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.records: list[dict[str, Any]] = []
        self.wandb_run = None
        if dist.is_main and start.checkpoint is not None:
            self.metrics.truncate_after(start.step)  # a resumed log reads like an unbroken one

    def begin(self) -> None:
        """Open wandb if asked, then start the clock: wall-clock counts the loop (with its evals
        and checkpoints) only, not data preparation."""
        if self.dist.is_main:
            self.records = self.metrics.read()
            if self.cfg.run.wandb:
                cfg = self.cfg
                self.wandb_run = init_wandb(
                    cfg.run.wandb_project, cfg.run.name, cfg.to_dict(), self.run_dir
                )
        self.start_time = time.perf_counter()

    def wallclock(self) -> float:
        return self.clock_offset + time.perf_counter() - self.start_time

    def _kept(self) -> str:
        if self.last_checkpoint:
            return f"last good checkpoint {self.last_checkpoint} is untouched"
        return "no checkpoint was written"

    def check_finite(self, value: float, what: str = "loss") -> None:
        """Stop the run, before anything is written, when a loss is NaN or infinite."""
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"{what} became {value} at step {self.step}; stopped ({self._kept()}). "
                "Try a lower --optim.lr or --optim.grad_clip"
            )

    def check_divergence(self, train_loss: float) -> None:
        """A finite blow-up: the loss above ln(vocab) + train.diverge_margin (worse than the
        uniform guess an untrained model starts from) at diverge_patience log checks in a row.
        Called where the loss is already on the host, so it costs no extra sync."""
        self.above_count = self.above_count + 1 if train_loss > self.blowup_line else 0
        if self.above_count >= self.cfg.train.diverge_patience:
            raise TrainingDiverged(
                f"training diverged: train loss {train_loss:.4g} at step {self.step} has been "
                f"above {self.blowup_line:.2f} (ln vocab_size + train.diverge_margin) for "
                f"{self.above_count} log steps; stopped ({self._kept()}). Try a lower --optim.lr"
            )

    @contextmanager
    def recording_failure(self):
        """On divergence or any failure in the loop, keep what the run has shown so far: a final
        {"event": "diverged" | "failed"} line in metrics.jsonl and the loss curve."""
        try:
            yield
        except (RunFailed, OSError) as e:
            if self.dist.is_main:
                event = "diverged" if isinstance(e, TrainingDiverged) else "failed"
                record = {
                    "event": event,
                    "step": self.step,
                    "tokens": self.tokens,
                    "wallclock": round(self.wallclock(), 3),
                    "reason": one_line(e),
                }
                with contextlib.suppress(OSError):
                    self.log_metrics(record)
                    self.plot()
            if isinstance(e, OSError):
                raise RunFailed(
                    f"I/O error at step {self.step}: {e.strerror or e}"
                    f"{f' ({e.filename})' if e.filename else ''}; {self._kept()}"
                ) from e
            raise

    def should_stop(self, stop: StopFlag, device: torch.device) -> bool:
        """A signal arrived or the time budget is spent; under DDP all ranks must stop at the same
        step, so they agree only at log_interval steps (one all-reduce, not one per step)."""
        budget = self.cfg.train.max_seconds
        stopping = stop.signal is not None or (budget > 0 and self.wallclock() >= budget)
        if self.dist.enabled:
            sync_every = self.cfg.train.log_interval
            stopping = self.step % sync_every == 0 and self.dist.any(stopping, device)
        return stopping

    def checkpoint(self) -> None:
        """Write step_<step>.pt atomically (rank 0) and drop all but the newest keep_checkpoints.

        A write that fails (disk full, ...) leaves the previous checkpoints as they were and
        stops the run with RunFailed naming the cause and the last good checkpoint."""
        if not self.dist.is_main:
            return
        cfg, step = self.cfg, self.step
        with self.timer("checkpoint"):
            path = checkpoint_path(self.run_dir, step)
            try:
                path.parent.mkdir(exist_ok=True)
                save_checkpoint(
                    self.model,
                    self.optimizer,
                    step,
                    path,
                    scheduler=self.schedule,
                    config=cfg.to_dict(),
                    data={
                        "tokens": self.tokens,
                        "step": step,
                        "seed": cfg.train.seed,
                        "world_size": self.dist.world_size,
                        "grad_accum": cfg.train.grad_accum,
                    },
                    wallclock=self.wallclock(),
                )
            except OSError as e:
                cause = e.strerror or str(e)
                raise RunFailed(
                    f"could not write checkpoint {path}: {cause}; {self._kept()}"
                ) from e
            self.last_checkpoint = path
            if self.config_pending:  # the resumed run is known good now: record its config
                cfg.save(self.run_dir / "config.toml")
                self.config_pending = False
            periodic = find_checkpoints(self.run_dir)
            for old in periodic[: max(0, len(periodic) - max(1, cfg.run.keep_checkpoints))]:
                old.unlink(missing_ok=True)

    def log_metrics(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl line (and a wandb point), rank 0 only."""
        if not self.dist.is_main:
            return
        self.metrics.write(record)
        self.records.append(record)
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if v is not None}, step=self.step)

    def plot(self) -> None:
        """Redraw loss.png from the records so far (rank 0; cheap, but not free)."""
        if self.dist.is_main:
            with self.timer("plot"):
                plot_losses(
                    self.records,
                    self.run_dir / "loss.png",
                    title=self.title or self.run_dir.name,
                    baseline=self.baseline,
                )

    def finish(
        self,
        stopped: str,
        stop: StopFlag,
        train_loss: float,
        val_loss: float | None,
        baseline: float,
        sample: str | None,
        log,
    ) -> RunResult:
        """Close wandb, print how the run ended, and summarize it."""
        wallclock = self.wallclock()
        if self.wandb_run is not None:
            self.wandb_run.finish()
        timings = {k: round(v, 4) for k, v in self.timer.totals.items()}
        timings["train"] = round(time.perf_counter() - self.start_time, 4)
        timings["total"] = round(time.perf_counter() - self.setup_start, 4)
        step, run_dir = self.step, self.run_dir
        if stopped == "interrupted":
            command = resume_command(self.cfg.run.root, self.cfg.run.name)
            log(
                f"interrupted by {stop.signal} at step {step}; checkpoint {self.last_checkpoint}; "
                f"continue with: {command}"
            )
        elif stopped == "time budget":
            log(
                f"time budget of {self.cfg.train.max_seconds:.0f} s spent at step {step}; "
                f"checkpoint {self.last_checkpoint}"
            )
        val_text = f"{val_loss:.4f}" if val_loss is not None else "n/a"
        train_text = f"{train_loss:.4f}" if math.isfinite(train_loss) else "n/a"
        log(
            f"done: step {step}, train loss {train_text}, val loss {val_text} "
            f"(unigram baseline {baseline:.4f}), {wallclock:.1f} s, run dir {run_dir}"
        )
        return RunResult(
            run_dir=run_dir,
            step=step,
            tokens=self.tokens,
            wallclock=wallclock,
            train_loss=train_loss,
            val_loss=val_loss,
            unigram_entropy=baseline,
            checkpoint=self.last_checkpoint,
            stopped=stopped,
            sample=sample,
            signal=stop.signal if stopped == "interrupted" else None,
            timings=timings,
            model=self.model,
        )
