"""report.md: what a run was, what it cost and what it reached, with the loss curve and a sample."""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any

import torch

from tinylm.nn import model_stats
from tinylm.train import MetricsLog, atomic_write

__all__ = ["H100_BF16_PEAK_FLOPS", "report_title", "write_report"]

# NVIDIA H100 SXM, dense bf16 tensor-core peak (the 1979 TFLOP/s figure assumes 2:4 sparsity).
H100_BF16_PEAK_FLOPS = 989e12


def _device(config) -> tuple[str, bool]:
    """(description, is CUDA) of the device train() ran on."""
    wanted = config.train.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and torch.cuda.is_available():
        index = int(wanted.split(":")[1]) if ":" in wanted else 0
        return f"{wanted} ({torch.cuda.get_device_name(index)})", True
    return wanted, False


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value:.0f} s ({value / 3600:.2f} h)"
    return f"{value:.1f} s" if value >= 60 else f"{value:.2f} s"


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:.0f} B"


def report_title(app, config) -> str:
    """The headline from the settings the run actually used (never a number from a comment)."""
    m = config.model
    params = model_stats(m).params
    parts = [
        f"{params / 1e6:.3g}M-parameter model",
        f"{m.vocab_size / 1000:g}K BPE" if m.vocab_size >= 1000 else f"{m.vocab_size} BPE",
        f"context {m.context_length}",
    ]
    if app.budget_hours > 0:
        parts.append(f"{_seconds(app.budget_seconds)} training budget")
    return f"{app.title or 'tinylm run'}: " + ", ".join(parts)


