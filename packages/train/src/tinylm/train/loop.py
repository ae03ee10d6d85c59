"""The training loop: `train(config) -> RunResult`, used by `train-lm` and by the apps.

Order of one optimizer step (per process; DDP averages gradients across processes):

    for each of grad_accum micro-batches:   sample → forward (autocast) → loss/accum → backward
    clip the global grad norm → AdamW step → schedule step

Every batch is a pure function of (seed, step, stream) with stream = rank·grad_accum + micro, so a
resumed run needs no data-loader state, and N processes × 1 micro-batch see exactly the batches
of 1 process × N micro-batches. Checkpoints are written by rank 0 only, atomically; a non-finite
loss stops the run before anything is written, so the last good checkpoint stays intact.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tinylm.nn import cross_entropy, model_stats
from tinylm.optim import clip_grad_norm
from tinylm.train.checkpoint import save_checkpoint
from tinylm.train.config import TrainConfig
from tinylm.train.data import get_batch
from tinylm.train.metrics import MetricsLog, plot_losses
from tinylm.train.rundir import find_checkpoints, prepare_run_dir
from tinylm.train.runtime import (
    Distributed,
    StopFlag,
    Timer,
    autocast_context,
    resolve_device,
    setup_distributed,
)
from tinylm.train.sampling import sample_text
from tinylm.train.setup import (
    ResumePoint,
    build_model_and_optimizer,
    check_positive,
    load_run_data,
    resume_from,
    save_run_files,
)

__all__ = ["RunResult", "TrainingDiverged", "train"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stopped without writing a checkpoint."""


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
    stopped: str  # "finished" | "interrupted" | "time budget" | "stop_at"
    sample: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds in data/eval/checkpoint/total
    model: torch.nn.Module | None = field(default=None, repr=False)


def _batch_generator(seed: int, step: int, stream: int) -> torch.Generator:
    mixed = seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB
    return torch.Generator().manual_seed(mixed % (1 << 63))


@torch.no_grad()
def _evaluate(model, tokens, cfg: TrainConfig, device, autocast, dist: Distributed) -> float:
    """Mean loss on the same `eval.iters` held-out batches every time (comparable across evals)."""
    batch_size = cfg.eval.batch_size or cfg.train.batch_size
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    for i in range(cfg.eval.iters):
        gen = _batch_generator(cfg.train.seed + 1, i, dist.rank)
        x, y = get_batch(tokens, batch_size, cfg.model.context_length, device, gen)
        with autocast():
            total += cross_entropy(model(x), y).float()
    model.train(was_training)
    return dist.mean(total / cfg.eval.iters).item()


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
    log=print,
) -> RunResult:
    """Train `config.model` as `config` says; returns a summary (with the trained model).

    `resume` continues from the newest checkpoint in the run directory; `stop_at` ends (with a
    checkpoint) after that many steps without changing the schedule, as an interruption would.
    Raises ValueError / FileNotFoundError / PermissionError for bad input before any training,
    and TrainingDiverged when the loss stops being finite.
    """
    cfg = config
    device_kind = cfg.train.device.split(":")[0]
    if device_kind == "auto":
        device_kind = "cuda" if torch.cuda.is_available() else "cpu"
    dist = setup_distributed(device_kind)
    try:
        return _train(cfg, dist, resume, stop_at, progress, log if dist.is_main else _quiet)
    finally:
        dist.close()


def _quiet(*args, **kwargs) -> None:
    pass


