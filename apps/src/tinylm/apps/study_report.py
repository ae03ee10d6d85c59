"""A study's report.md: tables, overlaid curves, sweep plots, samples and what the numbers say.

Everything is read back from the point directories (metrics.jsonl, sample.txt) and the states the
runner recorded; no number is written here that a run did not produce. A point counts as
diverged when train-lm stopped it (non-finite loss), or when its logged train loss *rose* more
than RISE nats above the lowest value it had reached: it blew up, even if the schedule's decay
later pulled it back. A rise, not a level: a model without RMSNorm starts far above ln(vocab)
(large initial logits) and may still train normally; healthy runs here wobble by < 0.2 nats
between log points, lr 1 rose by 1.3.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinylm.apps.study import StudyPlan
from tinylm.apps.study_plots import plot_curves, plot_sweep
from tinylm.apps.study_run import PointState
from tinylm.nn import model_stats
from tinylm.train import MetricsLog, atomic_write, load_config

__all__ = ["PointResult", "collect_results", "write_study_report"]

RISE = 1.0  # nats above the running minimum of the logged train loss


@dataclass(frozen=True)
class PointResult:
    name: str
    label: str
    value: float | None
    status: str  # done | diverged | oom | failed | partial | new
    records: list[dict[str, Any]]
    final: float | None  # last val loss
    best: float | None
    best_step: int | None
    steps: int
    wallclock: float | None
    diverged_step: int | None
    sample: str
    params: int | None = None  # from the run's own config.toml

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def collect_results(
    plan: StudyPlan, study_dir: Path, states: dict[str, PointState]
) -> list[PointResult]:
    out = []
    for point in plan.points:
        run_dir = study_dir / point.name
        state = states.get(point.name, PointState("new"))
        records = [r for r in MetricsLog(run_dir / "metrics.jsonl").read() if "step" in r]
        evals = [r for r in records if _is_num(r.get("val_loss")) and math.isfinite(r["val_loss"])]
        status, diverged_step = state.status, state.step if state.status == "diverged" else None
        lowest = math.inf
        for r in records:
            loss = r.get("train_loss")
            if not _is_num(loss):
                continue
            if not math.isfinite(loss) or loss > lowest + RISE:
                if status in ("done", "partial"):
                    status = "diverged"
                diverged_step = diverged_step if diverged_step is not None else r["step"]
                break
            lowest = min(lowest, loss)
        if status == "diverged" and diverged_step is None and records:
            diverged_step = records[-1]["step"]
        best = min(evals, key=lambda r: r["val_loss"]) if evals else None
        sample_path, saved = run_dir / "sample.txt", run_dir / "config.toml"
        params = model_stats(load_config(saved).model).params if saved.is_file() else None
        out.append(
            PointResult(
                name=point.name,
                label=point.label or point.name,
                value=point.value,
                status=status,
                records=records,
                final=evals[-1]["val_loss"] if evals else None,
                best=best["val_loss"] if best else None,
                best_step=best["step"] if best else None,
                steps=max((r["step"] for r in records), default=0),
                wallclock=max((r["wallclock"] for r in records if "wallclock" in r), default=None),
                diverged_step=diverged_step,
                sample=sample_path.read_text() if sample_path.is_file() else "",
                params=params,
            )
        )
    return out


def _f(v: float | None, fmt: str = ".4f") -> str:
    return "—" if v is None else format(v, fmt)


def _g(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}"


def _findings(plan: StudyPlan, results: list[PointResult]) -> list[str]:
    """The computed sentences: best point, divergence, deltas."""
    ok = [r for r in results if r.status == "done" and r.final is not None]
    bad = [r for r in results if r.diverged]
    lines = []
    best = min(ok, key=lambda r: r.final) if ok else None
    if plan.study == "lr" and best:
        stable = max(r.value for r in ok)
        lines.append(f"- Best lr **{best.value:g}** (final val loss {best.final:.4f}).")
        lines.append(f"- Largest stable lr: **{stable:g}** (finished without blowing up).")
        if bad:
            low = min(r.value for r in bad)
            where = "; ".join(f"lr {r.value:g} at step {r.diverged_step}" for r in bad)
            above = [r for r in results if r.value is not None and r.value >= low]
            edge = f"lr ≥ {low:g} diverged" if all(r.diverged for r in above) else "Diverged"
            lines.append(f"- {edge}: {where}.")
        else:
            lines.append("- No rate diverged: the sweep does not bracket the unstable edge.")
    elif plan.study == "batch" and best:
        lines.append(f"- Best final val loss at batch **{best.value:g}** ({best.final:.4f}).")
        largest = max(r.value for r in results if r.status == "done")
        lines.append(f"- Largest batch trained: {largest:g}.")
        oom = [r for r in results if r.status == "oom"]
        if oom:
            lines.append(f"- Out of memory from batch {min(r.value for r in oom):g}.")
        fast = [r for r in ok if r.wallclock]
        if fast:
            quick = min(fast, key=lambda r: r.wallclock)
            lines.append(f"- Fastest: batch {quick.value:g} in {quick.wallclock:.0f} s.")
    elif plan.study in ("ablations", "recipe"):
        base = next((r for r in results if r.name == "baseline"), None)
        for r in results:
            if r is base:
                continue
            if r.diverged:
                lines.append(f"- {r.label}: diverged at step {r.diverged_step}.")
            elif base and base.final is not None and r.final is not None:
                delta = r.final - base.final
                lines.append(f"- {r.label}: {r.final:.4f}, {delta:+.4f} nats vs the baseline.")
    for r in results:
        if r.status in ("failed", "new", "partial"):
            lines.append(f"- {r.name}: {r.status} (no final result yet).")
    return lines


def write_study_report(
    plan: StudyPlan, study_dir: str | os.PathLike, states: dict[str, PointState]
) -> Path:
    """Write <study_dir>/report.md and its PNGs (atomically); return the report's path."""
    study_dir = Path(study_dir)
    results = collect_results(plan, study_dir, states)
    lines = [f"# Study `{plan.study}` (scale {plan.scale})", ""]
    lines += [_summary(plan, len(results)), ""]
    lines += ["## Findings", "", *_findings(plan, results), ""]
    lines += _plots(plan, study_dir, results)
    lines += _results_table(results)
    lines += _samples(results)
    lines += [
        "## Reproduce",
        "",
        f"Each point is a run directory `{study_dir}/<point>` (config.toml, metrics.jsonl, "
        "train.log with its exact command, checkpoints/). `study "
        f"{plan.study} --print-commands` prints the commands.",
        "",
    ]
    return atomic_write(study_dir / "report.md", "\n".join(lines))