def write_report(
    out: str | os.PathLike,
    *,
    app,
    config,
    result,
    prepared,
    preprocess_seconds: float,
    budget: dict[str, Any] | None = None,
) -> Path:
    """Write `<out>/report.md` (atomically) and return its path."""
    out = Path(out)
    records = MetricsLog(out / "metrics.jsonl").read()
    evals = [r for r in records if r.get("val_loss") is not None]
    stats = model_stats(config.model)
    m, t = config.model, config.train
    device, cuda = _device(config)
    tokens_per_step = t.batch_size * t.grad_accum * m.context_length
    lines = [f"# {report_title(app, config)}", ""]

    lines += ["## Result", ""]
    if evals:
        best = min(evals, key=lambda r: r["val_loss"])
        lines.append(
            f"- final val loss: **{evals[-1]['val_loss']:.4f}** (step {evals[-1]['step']:,})"
        )
        lines.append(f"- best val loss: **{best['val_loss']:.4f}** (step {best['step']:,})")
    else:
        lines.append("- val loss: none logged (the run ended before its first evaluation)")
    train_loss = result.train_loss
    if not math.isfinite(train_loss) and records:  # a resume that had no step left to run
        train_loss = records[-1]["train_loss"]
    lines.append(f"- final train loss: {train_loss:.4f}")
    lines.append(
        f"- unigram baseline (entropy of the val tokens): {result.unigram_entropy:.4f} nats/token"
    )
    lines.append(f"- steps: {result.step:,} of {t.max_steps:,} (stopped: {result.stopped})")
    lines.append(f"- tokens seen: {result.tokens:,} ({tokens_per_step:,} per step)")
    lines.append(f"- training wall-clock: {_seconds(result.wallclock)} on {device}")
    if result.wallclock > 0:
        overall = result.tokens / result.wallclock
        steady = [r["tokens_per_s"] for r in records[1:] if r.get("tokens_per_s")]
        speed = statistics.median(steady) if steady else overall
        lines.append(
            f"- throughput: {overall:,.0f} tokens/s overall (with eval and checkpoints), "
            f"{speed:,.0f} tokens/s median while training"
        )
        if cuda:
            mfu = speed * stats.train_flops_per_token / H100_BF16_PEAK_FLOPS
            flops = stats.train_flops_per_token / 1e6
            lines.append(
                f"- MFU: {100 * mfu:.1f}% (median tokens/s × {flops:.1f} MFLOP/token ÷ "
                "989 TFLOP/s, the H100 SXM dense bf16 peak)"
            )
    lines.append("")

    if budget is not None:
        used, total = budget["used_seconds"], budget["budget_seconds"]
        verdict = "**respected**" if budget["respected"] else "**EXCEEDED**"
        lines += ["## Time budget", ""]
        lines.append(
            f"- budget: {_seconds(total)}; used {_seconds(used)} ({100 * used / total:.1f}%): "
            f"{verdict}"
        )
        lines.append(
            "- counted: everything from the start of training to the end of the last train() "
            "call (calibration, compilation, steps, periodic and final eval, checkpoints, curve, "
            "sample); tokenizer training and encoding are preprocessing, reported below"
        )
        plan = budget.get("plan")
        if plan:
            lines.append(
                f"- plan: {plan['step_seconds'] * 1e3:.1f} ms/step measured over the first "
                f"{plan['calibrate_steps']} steps -> {plan['max_steps']:,} steps (the cosine "
                f"ends there), predicted {_seconds(plan['predicted_seconds'])}; hard stop at "
                f"{_seconds(plan['max_seconds'])} of training clock"
            )
        else:
            lines.append(
                f"- no calibration: stopped by the hard limit train.max_seconds = "
                f"{_seconds(t.max_seconds)}"
            )
        lines.append("")

    lines += ["## Loss curve", "", "![loss curve](loss.png)", ""]
    if result.sample:
        lines += ["## Sample", ""]
        lines.append(
            f"prompt {config.sample.prompt!r}, temperature {config.sample.temperature}, "
            f"top-p {config.sample.top_p}, {config.sample.max_new_tokens} new tokens at most:"
        )
        lines += ["", "```text", result.sample.replace("```", "ʼʼʼ"), "```", ""]

    lines += ["## Model", ""]
    lines.append(
        f"- {m.num_layers} layers, d_model {m.d_model}, {m.num_heads} heads, d_ff {m.d_ff} "
        f"({m.ffn}), context {m.context_length}, vocab {m.vocab_size:,}, RoPE θ {m.rope_theta:g}, "
        f"attention {m.attention}, tied embeddings {m.tie_embeddings}"
    )
    lines.append(
        f"- parameters: {stats.params:,} ({stats.non_embedding_params:,} non-embedding, "
        "lm_head included)"
    )
    lines.append(
        f"- FLOPs per token: {stats.forward_flops_per_token:.3g} forward, "
        f"{stats.train_flops_per_token:.3g} training (matmuls, 3× forward); "
        f"whole run ≈ {stats.train_flops_per_token * result.tokens:.3g} FLOPs"
    )
    o = config.optim
    lines.append(
        f"- optimizer: AdamW lr {o.lr:g} → {o.min_lr:g} (cosine to step "
        f"{o.cosine_steps or t.max_steps:,}, {o.warmup_steps} warmup), betas ({o.beta1}, "
        f"{o.beta2}), weight decay {o.weight_decay}, grad clip {o.grad_clip}"
    )
    lines.append(
        f"- batch: {t.batch_size} × {t.grad_accum} accumulation × {m.context_length} tokens; "
        f"dtype {t.dtype}, compile {t.compile}; eval every {config.eval.interval} steps on "
        f"{config.eval.iters} batches"
    )
    lines.append("")

    lines += ["## Data and preprocessing", ""]
    tok = prepared.steps["tokenizer"]
    cached = " (cached from an earlier run)" if tok.get("cached") else ""
    lines.append(
        f"- tokenizer: byte-level BPE, {tok['vocab_len']:,} tokens (asked {tok['vocab_size']:,}), "
        f"trained on {_size(tok['trained_on_bytes'])} of `{app.train_text}` in "
        f"{_seconds(tok['seconds'])}{cached}"
    )
    for split, source in (("train", app.train_text), ("val", app.val_text)):
        meta = prepared.steps[split]
        cached = " (cached)" if meta.get("cached") else ""
        lines.append(
            f"- {split}: `{source}`, {_size(meta['bytes'])} → {meta['tokens']:,} tokens "
            f"({meta['bytes'] / max(meta['tokens'], 1):.2f} bytes/token), encoded in "
            f"{_seconds(meta['seconds'])}{cached}"
        )
    lines.append(f"- preprocessing time in this invocation: {_seconds(preprocess_seconds)}")
    lines.append("")
    lines += ["## Files", ""]
    lines.append(
        "`run.toml` (this run's full config, with `[app]`), `config.toml` (train's part), "
        "`metrics.jsonl`, `loss.png`, `sample.txt`, `checkpoints/`, `data/` (tokenizer and "
        "token files)" + (", `budget.json`" if budget is not None else "")
    )
    lines.append("")

    return atomic_write(out / "report.md", "\n".join(lines))