def _train(cfg, dist, resume, stop_at, progress, log) -> RunResult:
    setup_start = time.perf_counter()
    start_time = setup_start
    timer = Timer()
    device = resolve_device(cfg.train.device, dist.local_rank)
    autocast = autocast_context(device, cfg.train.dtype)
    run_dir = cfg.run_dir
    check_positive(cfg)
    if dist.is_main:
        prepare_run_dir(run_dir, resume)
    dist.barrier()
    data = load_run_data(cfg, dist, log)
    train_tokens, val_tokens, tokenizer = data.train, data.val, data.tokenizer
    baseline = data.unigram_entropy
    context_length, max_steps = cfg.model.context_length, cfg.train.max_steps
    model, optimizer, schedule = build_model_and_optimizer(cfg, device)
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    start = resume_from(cfg, model, optimizer, schedule) if resume else ResumePoint()
    step, tokens_seen, clock_offset = start.step, start.tokens, start.wallclock
    last_checkpoint = start.checkpoint
    if resume:
        if dist.is_main:
            metrics.truncate_after(step)
        log(f"resumed from {last_checkpoint} at step {step}")
    if dist.is_main:
        save_run_files(cfg, data)

    forward_model: torch.nn.Module = model
    if cfg.train.compile:
        forward_model = torch.compile(model)
    train_model = forward_model
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(forward_model, device_ids=ids)

    stats = model_stats(cfg.model)
    accum, batch_size = cfg.train.grad_accum, cfg.train.batch_size
    tokens_per_step = batch_size * context_length * accum * dist.world_size
    log(cfg.to_toml())
    log(
        f"model: {stats.params / 1e6:.2f}M params "
        f"({stats.non_embedding_params / 1e6:.2f}M non-embedding), "
        f"device {device}, {dist.world_size} process(es), {tokens_per_step:,} tokens/step, "
        f"{len(train_tokens):,} train / {len(val_tokens):,} val tokens"
    )
    log(
        f"baseline: unigram entropy of the val split = {baseline:.3f} nats/token (the loss to beat)"
    )
    wandb_run = _init_wandb(cfg, run_dir) if cfg.run.wandb and dist.is_main else None

    bar = tqdm(
        total=max_steps,
        initial=step,
        unit="step",
        disable=not (progress and dist.is_main),
        dynamic_ncols=True,
    )
    # On CPU a host sync is free, so each step's loss is checked at once; on accelerators the
    # loss is read (and checked) every log_interval steps and before every checkpoint.
    check_every_step = device.type == "cpu" and not dist.enabled
    sync_every = cfg.train.log_interval
    shown_loss = float("nan")
    end_step = min(max_steps, stop_at) if stop_at is not None else max_steps
    stopped, train_loss, val_loss, grad_norm = "finished", float("nan"), None, float("nan")
    interval_tokens, interval_time = 0, 0.0
    records = metrics.read() if dist.is_main else []

    def checkpoint(at_step: int) -> None:
        nonlocal last_checkpoint
        if not dist.is_main:
            return
        with timer("checkpoint"):
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            path = run_dir / "checkpoints" / f"step_{at_step:07d}.pt"
            save_checkpoint(
                model,
                optimizer,
                at_step,
                path,
                scheduler=schedule,
                config=cfg.to_dict(),
                data={
                    "tokens": tokens_seen,
                    "step": at_step,
                    "seed": cfg.train.seed,
                    "world_size": dist.world_size,
                    "grad_accum": accum,
                },
                wallclock=clock_offset + time.perf_counter() - start_time,
            )
            last_checkpoint = path
            periodic = find_checkpoints(run_dir)
            for old in periodic[: max(0, len(periodic) - max(1, cfg.run.keep_checkpoints))]:
                old.unlink(missing_ok=True)

    def check_finite(value: float, at_step: int) -> None:
        if not math.isfinite(value):
            where = (
                f"{last_checkpoint} is untouched"
                if last_checkpoint
                else "no checkpoint was written"
            )
            raise TrainingDiverged(
                f"loss became {value} at step {at_step}; stopped ({where}). "
                "Try a lower --optim.lr or --optim.grad_clip"
            )

    model.train()
    start_time = time.perf_counter()  # wall-clock counts training (with eval and checkpoints) only
    loss_sum, loss_count = torch.zeros((), device=device), 0
    # Handlers go in only now: processes forked during data preparation must keep the default
    # SIGTERM action, or a pool shutting them down could wait forever.
    stop = StopFlag()
    with bar, stop.installed():
        while step < end_step:
            step_start = time.perf_counter()
            step_loss = torch.zeros((), device=device)
            for micro in range(accum):
                gen = _batch_generator(cfg.train.seed, step, dist.rank * accum + micro)
                with timer("data"):
                    x, y = get_batch(train_tokens, batch_size, context_length, device, gen)
                sync = (
                    train_model.no_sync() if dist.enabled and micro < accum - 1 else nullcontext()
                )
                with sync:
                    with autocast():
                        loss = cross_entropy(train_model(x), y) / accum
                    loss.backward()
                step_loss += loss.detach().float()
            loss_sum += step_loss
            loss_count += 1
            max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf
            norm = clip_grad_norm(model.parameters(), max_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            step += 1
            tokens_seen += tokens_per_step
            interval_tokens += tokens_per_step

            interrupted = stop.signal is not None or (
                cfg.train.max_seconds > 0
                and clock_offset + time.perf_counter() - start_time >= cfg.train.max_seconds
            )
            if dist.enabled:  # all ranks must stop at the same step; agree at sync points only
                interrupted = step % sync_every == 0 and dist.any(interrupted, device)
            is_last = step == end_step
            log_now = step % cfg.train.log_interval == 0 or is_last or interrupted
            eval_now = step % cfg.eval.interval == 0 or (is_last and end_step == max_steps)
            ckpt_now = step % cfg.run.checkpoint_interval == 0 or is_last
            interval_time += time.perf_counter() - step_start
            if check_every_step:  # free on CPU: catch a bad step before anything else runs
                shown_loss = step_loss.item()
                check_finite(shown_loss, step)
            if log_now or ckpt_now:
                # One host sync per interval: the mean loss of the steps since the last one.
                train_loss = dist.mean(loss_sum).item() / loss_count
                loss_sum.zero_()
                loss_count = 0
                check_finite(train_loss, step)
                grad_norm = float(norm)
                shown_loss = train_loss if not check_every_step else shown_loss
            if check_every_step or log_now:
                lr = optimizer.param_groups[0]["lr"]
                tokens_per_s = interval_tokens / max(interval_time, 1e-9)
                bar.set_postfix(
                    loss=f"{shown_loss:.3f}",
                    lr=f"{lr:.2e}",
                    tok_s=f"{tokens_per_s:,.0f}",
                    refresh=False,
                )
            bar.update(1)
            record = None
            if log_now or eval_now:
                record = {
                    "step": step,
                    "tokens": tokens_seen,
                    "wallclock": round(clock_offset + time.perf_counter() - start_time, 3),
                    "train_loss": train_loss,
                    "val_loss": None,
                    "lr": optimizer.param_groups[0]["lr"],
                    "grad_norm": grad_norm,
                    "tokens_per_s": round(interval_tokens / max(interval_time, 1e-9), 1),
                }
                interval_tokens, interval_time = 0, 0.0
            if eval_now:
                with timer("eval"):
                    val_loss = _evaluate(forward_model, val_tokens, cfg, device, autocast, dist)
                check_finite(val_loss, step)
                record["val_loss"] = val_loss
                message = f"step {step}: train loss {train_loss:.4f}, val loss {val_loss:.4f}"
                (log if bar.disable else bar.write)(message)
            if record is not None and dist.is_main:
                metrics.write(record)
                records.append(record)
                if wandb_run is not None:
                    wandb_run.log({k: v for k, v in record.items() if v is not None}, step=step)
            if interrupted:
                stopped = "interrupted" if stop.signal else "time budget"
                checkpoint(step)
                break
            if ckpt_now:
                checkpoint(step)
                if dist.is_main:  # refresh the curve with each checkpoint (cheap, but not free)
                    with timer("plot"):
                        plot_losses(records, run_dir / "loss.png", title=run_dir.name)
        if stop_at is not None and step == stop_at and step < max_steps:
            stopped = "stop_at"
    dist.barrier()

    sample = None
    if dist.is_main:
        with timer("plot"):
            plot_losses(records, run_dir / "loss.png", title=run_dir.name)
        if stopped == "finished" and tokenizer is not None and cfg.sample.max_new_tokens > 0:
            sample = sample_text(
                model,
                tokenizer,
                cfg.sample.prompt,
                cfg.sample.max_new_tokens,
                temperature=cfg.sample.temperature,
                top_p=cfg.sample.top_p,
                seed=cfg.sample.seed,
            )
            tmp = run_dir / "sample.txt.tmp"
            tmp.write_text(sample + "\n")
            tmp.replace(run_dir / "sample.txt")
            log(f"sample:\n{sample}\n")
    wallclock = clock_offset + time.perf_counter() - start_time
    if wandb_run is not None:
        wandb_run.finish()
    timings = {k: round(v, 4) for k, v in timer.totals.items()}
    timings["train"] = round(time.perf_counter() - start_time, 4)
    timings["total"] = round(time.perf_counter() - setup_start, 4)
    if stopped == "interrupted":
        log(
            f"interrupted by {stop.signal} at step {step}; checkpoint {last_checkpoint}; "
            "continue with --resume"
        )
    elif stopped == "time budget":
        log(
            f"time budget of {cfg.train.max_seconds:.0f} s spent at step {step}; "
            f"checkpoint {last_checkpoint}"
        )
    val_text = f"{val_loss:.4f}" if val_loss is not None else "n/a"
    log(
        f"done: step {step}, train loss {train_loss:.4f}, val loss {val_text} "
        f"(unigram baseline {baseline:.4f}), {wallclock:.1f} s, run dir {run_dir}"
    )
    return RunResult(
        run_dir=run_dir,
        step=step,
        tokens=tokens_seen,
        wallclock=wallclock,
        train_loss=train_loss,
        val_loss=val_loss,
        unigram_entropy=baseline,
        checkpoint=last_checkpoint,
        stopped=stopped,
        sample=sample,
        timings=timings,
        model=model,
    )


def _init_wandb(cfg: TrainConfig, run_dir: Path):
    try:
        import wandb
    except ImportError:
        warnings.warn(
            "run.wandb is true but wandb is not installed; logging locally only", stacklevel=2
        )
        return None
    return wandb.init(
        project=cfg.run.wandb_project, name=cfg.run.name, config=cfg.to_dict(), dir=str(run_dir)
    )
