"""report.md: what a run was, what it cost and what it reached, with the loss curve and a sample."""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any

import torch

from tinylm.nn import model_stats
from tinylm.train import GPU_PEAK_FLOPS, MetricsLog, atomic_write, resolve_device

__all__ = ["H100_BF16_PEAK_FLOPS", "report_title", "write_report"]

# NVIDIA H100 SXM, dense bf16 tensor-core peak (the 1979 TFLOP/s figure assumes 2:4 sparsity).
H100_BF16_PEAK_FLOPS = GPU_PEAK_FLOPS["H100"][0]


def _device(train) -> tuple[str, bool]:
    """(description, is CUDA) of the device train() ran on ([train] section), resolved as
    train resolves it ("auto": cuda, then mps, then cpu)."""
    device = resolve_device(train.device)
    shown = device.type if train.device == "auto" else train.device
    if device.type == "cuda":
        return f"{shown} ({torch.cuda.get_device_name(device)})", True
    return shown, False


def _seconds(value: float) -> str:
    if value >= 3600:
        return f"{value:.0f} s ({value / 3600:.2f} h)"
    return f"{value:.1f} s" if value >= 60 else f"{value:.2f} s"


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:.0f} B"


def _switches(m) -> str:
    """The modern-recipe switches of a ModelConfig that are on, or "none (the plain model)"."""
    on = [
        name
        for name, value in (
            ("QK-norm", m.qk_norm),
            (f"logit softcap {m.logit_softcap:g}", m.logit_softcap > 0),
            (f"{m.value_embeddings} value-embedding tables", m.value_embeddings > 0),
            ("U-net skips", m.unet_skips),
            ("zero-init projections", m.zero_init_proj),
            ("parameter-free norms", m.parameter_free_norm),
        )
        if value
    ]
    if m.ffn == "relu2":
        on.insert(0, "ReLU²")
    return ", ".join(on) or "none (the plain model)"


def _optimizer_lines(o, t) -> list[str]:
    """Optimizer set (per role) and schedule, from [optim] (and [train]'s steps and clock)."""
    end = o.cosine_steps or t.max_steps
    shape = f"decay over the last {o.decay_fraction:.0%}" if o.schedule == "wsd" else "cosine"
    clock = f"fitted to {t.max_seconds:g} s of wall-clock" if o.fit_to_time else f"to step {end:,}"
    lines = [
        f"- schedule: {o.schedule} ({o.warmup_steps} warmup steps, {shape}, {clock}), every "
        f"role down to {o.min_lr_ratio:.3g} × its peak; grad clip {o.grad_clip}"
    ]

    def adamw(role: str, lr, betas, decay) -> str:
        lr = o.lr if lr is None else lr
        betas = (o.beta1, o.beta2) if betas is None else tuple(betas)
        decay = o.weight_decay if decay is None else decay
        return f"{role} AdamW lr {lr:g} betas {betas} decay {decay:g}"

    matrix = (
        f"matrix Muon lr {o.muon_lr:g} momentum {o.muon_momentum:g}"
        + (
            f" (warmup from {o.momentum_start:g} over {o.momentum_warmup_steps} steps)"
            if o.momentum_warmup_steps
            else ""
        )
        + f" decay {o.muon_weight_decay:g}"
        if o.optimizer == "muon"
        else adamw("matrix", o.lr, None, None)
    )
    roles = [
        matrix,
        adamw("embedding", o.embedding_lr, o.embedding_betas, o.embedding_weight_decay),
        adamw("head", o.head_lr, o.head_betas, o.head_weight_decay),
        adamw("scalar", o.scalar_lr, o.scalar_betas, o.scalar_weight_decay),
    ]
    lines.append(f"- optimizer: {o.optimizer}: " + "; ".join(roles))
    return lines


def report_title(app, model) -> str:
    """The headline from the settings the run actually used (never a number from a comment):
    `app` ([app]) and `model` ([model], a `ModelConfig`)."""
    m = model
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
    model,
    compute,
    optim,
    train,
    evaluation,
    sample,
    result,
    prepared,
    preprocess_seconds: float,
    budget: dict[str, Any] | None = None,
) -> Path:
    """Write `<out>/report.md` (atomically) and return its path.

    Takes the config sections it reads, not the whole config: `app` ([app]), `model`,
    `compute`, `optim`, `train`, `evaluation` ([eval]) and `sample`; `prepared` is the
    `tinylm.train.PreparedData` of `prepare_text_files` (its per-step `steps`)."""
    out = Path(out)
    records = MetricsLog(out / "metrics.jsonl").read()
    stats = model_stats(model)
    lines = [f"# {report_title(app, model)}", ""]
    lines += _result_section(records, stats, model, train, result)
    if budget is not None:
        lines += _budget_section(budget, train)
    lines += ["## Loss curve", "", "![loss curve](loss.png)", ""]
    if result.sample:
        lines += _sample_section(sample, result.sample)
    lines += _model_section(model, compute, optim, train, evaluation, stats, result.tokens)
    lines += _data_section(app, prepared, preprocess_seconds)
    lines += _files_section(budget is not None)
    return atomic_write(out / "report.md", "\n".join(lines))


def _result_section(records: list[dict], stats, m, t, result) -> list[str]:
    """Losses reached, steps and tokens, wall-clock, throughput and MFU."""
    evals = [r for r in records if r.get("val_loss") is not None]
    lines = ["## Result", ""]
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
    tokens_per_step = t.batch_size * t.grad_accum * m.context_length
    device, cuda = _device(t)
    lines.append(f"- final train loss: {train_loss:.4f}")
    lines.append(
        f"- unigram baseline (entropy of the val tokens): {result.unigram_entropy:.4f} nats/token"
    )
    lines.append(f"- steps: {result.step:,} of {t.max_steps:,} (stopped: {result.stopped})")
    lines.append(f"- tokens seen: {result.tokens:,} ({tokens_per_step:,} per step)")
    lines.append(f"- training wall-clock: {_seconds(result.wallclock)} on {device}")
    if result.wallclock > 0:
        lines += _speed_lines(records, stats, result, cuda)
    lines.append("")
    return lines


