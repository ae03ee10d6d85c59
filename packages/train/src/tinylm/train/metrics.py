"""What a run records: metrics.jsonl, the loss-curve PNG, the unigram baseline, wandb (optional)."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tinylm.train.files import atomic_open, atomic_write

__all__ = ["MetricsLog", "init_wandb", "plot_losses", "unigram_entropy"]


def unigram_entropy(tokens: np.ndarray, vocab_size: int, max_tokens: int = 50_000_000) -> float:
    """Entropy (nats/token) of the empirical unigram distribution of `tokens`.

    This is the loss of the best model that ignores context, so a trained LM must beat it.
    Counts at most `max_tokens` (the head of the array) to stay cheap on huge memmaps.
    """
    counts = np.bincount(np.asarray(tokens[:max_tokens]), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


class MetricsLog:
    """Append-only JSON-lines log, one dict per line, flushed at every write.

    On resume, `truncate_after(step)` drops lines logged after the checkpoint being resumed, so
    the log of a resumed run reads like an uninterrupted one.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
        return records

    def truncate_after(self, step: int) -> None:
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def plot_losses(records: list[dict[str, Any]], out: str | os.PathLike, title: str = "") -> None:
    """Train/val loss against steps (left) and wall-clock seconds (right); written atomically."""
    # The object API with the Agg canvas: no pyplot, no global state, no GUI backend to import.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def series(key: str) -> tuple[list[float], list[float], list[float]]:
        rows = [r for r in records if r.get(key) is not None and math.isfinite(r[key])]
        return [r["step"] for r in rows], [r["wallclock"] for r in rows], [r[key] for r in rows]

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for key, style in (("train_loss", "-"), ("val_loss", "o-")):
        steps, seconds, values = series(key)
        label = key.replace("_", " ")
        by_step.plot(steps, values, style, label=label, markersize=3)
        by_time.plot(seconds, values, style, label=label, markersize=3)
    by_step.set_xlabel("step")
    by_time.set_xlabel("wall-clock (s)")
    by_step.set_ylabel("loss (nats/token)")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(out) as f:
        fig.savefig(f, format="png", dpi=100)


def init_wandb(project: str, name: str, config: dict[str, Any], run_dir: Path):
    """A Weights & Biases run, or None (with a warning) when wandb is not installed."""
    try:
        import wandb
    except ImportError:
        warnings.warn(
            "run.wandb is true but wandb is not installed; logging locally only", stacklevel=3
        )
        return None
    return wandb.init(project=project, name=name, config=config, dir=str(run_dir))
