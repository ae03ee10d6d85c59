"""What a run records: metrics.jsonl, the loss-curve PNG, the unigram baseline, wandb (optional)."""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Callable
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

    Lines are strict JSON (RFC 8259): a missing or non-finite value is written as `null`, never as
    `NaN`/`Infinity`, so any JSON parser reads the file. On resume, `truncate_after(step)` drops
    lines logged after the checkpoint being resumed, so the log of a resumed run reads like an
    uninterrupted one.

    The log is a record of the run, not its state (that is the checkpoint): a damaged line (cut
    short by a crash, not UTF-8, not an object, a number field holding something else) is
    skipped with one `warning: FILE line N: ...; skipped` through `warn`, and never stops a run.
    """

    def __init__(self, path: str | os.PathLike, warn: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.warn = warn if warn is not None else _warn_stderr

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json_line(record))

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for number, raw in enumerate(self.path.read_bytes().splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = check_record(json.loads(raw.decode("utf-8")))
            except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
                self.warn(f"warning: {self.path} line {number}: {_reason(e)}; skipped")
                continue
            records.append(record)
        return records

    def truncate_after(self, step: int) -> None:
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        atomic_write(self.path, "".join(json_line(r) for r in kept))


def _warn_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _reason(error: Exception) -> str:
    if isinstance(error, UnicodeDecodeError):
        return f"not valid UTF-8 (byte 0x{error.object[error.start]:02x} at column {error.start})"
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON ({error.msg}, column {error.colno})"
    return str(error)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_line(record: dict[str, Any]) -> str:
    """One strict-JSON line: non-finite floats become null (json.dumps would write NaN)."""
    clean = {key: _finite_or_none(value) for key, value in record.items()}
    return json.dumps(clean, allow_nan=False) + "\n"


# Fields a reader may do arithmetic on: each must be a number (or null) for the line to count.
_TEXT_FIELDS = frozenset({"event", "reason"})


def check_record(record: Any) -> dict[str, Any]:
    """`record` if it is a metrics line readers can use, else ValueError saying what is wrong:
    an object whose `step` is an int and whose other fields are numbers or null (`event` and
    `reason` of an end-of-run record are text)."""
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
    step = record.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        raise ValueError(f"'step' is {step!r}, not an integer")
    for key, value in record.items():
        if key in _TEXT_FIELDS:
            if not isinstance(value, str):
                raise ValueError(f"{key!r} is {value!r}, not text")
        elif value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{key!r} is {value!r}, not a number")
    return record


def plot_losses(
    records: list[dict[str, Any]],
    out: str | os.PathLike,
    title: str = "",
    baseline: float | None = None,
) -> None:
    """Train/val loss against steps (left) and wall-clock seconds (right), with the unigram
    `baseline` (the loss of the best context-free model) dashed; written atomically."""
    # The object API with the Agg canvas: no pyplot, no global state, no GUI backend to import.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    def series(key: str) -> tuple[list[float], list[float], list[float]]:
        rows = [r for r in records if r.get(key) is not None and math.isfinite(r[key])]
        rows = [r for r in rows if r.get("wallclock") is not None]
        return [r["step"] for r in rows], [r["wallclock"] for r in rows], [r[key] for r in rows]

    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for key, style, label in (("train_loss", "-", "train"), ("val_loss", "o-", "validation")):
        steps, seconds, values = series(key)
        by_step.plot(steps, values, style, label=label, markersize=3)
        by_time.plot(seconds, values, style, label=label, markersize=3)
    for ax in (by_step, by_time):
        if baseline is not None and math.isfinite(baseline):
            ax.axhline(
                baseline, linestyle="--", color="gray", label=f"unigram baseline {baseline:.3f}"
            )
        ax.grid(alpha=0.3)
        ax.legend()
    by_step.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    by_step.set_xlabel("step")
    by_time.set_xlabel("wall-clock (s)")
    by_step.set_ylabel("loss (nats/token)")
    if title:
        fig.suptitle(title, fontsize=10)
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
