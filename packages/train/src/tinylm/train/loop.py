"""The training loop: `train(config) -> RunResult`, used by `train-lm` and by the apps.

Order of one optimizer step (per process; DDP averages gradients across processes):

    for each of grad_accum micro-batches:   sample → forward (autocast) → loss/accum → backward
    clip the global grad norm → optimizer set step (AdamW, or Muon + AdamW) → schedule step
    then, as the intervals say: log the mean train loss, evaluate, checkpoint

Every batch is a pure function of (seed, step, stream) with stream = rank·grad_accum + micro, so a
resumed run needs no data-loader state, and N processes × 1 micro-batch see exactly the batches
of 1 process × N micro-batches. Checkpoints are written by rank 0 only, atomically; a non-finite
loss stops the run before anything is written, so the last good checkpoint stays intact.
Setup lives in `setup.py`, the bookkeeping around the step (clock, checkpoints, metrics, the
summary) in `runstate.py`, batch seeding and evaluation in `evaluate.py`.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext, suppress

import torch

from tinylm.nn import model_stats
from tinylm.optim import clip_grad_norm
from tinylm.train.config import TrainConfig
from tinylm.train.data import get_batch
from tinylm.train.errors import TrainingDiverged
from tinylm.train.evaluate import batch_generator, evaluate
from tinylm.train.flops import peak_flops
from tinylm.train.metrics import MetricsLog
from tinylm.train.progress import Progress
from tinylm.train.rundir import prepare_run_dir, resume_command
from tinylm.train.runstate import RunResult, RunState, changed_settings, plural, run_title
from tinylm.train.runtime import (
    Distributed,
    StopFlag,
    autocast_context,
    determinism,
    resolve_device,
    setup_distributed,
    uses_bf16,
)
from tinylm.train.sampling import write_sample
from tinylm.train.setup import (
    ResumePoint,
    build_model_and_optimizer,
    load_run_data,
    resume_from,
    save_run_files,
)

__all__ = ["RunResult", "TrainingDiverged", "train"]


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
    log=print,
    tty: bool | None = None,
) -> RunResult:
    """Train `config.model` as `config` says; returns a summary (with the trained model).

    `resume` continues from the newest checkpoint in the run directory; `stop_at` ends (with a
    checkpoint) after that many steps without changing the schedule, as an interruption would.
    `progress` shows a bar when `tty` (default: stderr is a terminal), else a plain line every
    train.log_interval steps (see progress.py).
    Raises ValueError / FileNotFoundError / PermissionError for bad input before any training,
    and TrainingDiverged when the loss stops being finite.
    """
    cfg = config
    device_kind = cfg.train.device.split(":")[0]
    if device_kind == "auto":
        device_kind = "cuda" if torch.cuda.is_available() else "cpu"
    dist = setup_distributed(device_kind)
    try:
        shown = progress and dist.is_main
        log = _unfailing(log) if dist.is_main else _quiet
        return _train(cfg, dist, resume, stop_at, shown, tty, log)
    finally:
        dist.close()


def _quiet(*args, **kwargs) -> None:
    pass


def _unfailing(log):
    """`log`, dropping what cannot be written: a closed terminal (what sends SIGHUP) fails every
    write with EIO, a closed pipe with EPIPE, and the run must still checkpoint and end as the
    signal says rather than die on a progress line. Its files hold what the output would have."""

    def write(*args, **kwargs) -> None:
        with suppress(OSError):
            log(*args, **kwargs)

    return write


def momentum_record(optimizer) -> dict[str, float]:
    """{"momentum": Muon's current momentum} when the set has a Muon group (momentum warmup)."""
    for group in optimizer.param_groups:
        if "momentum" in group:
            return {"momentum": group["momentum"]}
    return {}


def _train(
    cfg: TrainConfig,
    dist: Distributed,
    resume: bool,
    stop_at: int | None,
    progress: bool,
    tty: bool | None,
    log,
) -> RunResult:
    """Lock the run directory and catch signals for the whole run, then set up and train.

    Signals: during setup (nothing to save yet) a SIGINT/SIGTERM ends the run at once with
    RunInterrupted; once training runs the first one finishes the step and checkpoints, a second
    aborts at once (the last checkpoint stays intact).
    """
    setup_start = time.perf_counter()
    stop = StopFlag()
    lock = None
    with stop.installed():
        try:
            device = resolve_device(cfg.train.device, dist.local_rank)
            if dist.is_main:
                lock = prepare_run_dir(cfg.run_dir, resume)
            dist.barrier()
            with determinism(device, cfg.train.deterministic):
                return _run(
                    cfg, dist, resume, stop_at, progress, tty, log, device, stop, setup_start
                )
        finally:
            if lock is not None:
                lock.release()


def _already_done(
    cfg: TrainConfig, start: ResumePoint, model: torch.nn.Module, baseline: float, log
) -> RunResult:
    """A resume at or past train.max_steps: nothing to train, so nothing is written (no sample,
    no plot, no config); the result reports the run as its log left it."""
    step = start.step
    log(
        f"{cfg.run_dir} is already at step {step} (train.max_steps {cfg.train.max_steps}); "
        f"nothing to do. To train on: {resume_command(cfg.run.root, cfg.run.name)} "
        f"--train.max_steps N (N > {step})"
    )
    records = [r for r in MetricsLog(cfg.run_dir / "metrics.jsonl").read() if r["step"] <= step]
    train_losses = [r["train_loss"] for r in records if r.get("train_loss") is not None]
    val_losses = [r["val_loss"] for r in records if r.get("val_loss") is not None]
    return RunResult(
        run_dir=cfg.run_dir,
        step=step,
        tokens=start.tokens,
        wallclock=start.wallclock,
        train_loss=train_losses[-1] if train_losses else math.nan,
        val_loss=val_losses[-1] if val_losses else None,
        unigram_entropy=baseline,
        checkpoint=start.checkpoint,
        stopped="already done",
        model=model,
    )


def _run(
    cfg: TrainConfig,
    dist: Distributed,
    resume: bool,
    stop_at: int | None,
    progress: bool,
    tty: bool | None,
    log,
    device: torch.device,
    stop: StopFlag,
    setup_start: float,
) -> RunResult:
    # ---- setup: device, data, model, optimizer, resume point --------------------------------
    autocast = autocast_context(device, cfg.compute.dtype)
    tty = sys.stderr.isatty() if tty is None else tty
    data = load_run_data(cfg, dist, log, progress=progress and tty)  # BPE bars: terminal only
    model, optimizer, schedule = build_model_and_optimizer(cfg, device)
    start = ResumePoint()
    if resume:
        start = resume_from(cfg, model, optimizer, schedule, log)
        cfg = start.config  # the schedule length a resumed run keeps (see resume_from)
        if start.step >= cfg.train.max_steps:
            return _already_done(cfg, start, model, data.unigram_entropy, log)
    stats = model_stats(cfg.model)
    title = run_title(cfg, stats.params)
    baseline = data.unigram_entropy
    run = RunState(cfg, dist, model, optimizer, schedule, start, setup_start, baseline, title)
    if resume:
        log(f"resumed from {start.checkpoint} at step {start.step}")
    if dist.is_main:
        # A resumed run's config.toml is replaced only by its first checkpoint: a resume that
        # fails (diverges with a new lr, bad override) leaves the previous config in place.
        save_run_files(cfg, data, write_config=not resume)

    # The model as the step calls it: compiled, then DDP-wrapped. Eval skips the DDP wrapper;
    # clipping, the optimizer and checkpoints see the plain module.
    forward_model: torch.nn.Module = torch.compile(model) if cfg.compute.compile else model
    train_model = forward_model
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(forward_model, device_ids=ids)

    accum, batch_size = cfg.train.grad_accum, cfg.train.batch_size
    context_length, max_steps = cfg.model.context_length, cfg.train.max_steps
    tokens_per_step = batch_size * context_length * accum * dist.world_size
    # MFU: the peak is found once here; in the loop it is host arithmetic on tokens/s.
    peak, peak_source = peak_flops(
        device, uses_bf16(device, cfg.compute.dtype), cfg.train.peak_flops
    )
    flops_per_token = stats.train_flops_per_token
    peak_total = peak * dist.world_size
    budget = cfg.train.max_seconds if cfg.optim.fit_to_time else 0.0
    # A short summary, not the config: config.toml in the run directory holds every setting.
    changed = changed_settings(cfg)
    log(f"run dir: {cfg.run_dir} (every setting in its config.toml)")
    log(f"settings: {', '.join(changed) if changed else 'the defaults (default.toml)'}")
    m = cfg.model
    log(
        f"model: {stats.params / 1e6:.2f}M params "
        f"({stats.non_embedding_params / 1e6:.2f}M non-embedding): "
        f"{plural(m.num_layers, 'layer')}, "
        f"d_model {m.d_model}, {m.num_heads} heads, context {m.context_length}, "
        f"vocab {m.vocab_size}"
    )
    log(
        f"data: {len(data.train):,} train / {len(data.val):,} val tokens; {tokens_per_step:,} "
        f"tokens/step ({batch_size} × {context_length} × {accum} micro-batch(es) × "
        f"{dist.world_size} process(es)) on {device}"
    )
    roles = ", ".join(
        f"{g['role']} {type(opt).__name__} lr {g['base_lr']:.3g}"
        for opt in optimizer.values()
        for g in opt.param_groups
    )
    log(
        f"optimizer: {cfg.optim.optimizer} + {cfg.optim.schedule} schedule"
        f"{' fitted to ' + format(budget, 'g') + ' s' if budget else ''} ({roles}); "
        f"MFU against {peak / 1e12:.3g} TFLOP/s per device ({peak_source})"
    )
    log(
        f"baseline: unigram entropy of the val split = {data.unigram_entropy:.3f} nats/token "
        "(the loss to beat)"
    )

    # ---- the loop ---------------------------------------------------------------------------
    # On CPU a host sync is free, so each step's loss is checked at once; on accelerators the
    # loss is read (and checked) every log_interval steps and before every checkpoint.
    check_every_step = device.type == "cpu" and not dist.enabled
    end_step = min(max_steps, stop_at) if stop_at is not None else max_steps
    stopped, train_loss, val_loss, grad_norm = "finished", float("nan"), None, float("nan")
    shown_loss = float("nan")
    interval_tokens, interval_time = 0, 0.0
    run.begin()  # wandb, records so far, and the clock
    display = Progress(max_steps, run.step, enabled=progress, log=log, tty=tty)
    model.train()
    loss_sum, loss_count = torch.zeros((), device=device), 0
    # Handlers go in only now: processes forked during data preparation must keep the default
    # SIGTERM action, or a pool shutting them down could wait forever.
    stop.training(lambda: run.last_checkpoint)
    with display, run.recording_failure():
        while run.step < end_step:
            step_start = time.perf_counter()
            # Forward/backward over the micro-batches; DDP all-reduces on the last one only.
            step_loss = torch.zeros((), device=device)
            for micro in range(accum):
                gen = batch_generator(cfg.train.seed, run.step, dist.rank * accum + micro)
                with run.timer("data"):
                    x, y = get_batch(data.train, batch_size, context_length, device, gen)
                defer_sync = dist.enabled and micro < accum - 1
                with train_model.no_sync() if defer_sync else nullcontext():
                    with autocast():
                        loss = train_model(x, targets=y) / accum  # compute.loss's kernel
                    loss.backward()
                step_loss += loss.detach().float()
            loss_sum += step_loss
            loss_count += 1
            # Clip, step the optimizer and the schedule.
            max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
            norm = clip_grad_norm(model.parameters(), max_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            # Fitted to the budget, the schedule's position is the elapsed fraction of it.
            schedule.step(progress=run.wallclock() / budget if budget else None)
            run.step += 1
            run.tokens += tokens_per_step
            interval_tokens += tokens_per_step

            # Log, evaluate, checkpoint, stop: as the intervals, signals and time budget say.
            step = run.step
            interrupted = run.should_stop(stop, device)
            is_last = step == end_step
            log_now = step % cfg.train.log_interval == 0 or is_last or interrupted
            budget_spent = interrupted and not stop.signal  # the time budget: a planned end
            eval_now = (
                step % cfg.eval.interval == 0 or (is_last and end_step == max_steps) or budget_spent
            )
            ckpt_now = step % cfg.run.checkpoint_interval == 0 or is_last
            interval_time += time.perf_counter() - step_start
            if check_every_step:  # free on CPU: catch a bad step before anything else runs
                shown_loss = step_loss.item()
                run.check_finite(shown_loss)
                run.check_finite(float(norm), "grad norm")
            report = log_now or eval_now  # a metrics.jsonl line is written at this step
            if report or ckpt_now:
                # One host sync per interval: the mean loss of the steps since the last report
                # (a checkpoint in between reads it to check it, and leaves the mean running).
                mean_loss = dist.mean(loss_sum).item() / loss_count
                grad_norm = float(norm)
                run.check_finite(mean_loss)
                run.check_finite(grad_norm, "grad norm")
                if report:
                    train_loss = mean_loss
                    loss_sum.zero_()
                    loss_count = 0
                    run.check_divergence(train_loss)
                    shown_loss = train_loss if not check_every_step else shown_loss
            tokens_per_s = interval_tokens / max(interval_time, 1e-9)
            flops_per_s = tokens_per_s * flops_per_token
            lr = optimizer.param_groups[0]["lr"]  # the "matrix" role's (first in every kind)
            display.update(
                step,
                train_loss if log_now else shown_loss,
                lr,
                tokens_per_s,
                flops_per_s / peak_total,
                report=log_now,
            )
            record = None
            if report:
                record = {
                    "step": step,
                    "tokens": run.tokens,
                    "wallclock": round(run.wallclock(), 3),
                    "train_loss": train_loss,
                    "val_loss": None,
                    "lr": lr,
                    **{f"lr_{role}": value for role, value in optimizer.lr_by_role().items()},
                    **momentum_record(optimizer),
                    "grad_norm": grad_norm,
                    "tokens_per_s": round(tokens_per_s, 1),
                    "flops_per_s": float(f"{flops_per_s:.4g}"),
                    "mfu": round(flops_per_s / peak_total, 5),
                }
                interval_tokens, interval_time = 0, 0.0
            if eval_now:
                with run.timer("eval"):
                    val_loss = evaluate(forward_model, data.val, cfg, device, autocast, dist)
                run.check_finite(val_loss)
                record["val_loss"] = val_loss
                message = f"step {step}: train loss {train_loss:.4f}, val loss {val_loss:.4f}"
                display.write(message)
            if record is not None:
                run.log_metrics(record)
            if interrupted:
                stopped = "interrupted" if stop.signal else "time budget"
                run.checkpoint()
                break
            if ckpt_now:
                run.checkpoint()
                run.plot()  # refresh the curve with each checkpoint
        if stop_at is not None and run.step == stop_at and run.step < max_steps:
            stopped = "stop_at"
    stop.finishing()
    dist.barrier()

    # ---- the end: final curve, a sample, the summary ----------------------------------------
    run.plot()
    sample = None
    wants_sample = data.tokenizer is not None and cfg.sample.max_new_tokens > 0
    # A spent time budget is a planned end (the schedule was fitted to it): sample as at the last
    # step. An interrupted run samples when it is resumed and finishes.
    if dist.is_main and stopped in ("finished", "time budget") and wants_sample:
        sample = write_sample(cfg.run_dir / "sample.txt", model, data.tokenizer, cfg.sample)
        log(f"sample:\n{sample}\n")
    return run.finish(stopped, stop, train_loss, val_loss, data.unigram_entropy, sample, log)