def _summary(plan: StudyPlan, runs: int) -> str:
    """One paragraph: how many runs of which model, the reference schedule, shared overrides."""
    ref = plan.reference
    m, t = ref.model, ref.train
    return (
        f"{runs} train-lm runs from `{plan.config.name}`: {m.num_layers} layers, d_model "
        f"{m.d_model}, {m.num_heads} heads, d_ff {m.d_ff}, context {m.context_length}, vocab "
        f"{m.vocab_size:,}; reference: {t.max_steps:,} steps of batch {t.batch_size}, lr "
        f"{ref.optim.lr:g}. Shared overrides: "
        + (", ".join(f"`{k}={v}`" for k, v in plan.overrides.items()) or "none")
        + "."
    )


def _plots(plan: StudyPlan, study_dir: Path, results: list[PointResult]) -> list[str]:
    """Draw the curves (by step, by wall-clock) and the sweep plot; their report lines."""
    series = [
        {"label": r.label, "records": r.records, "diverged": r.diverged,
         "diverged_step": r.diverged_step}
        for r in results
    ]  # fmt: skip
    name = f"{plan.study} study"
    plot_curves(series, study_dir / "curves_step.png", x="step", xlabel="step", title=name)
    plot_curves(
        series, study_dir / "curves_wallclock.png", x="wallclock", xlabel="wall-clock (s)",
        title=name,
    )  # fmt: skip
    lines = ["## Validation loss curves", "", "![by step](curves_step.png)", ""]
    lines += ["![by wall-clock](curves_wallclock.png)", ""]
    if plan.sweep:
        what = "lr" if plan.sweep == "optim.lr" else "batch"
        xlabel = "peak learning rate" if what == "lr" else "batch size (sequences)"
        sweep = [
            {"value": r.value, "final": r.final, "best": r.best, "status": r.status}
            for r in results
        ]
        plot_sweep(
            sweep, study_dir / f"loss_vs_{what}.png", xlabel=xlabel, title=f"loss vs {what}",
            log_base=10 if what == "lr" else 2,
        )  # fmt: skip
        lines += [f"![loss vs {what}](loss_vs_{what}.png)", ""]
    return lines


def _results_table(results: list[PointResult]) -> list[str]:
    lines = ["## Results", ""]
    lines += [
        "| point | setting | status | steps | final val | best val (step) | final train | "
        "wall-clock s | params |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        train = next((x["train_loss"] for x in reversed(r.records) if "train_loss" in x), None)
        status = r.status + (f" at step {r.diverged_step}" if r.diverged else "")
        best = f"{_f(r.best)} ({r.best_step})" if r.best is not None else "—"
        lines.append(
            f"| {r.name} | {r.label} | {status} | {r.steps} | {_f(r.final)} | {best} | "
            f"{_g(train)} | {_f(r.wallclock, '.1f')} | "
            + (f"{r.params:,}" if r.params else "—")
            + " |"
        )
    lines.append("")
    return lines


def _samples(results: list[PointResult]) -> list[str]:
    """Every point's sample, best first (``` escaped: each stays one block)."""
    ranked = sorted(results, key=lambda r: (r.status != "done", r.final or math.inf))
    lines = ["## Samples", ""]
    for i, r in enumerate(ranked):
        if not r.sample:
            continue
        head = " — best point" if i == 0 and r.status == "done" else ""
        lines += [f"### {r.name}{head}", "", "```text", r.sample.replace("```", "ʼʼʼ"), "```", ""]
    return lines