def _speed_lines(records: list[dict], stats, result, cuda: bool) -> list[str]:
    """Throughput (overall and the median while training) and MFU."""
    overall = result.tokens / result.wallclock
    steady = [r["tokens_per_s"] for r in records[1:] if r.get("tokens_per_s")]
    speed = statistics.median(steady) if steady else overall
    lines = [
        f"- throughput: {overall:,.0f} tokens/s overall (with eval and checkpoints), "
        f"{speed:,.0f} tokens/s median while training"
    ]
    flops = stats.train_flops_per_token / 1e6
    logged = [r for r in records[1:] if r.get("mfu") and r.get("flops_per_s")]
    if logged:  # train-lm logs MFU on every device (peak: config, GPU table or measured)
        row = sorted(logged, key=lambda r: r["mfu"])[len(logged) // 2]
        lines.append(
            f"- MFU: {100 * row['mfu']:.1f}% (median of metrics.jsonl: "
            f"{row['flops_per_s'] / 1e12:.3g} TFLOP/s = tokens/s × {flops:.1f} MFLOP/token, "
            f"÷ {row['flops_per_s'] / row['mfu'] / 1e12:.3g} TFLOP/s peak)"
        )
    elif cuda:  # runs from before train-lm logged MFU
        mfu = speed * stats.train_flops_per_token / H100_BF16_PEAK_FLOPS
        lines.append(
            f"- MFU: {100 * mfu:.1f}% (median tokens/s × {flops:.1f} MFLOP/token ÷ "
            f"{H100_BF16_PEAK_FLOPS / 1e12:g} TFLOP/s, the H100 SXM dense bf16 peak)"
        )
    return lines


def _budget_section(budget: dict[str, Any], t) -> list[str]:
    """The time budget: used against total, what counts, and the calibrated plan (if any)."""
    used, total = budget["used_seconds"], budget["budget_seconds"]
    verdict = "**respected**" if budget["respected"] else "**EXCEEDED**"
    lines = ["## Time budget", ""]
    lines.append(
        f"- budget: {_seconds(total)}; used {_seconds(used)} ({100 * used / total:.1f}%): {verdict}"
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
            f"{plan['calibrate_steps']} steps -> {plan['max_steps']:,} steps (the schedule "
            f"ends there), predicted {_seconds(plan['predicted_seconds'])}; hard stop at "
            f"{_seconds(plan['max_seconds'])} of training clock"
        )
    else:
        lines.append(
            f"- no calibration: stopped by the hard limit train.max_seconds = "
            f"{_seconds(t.max_seconds)}"
        )
    lines.append("")
    return lines


def _sample_section(sample, text: str) -> list[str]:
    """The sample and the [sample] settings that drew it (``` escaped: it stays one block)."""
    return [
        "## Sample",
        "",
        f"prompt {sample.prompt!r}, temperature {sample.temperature}, "
        f"top-p {sample.top_p}, {sample.max_new_tokens} new tokens at most:",
        "",
        "```text",
        text.replace("```", "ʼʼʼ"),
        "```",
        "",
    ]


def _model_section(m, c, optim, t, evaluation, stats, tokens: int) -> list[str]:
    """Shape, recipe switches, kernels, size and FLOPs, optimizer and batch."""
    lines = ["## Model", ""]
    lines.append(
        f"- {m.num_layers} layers, d_model {m.d_model}, {m.num_heads} heads, d_ff {m.d_ff} "
        f"({m.ffn}), context {m.context_length}, vocab {m.vocab_size:,}, RoPE θ {m.rope_theta:g}, "
        f"norm {m.norm}, tied embeddings {m.tie_embeddings}"
    )
    lines.append(f"- recipe switches: {_switches(m)}")
    lines.append(
        f"- compute: attention {c.attention}, fused QKV {c.fused_qkv}, loss {c.loss}, "
        f"dtype {c.dtype}, compile {c.compile}"
    )
    lines.append(
        f"- parameters: {stats.params:,} ({stats.non_embedding_params:,} non-embedding, "
        "lm_head included)"
    )
    lines.append(
        f"- FLOPs per token: {stats.forward_flops_per_token:.3g} forward, "
        f"{stats.train_flops_per_token:.3g} training (matmuls, 3× forward); "
        f"whole run ≈ {stats.train_flops_per_token * tokens:.3g} FLOPs"
    )
    lines += _optimizer_lines(optim, t)
    lines.append(
        f"- batch: {t.batch_size} × {t.grad_accum} accumulation × {m.context_length} tokens; "
        f"eval every {evaluation.interval} steps on {evaluation.iters} batches"
    )
    lines.append("")
    return lines


def _data_section(app, prepared, preprocess_seconds: float) -> list[str]:
    """Tokenizer and token files: sizes, sources, times, and what came from the cache."""
    lines = ["## Data and preprocessing", ""]
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
    return lines


def _files_section(budgeted: bool) -> list[str]:
    return [
        "## Files",
        "",
        "`run.toml` (this run's full config, with `[app]`), `config.toml` (train's part), "
        "`metrics.jsonl`, `loss.png`, `sample.txt`, `checkpoints/`, `data/` (tokenizer and "
        "token files)" + (", `budget.json`" if budgeted else ""),
        "",
    ]
