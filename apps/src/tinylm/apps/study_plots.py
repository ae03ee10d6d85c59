"""The study figures: overlaid loss curves (by step, by wall-clock) and loss against a swept value.

Diverged points stay on the figures: their train loss is drawn dashed up to the last finite value
and marked ×, and the y axis turns logarithmic when the losses span more than 3×, so one blow-up
does not flatten every other curve. Figures use matplotlib's object API with the Agg canvas (no
pyplot state) and are written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from tinylm.train import atomic_open

__all__ = ["plot_curves", "plot_sweep"]


def _figure(size=(8, 5)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out: Path) -> Path:
    fig.tight_layout()
    with atomic_open(out) as f:
        fig.savefig(f, format="png", dpi=100)
    return out


def _finite(records: list[dict[str, Any]], key: str, x: str) -> tuple[list[float], list[float]]:
    rows = [
        r
        for r in records
        if isinstance(r.get(key), int | float) and math.isfinite(r[key]) and x in r
    ]
    return [r[x] for r in rows], [r[key] for r in rows]


def plot_curves(
    series: list[dict[str, Any]], out: str | os.PathLike, *, x: str, xlabel: str, title: str
) -> Path:
    """Val loss of every point against `x` ("step" or "wallclock"); series items hold
    `label`, `records` (metrics.jsonl) and `diverged` (bool)."""
    fig = _figure()
    ax = fig.add_subplot()
    values: list[float] = []
    for i, s in enumerate(series):
        color = f"C{i % 10}"
        xs, ys = _finite(s["records"], "val_loss", x)
        values += ys
        label = s["label"] + (" (diverged)" if s["diverged"] else "")
        if xs:
            ax.plot(xs, ys, "o-", color=color, markersize=3, label=label)
        if s["diverged"]:
            tx, ty = _finite(s["records"], "train_loss", x)
            values += ty
            if tx:
                ax.plot(tx, ty, "--", color=color, alpha=0.7, label=None if xs else label)
                at = s.get("diverged_step")
                i = next((k for k, v in enumerate(tx) if at is not None and v >= at), -1)
                if x != "step":  # the same record, by its wall-clock
                    steps, _ = _finite(s["records"], "train_loss", "step")
                    i = next((k for k, v in enumerate(steps) if at is not None and v >= at), -1)
                ax.plot([tx[i]], [ty[i]], "x", color=color, markersize=10, mew=2)
    if values and max(values) > 3 * min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title + (" (dashed: train loss of diverged points; ×: divergence)" if any(
        s["diverged"] for s in series) else ""), fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, Path(out))


def plot_sweep(
    points: list[dict[str, Any]],
    out: str | os.PathLike,
    *,
    xlabel: str,
    title: str,
    log_base: float = 10,
) -> Path:
    """Final and best val loss against the swept value (log x); diverged/OOM points as ×
    at the top edge. Items hold `value`, `final`, `best` (floats or None), `status`."""
    fig = _figure((7, 4.5))
    ax = fig.add_subplot()
    ok = [p for p in points if p["final"] is not None and p["status"] == "done"]
    ax.plot([p["value"] for p in ok], [p["final"] for p in ok], "o-", label="final val loss")
    ax.plot([p["value"] for p in ok], [p["best"] for p in ok], "s--", label="best val loss")
    bad = [p for p in points if p not in ok]
    if bad:
        known = [p["final"] for p in points if p["final"] is not None] or [1.0]
        top = max(known)
        for p in bad:
            ax.plot([p["value"]], [top], "x", color="C3", markersize=10, mew=2)
            ax.annotate(p["status"], (p["value"], top), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8, color="C3")  # fmt: skip
    ax.set_xscale("log", base=log_base)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, Path(out))
