"""The Trainer: one training run, built from its config, stepped and looped like nanoGPT's.

    trainer = Trainer(config)   # data, model, optimizer set + schedule, resume point, the parts
    trainer.train_step()        # one optimizer step
    result = trainer.fit()      # the loop: step, then log / eval / checkpoint as the Cadence says

One optimizer step (per process; DDP averages gradients across processes):

    for each of grad_accum micro-batches:   sample → forward (autocast) → loss/accum → backward
    clip the global grad norm → optimizer set step (AdamW, or Muon + AdamW) → schedule step

Every batch is a pure function of (seed, step, stream) with stream = rank·grad_accum + micro, so a
resumed run needs no data-loader state, and N processes × 1 micro-batch see exactly the batches
of 1 process × N micro-batches. The parts around the step each own one concern: `Cadence` (when
to log, evaluate, checkpoint, stop), `RunClock`, `Checkpointer`, `DivergenceGuard` (a bad loss
stops the run before anything is written), `MetricsSink` (metrics.jsonl, loss.png, W&B).
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from typing import Any

import torch

from tinylm.nn import model_stats
from tinylm.optim import clip_grad_norm
from tinylm.train.config import TrainConfig
from tinylm.train.data import get_batch
from tinylm.train.flops import peak_flops
from tinylm.train.run.directory import resume_command
from tinylm.train.runtime import Distributed, StopFlag, autocast_context, resolve_device, uses_bf16
from tinylm.train.sampling import write_sample
from tinylm.train.trainer.cadence import Actions, Cadence
from tinylm.train.trainer.checkpointer import Checkpointer
from tinylm.train.trainer.clock import RunClock
from tinylm.train.trainer.evaluate import batch_generator
from tinylm.train.trainer.evaluate import evaluate as held_out_loss
from tinylm.train.trainer.guard import DivergenceGuard
from tinylm.train.trainer.meter import LossMean, Throughput, momentum_record
from tinylm.train.trainer.progress import Progress
from tinylm.train.trainer.setup import (
    ResumePoint,
    build_model_and_optimizer,
    load_run_data,
    resume_from,
    save_run_files,
)
from tinylm.train.trainer.sink import MetricsSink
from tinylm.train.trainer.summary import (
    RunResult,
    already_done,
    end_lines,
    run_title,
    start_lines,
)

__all__ = ["Trainer"]


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool = False,
        stop_at: int | None = None,
        dist: Distributed | None = None,
        device: torch.device | None = None,
        stop: StopFlag | None = None,
        log=print,
        progress: bool = True,
        tty: bool | None = None,
        setup_start: float | None = None,
    ) -> None:
        """Build the run `config` describes (resumed from its newest checkpoint if `resume`).
        `train()` passes the process group, the device, the installed StopFlag and when the
        command began; alone, a Trainer runs single-process on train.device."""
        setup_start = time.perf_counter() if setup_start is None else setup_start
        self.dist = dist = dist or Distributed()
        self.device = device = device or resolve_device(config.train.device, dist.local_rank)
        self.stop, self.log, self.resumed = stop or StopFlag(), log, resume
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.progress = progress
        self.autocast = autocast_context(device, config.compute.dtype)
        self.data = load_run_data(
            config.data,
            run_root=config.run.root,
            vocab_size=config.model.vocab_size,
            context_length=config.model.context_length,
            dist=dist,
            log=log,
            progress=progress and self.tty,  # BPE bars: terminal only
        )
        self.model, self.optimizer, self.schedule = build_model_and_optimizer(
            config.model,
            config.compute,
            config.optim,
            seed=config.train.seed,
            max_steps=config.train.max_steps,
            device=device,
        )
        self.start = ResumePoint()
        if resume:
            self.start = resume_from(
                config.run_dir,
                config.model,
                config.optim,
                config.train.max_steps,
                self.model,
                self.optimizer,
                self.schedule,
                log,
            )
            if self.start.cosine_steps is not None:  # the schedule length a resumed run keeps
                config = config.replace(optim={"cosine_steps": self.start.cosine_steps})
        self.config = config
        self.step, self.tokens = self.start.step, self.start.tokens
        self.clock = RunClock(self.start.wallclock, setup_start)
        self._build_parts(config, stop_at)
        self._wrap_model(config.compute.compile)

    def _build_parts(self, cfg: TrainConfig, stop_at: int | None) -> None:
        """The loop's constants and the parts around the step, each given its settings."""
        t, dist = cfg.train, self.dist
        self.tokens_per_step = t.batch_size * cfg.model.context_length * t.grad_accum
        self.tokens_per_step *= dist.world_size
        self.max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
        # Fitted to the budget, the schedule's position is the elapsed fraction of it.
        self.budget = t.max_seconds if cfg.optim.fit_to_time else 0.0
        self.cadence = Cadence.of(
            log_interval=t.log_interval,
            eval_interval=cfg.eval.interval,
            checkpoint_interval=cfg.run.checkpoint_interval,
            max_steps=t.max_steps,
            stop_at=stop_at,
        )
        self.checkpointer = Checkpointer(
            cfg.run_dir,
            keep=cfg.run.keep_checkpoints,
            clock=self.clock,
            settings=cfg.to_dict(),
            position={"seed": t.seed, "world_size": dist.world_size, "grad_accum": t.grad_accum},
            last=self.start.checkpoint,
            pending_config=cfg.to_toml() if self.start.checkpoint is not None else None,
            enabled=dist.is_main,
        )
        checks = (cfg.model.vocab_size, t.diverge_margin, t.diverge_patience)
        self.guard = DivergenceGuard(*checks, kept=self.checkpointer.kept)
        self.stats = model_stats(cfg.model)
        title = run_title(cfg.model, t, cfg.optim, self.stats.params)
        baseline, timer = self.data.unigram_entropy, self.clock.timer
        self.sink = MetricsSink(
            cfg.run_dir, timer=timer, title=title, baseline=baseline, enabled=dist.is_main
        )
        # MFU: the peak is found once here; in the loop it is host arithmetic on tokens/s.
        bf16 = uses_bf16(self.device, cfg.compute.dtype)
        self.peak, self.peak_source = peak_flops(self.device, bf16, t.peak_flops)
        self.throughput = Throughput(self.stats.train_flops_per_token, self.peak * dist.world_size)
        self.loss_mean = LossMean(self.device)
        self.train_loss, self.val_loss, self.grad_norm = math.nan, None, math.nan
        self.shown_loss = math.nan  # the loss the progress display shows between log steps
        # On CPU a host sync is free, so each step's loss is checked at once; on accelerators
        # the loss is read (and checked) every log_interval steps and before every checkpoint.
        self.check_every_step = self.device.type == "cpu" and not dist.enabled

    def _wrap_model(self, compile: bool) -> None:
        """The model as the step calls it: compiled, then DDP-wrapped. Eval skips the DDP
        wrapper; clipping, the optimizer and checkpoints see the plain module."""
        self.forward_model = torch.compile(self.model) if compile else self.model
        self.train_model = self.forward_model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            ddp = torch.nn.parallel.DistributedDataParallel
            self.train_model = ddp(self.forward_model, device_ids=ids)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (its loss, the grad norm before clipping), on the device."""
        accum, dist, t = self.config.train.grad_accum, self.dist, self.config.train
        context_length = self.config.model.context_length
        # Forward/backward over the micro-batches; DDP all-reduces on the last one only.
        step_loss = torch.zeros((), device=self.device)
        for micro in range(accum):
            gen = batch_generator(t.seed, self.step, dist.rank * accum + micro)
            with self.clock.timer("data"):
                x, y = get_batch(self.data.train, t.batch_size, context_length, self.device, gen)
            defer_sync = dist.enabled and micro < accum - 1
            with self.train_model.no_sync() if defer_sync else nullcontext():
                with self.autocast():
                    loss = self.train_model(x, targets=y) / accum  # compute.loss's kernel
                loss.backward()
            step_loss += loss.detach().float()
        norm = clip_grad_norm(self.model.parameters(), self.max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step(progress=self.clock.wallclock() / self.budget if self.budget else None)
        self.step += 1
        self.tokens += self.tokens_per_step
        return step_loss, norm

    def fit(self) -> RunResult:
        """Train from the resume point to the end step; returns the run's summary."""
        if self.step >= self.config.train.max_steps:
            return self._already_done()
        self._open_run()  # its files and the start summary
        cadence, clock, guard = self.cadence, self.clock, self.guard
        clock.start()  # wall-clock counts the loop (with its evals and checkpoints) only
        display = Progress(
            cadence.max_steps, self.step, enabled=self.progress, log=self.log, tty=self.tty
        )
        self.model.train()
        # Handlers go in only now: processes forked during data preparation must keep the
        # default SIGTERM action, or a pool shutting them down could wait forever.
        self.stop.training(lambda: self.checkpointer.last)
        interrupted = False
        with display, self.sink.recording_failure(self._position, self.checkpointer.kept):
            while self.step < cadence.end_step:
                step_start = time.perf_counter()
                step_loss, norm = self.train_step()
                self.loss_mean.add(step_loss)
                interrupted = self._stop_requested()
                now = cadence.at(self.step, interrupted, self.stop.signal is not None)
                self.throughput.add(self.tokens_per_step, time.perf_counter() - step_start)
                self._check_losses(step_loss, norm, now)
                lr = self.optimizer.param_groups[0]["lr"]  # the "matrix" role's (every kind)
                shown = self.train_loss if now.log else self.shown_loss
                speed, mfu = self.throughput.tokens_per_s, self.throughput.mfu
                display.update(self.step, shown, lr, speed, mfu, report=now.log)
                record = self._record(lr) if now.report else None
                if now.eval:
                    with clock.timer("eval"):
                        self.val_loss = self.evaluate()
                    guard.check_finite(self.val_loss, self.step)
                    record["val_loss"] = self.val_loss
                    losses = f"train loss {self.train_loss:.4f}, val loss {self.val_loss:.4f}"
                    display.write(f"step {self.step}: {losses}")
                if record is not None:
                    self.sink.write(record)
                if now.checkpoint:
                    self.checkpointer.save(
                        self.step, self.tokens, self.model, self.optimizer, self.schedule
                    )
                if now.plot:
                    self.sink.plot()  # refresh the curve with each checkpoint
                if now.stop:
                    break
        stopped = cadence.end_reason(self.step, interrupted, self.stop.signal is not None)
        self.stop.finishing()
        self.dist.barrier()
        self.sink.plot()
        return self._finish(stopped, self._sample(stopped))

    def evaluate(self) -> float:
        """The held-out loss: the same eval.iters batches every time, without the DDP wrapper."""
        cfg = self.config
        return held_out_loss(
            self.forward_model,
            self.data.val,
            iters=cfg.eval.iters,
            batch_size=cfg.eval.batch_size or cfg.train.batch_size,
            context_length=cfg.model.context_length,
            seed=cfg.train.seed,
            device=self.device,
            autocast=self.autocast,
            dist=self.dist,
        )

    def _stop_requested(self) -> bool:
        """A signal arrived or the time budget is spent; under DDP all ranks must stop at the
        same step, so they compare only where the cadence says (one all-reduce, not one per
        step)."""
        budget = self.config.train.max_seconds
        stopping = self.stop.signal is not None or (budget > 0 and self.clock.wallclock() >= budget)
        if self.dist.enabled:
            agree = self.cadence.agrees_on_stop(self.step)
            stopping = agree and self.dist.any(stopping, self.device)
        return stopping

    def _check_losses(self, step_loss: torch.Tensor, norm: torch.Tensor, now: Actions) -> None:
        """Bring losses to the host and check them: each step on CPU (free there), else once
        per report or checkpoint (the mean since the last report; a checkpoint in between
        reads it to check it, and leaves the mean running)."""
        guard, step = self.guard, self.step
        if self.check_every_step:  # catch a bad step before anything else runs
            self.shown_loss = step_loss.item()
            guard.check_finite(self.shown_loss, step)
            guard.check_finite(float(norm), step, "grad norm")
        if now.read_loss:
            mean_loss = self.loss_mean.read(self.dist)
            self.grad_norm = float(norm)
            guard.check_finite(mean_loss, step)
            guard.check_finite(self.grad_norm, step, "grad norm")
            if now.report:
                self.train_loss = mean_loss
                self.loss_mean.reset()
                guard.check_blowup(mean_loss, step)
                if not self.check_every_step:
                    self.shown_loss = mean_loss

    def _position(self) -> dict[str, Any]:
        wallclock = round(self.clock.wallclock(), 3)
        return {"step": self.step, "tokens": self.tokens, "wallclock": wallclock}

    def _record(self, lr: float) -> dict[str, Any]:
        """The metrics.jsonl line of this step (val_loss filled in by an eval); starts a new
        throughput interval."""
        record = {
            **self._position(),
            "train_loss": self.train_loss,
            "val_loss": None,
            "lr": lr,
            **{f"lr_{role}": value for role, value in self.optimizer.lr_by_role().items()},
            **momentum_record(self.optimizer),
            "grad_norm": self.grad_norm,
            **self.throughput.record(),
        }
        self.throughput.reset()
        return record

    def _open_run(self) -> None:
        """Before the first step: the resumed log cut back to the checkpoint, config.toml and
        the tokenizer in the run directory, W&B, and the start summary."""
        cfg = self.config
        if self.resumed:
            self.sink.resume_at(self.step)  # a resumed log reads like an unbroken one
            self.log(f"resumed from {self.start.checkpoint} at step {self.step}")
        if self.dist.is_main:
            cfg.run_dir.mkdir(parents=True, exist_ok=True)  # train() made it; Trainer alone not
            # A resumed run's config.toml is replaced only by its first checkpoint.
            config_toml = None if self.resumed else cfg.to_toml()
            save_run_files(cfg.run_dir, self.data.tokenizer_dir, config_toml)
        lines = start_lines(
            cfg.run_dir,
            cfg.to_dict(),
            cfg.model,
            cfg.train,
            cfg.optim,
            stats=self.stats,
            data=self.data,
            world_size=self.dist.world_size,
            device=self.device,
            optimizer=self.optimizer,
            peak=(self.peak, self.peak_source),
        )
        for line in lines:
            self.log(line)
        wandb = (cfg.run.wandb_project, cfg.run.name, cfg.to_dict()) if cfg.run.wandb else None
        self.sink.open(wandb)

    def _sample(self, stopped: str) -> str | None:
        """The end-of-run sample (rank 0). A spent time budget is a planned end (the schedule
        was fitted to it): sample as at the last step. An interrupted run samples when it is
        resumed and finishes."""
        cfg, tokenizer = self.config, self.data.tokenizer
        wanted = tokenizer is not None and cfg.sample.max_new_tokens > 0
        if not (self.dist.is_main and stopped in ("finished", "time budget") and wanted):
            return None
        sample = write_sample(cfg.run_dir / "sample.txt", self.model, tokenizer, cfg.sample)
        self.log(f"sample:\n{sample}\n")
        return sample

    def _finish(self, stopped: str, sample: str | None) -> RunResult:
        """Close W&B, summarize the run and say how it ended."""
        cfg, wallclock = self.config, self.clock.wallclock()
        self.sink.close()
        result = RunResult(
            run_dir=cfg.run_dir,
            step=self.step,
            tokens=self.tokens,
            wallclock=wallclock,
            train_loss=self.train_loss,
            val_loss=self.val_loss,
            unigram_entropy=self.data.unigram_entropy,
            checkpoint=self.checkpointer.last,
            stopped=stopped,
            sample=sample,
            signal=self.stop.signal if stopped == "interrupted" else None,
            timings=self.clock.timings(),
            model=self.model,
        )
        resume = resume_command(cfg.run.root, cfg.run.name)
        for line in end_lines(result, resume=resume, max_seconds=cfg.train.max_seconds):
            self.log(line)
        return result

    def _already_done(self) -> RunResult:
        """A resume at or past train.max_steps: nothing to train and nothing written."""
        cfg = self.config
        resume = resume_command(cfg.run.root, cfg.run.name)
        line, result = already_done(
            cfg.run_dir, cfg.train.max_steps, self.start, self.data.unigram_entropy, resume
        )
        self.log(line)
        result.model = self.model
        return result
