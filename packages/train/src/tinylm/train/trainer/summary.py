"""What a run says about itself: its title, the settings a person chose, and how it ended.

`start_lines` are printed before the first step, `end_lines` after the loop (how it stopped,
then `done: ...`); `RunResult` is what `train()` returns, and `already_done` the result of a
resume with nothing left to train.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tinylm.nn import ModelConfig, ModelStats
from tinylm.optim import OptimizerSet
from tinylm.train.config import LoopConfig, OptimConfig, load_config
from tinylm.train.run.metrics import MetricsLog
from tinylm.train.trainer.setup import ResumePoint, RunData

__all__ = [
    "RunResult",
    "already_done",
    "changed_settings",
    "end_lines",
    "plural",
    "run_title",
    "start_lines",
]


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


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def changed_settings(settings: dict[str, dict[str, Any]]) -> list[str]:
    """`section.key=value` for every setting (a config's `to_dict()`) that differs from the
    shipped default.toml (what plain `train-lm` runs): the part of a config a person chose;
    config.toml holds the rest."""
    default = load_config().to_dict()
    changed = []
    for section, values in settings.items():
        for key, value in values.items():
            if default.get(section, {}).get(key, _UNSET) != value:
                shown = ",".join(map(str, value)) if isinstance(value, list) else value
                changed.append(f"{section}.{key}={shown}")
    return changed


_UNSET = object()


def run_title(m: ModelConfig, t: LoopConfig, o: OptimConfig, params: int) -> str:
    """The run's settings in one line (the loss plot's title)."""
    batch = f"{t.batch_size}×{t.grad_accum}" if t.grad_accum > 1 else f"{t.batch_size}"
    return (
        f"{params / 1e6:.2f}M params ({plural(m.num_layers, 'layer')}, d_model {m.d_model}, ctx "
        f"{m.context_length}, vocab {m.vocab_size}) · {o.optimizer} lr {o.lr:g} {o.schedule} · "
        f"batch {batch} · {t.max_steps} steps"
    )


def start_lines(
    run_dir: Path,
    settings: dict[str, dict[str, Any]],
    m: ModelConfig,
    t: LoopConfig,
    o: OptimConfig,
    *,
    stats: ModelStats,
    data: RunData,
    world_size: int,
    device: torch.device,
    optimizer: OptimizerSet,
    peak: tuple[float, str],
) -> list[str]:
    """A short summary, not the config (`settings`, in config.toml, holds it all): what was
    changed from the defaults, the model, the data and tokens per step, the optimizer's roles
    and the MFU peak (FLOP/s per device, where it came from), and the loss to beat."""
    changed = changed_settings(settings)
    tokens_per_step = t.batch_size * m.context_length * t.grad_accum * world_size
    roles = ", ".join(
        f"{g['role']} {type(opt).__name__} lr {g['base_lr']:.3g}"
        for opt in optimizer.values()
        for g in opt.param_groups
    )
    budget = t.max_seconds if o.fit_to_time else 0.0
    fitted = f" fitted to {budget:g} s" if budget else ""
    return [
        f"run dir: {run_dir} (every setting in its config.toml)",
        f"settings: {', '.join(changed) if changed else 'the defaults (default.toml)'}",
        f"model: {stats.params / 1e6:.2f}M params "
        f"({stats.non_embedding_params / 1e6:.2f}M non-embedding): "
        f"{plural(m.num_layers, 'layer')}, d_model {m.d_model}, {m.num_heads} heads, "
        f"context {m.context_length}, vocab {m.vocab_size}",
        f"data: {len(data.train):,} train / {len(data.val):,} val tokens; "
        f"{tokens_per_step:,} tokens/step ({t.batch_size} × {m.context_length} × "
        f"{t.grad_accum} micro-batch(es) × {world_size} process(es)) on {device}",
        f"optimizer: {o.optimizer} + {o.schedule} schedule{fitted} ({roles}); "
        f"MFU against {peak[0] / 1e12:.3g} TFLOP/s per device ({peak[1]})",
        f"baseline: unigram entropy of the val split = {data.unigram_entropy:.3f} "
        "nats/token (the loss to beat)",
    ]


def end_lines(result: RunResult, *, resume: str, max_seconds: float) -> list[str]:
    """How the run stopped (an interruption names the command that continues it), then the
    `done:` line with the final losses against the unigram baseline."""
    lines = []
    step, checkpoint = result.step, result.checkpoint
    if result.stopped == "interrupted":
        lines.append(
            f"interrupted by {result.signal} at step {step}; checkpoint {checkpoint}; "
            f"continue with: {resume}"
        )
    elif result.stopped == "time budget":
        lines.append(
            f"time budget of {max_seconds:.0f} s spent at step {step}; checkpoint {checkpoint}"
        )
    val = result.val_loss
    val_text = f"{val:.4f}" if val is not None else "n/a"
    train_text = f"{result.train_loss:.4f}" if math.isfinite(result.train_loss) else "n/a"
    lines.append(
        f"done: step {step}, train loss {train_text}, val loss {val_text} "
        f"(unigram baseline {result.unigram_entropy:.4f}), {result.wallclock:.1f} s, "
        f"run dir {result.run_dir}"
    )
    return lines


def already_done(
    run_dir: Path, max_steps: int, start: ResumePoint, baseline: float, resume: str
) -> tuple[str, RunResult]:
    """A resume at or past train.max_steps: nothing to train, so nothing is written (no sample,
    no plot, no config). Returns the line that says so (`resume`: the command that continues
    the run) and a result that reports the run as its log left it."""
    step = start.step
    line = (
        f"{run_dir} is already at step {step} (train.max_steps {max_steps}); nothing to do. "
        f"To train on: {resume} --train.max_steps N (N > {step})"
    )
    records = [r for r in MetricsLog(run_dir / "metrics.jsonl").read() if r["step"] <= step]
    train_losses = [r["train_loss"] for r in records if r.get("train_loss") is not None]
    val_losses = [r["val_loss"] for r in records if r.get("val_loss") is not None]
    return line, RunResult(
        run_dir=run_dir,
        step=step,
        tokens=start.tokens,
        wallclock=start.wallclock,
        train_loss=train_losses[-1] if train_losses else math.nan,
        val_loss=val_losses[-1] if val_losses else None,
        unigram_entropy=baseline,
        checkpoint=start.checkpoint,
        stopped="already done",
    )
