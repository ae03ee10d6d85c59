"""The phases of the GPU check: the CUDA tests, training and decoding rows, the bf16 loss check.

Each returns plain dicts (rows of gpu_check.json) and skips itself, with a status saying so, once
the overall `Budget` is spent.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.harness import Budget, make_hf, time_steps
from bench.nn_parts import (
    FAST,
    decode_fn,
    fast_compute,
    make_tinylm,
    time_decode,
    train_step_fn,
)
from tinylm.nn import cross_entropy, model_stats, unchecked

ROOT = Path(__file__).resolve().parent.parent
BF16_LOSS_RTOL = 0.03  # |loss_bf16 - loss_fp32| <= 3% of loss_fp32 after 50 steps


def run_pytest(device: str, budget: Budget) -> dict:
    if device != "cuda":
        return {"status": "skipped", "reason": "no CUDA device"}
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    cmd += ["packages", "tests"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "summary": "pytest -m gpu ran past 150 s"}
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    summary = lines[-1] if lines else ""
    ok = proc.returncode in (0, 5)  # 5 = no tests collected
    return {
        "status": "passed" if ok else "failed",
        "returncode": proc.returncode,
        "summary": summary,
        "tail": lines[-30:],
    }


def has_targets_forward() -> bool:
    """Whether TransformerLM.forward(ids, targets=...) (the fused loss) exists yet."""
    from tinylm.nn import TransformerLM

    return "targets" in inspect.signature(TransformerLM.forward).parameters


def _train_one(impl, config, batch, device, steps, compile_, amp) -> dict:
    """One training row: tokens/s of `impl` ("tinylm" or "hf") at this batch, or its failure."""
    row = {"batch": batch, "impl": impl}
    torch.manual_seed(0)
    if impl == "tinylm":
        model = make_tinylm(config, fast_compute(compile_), device=device)
    else:
        model = make_hf(config, device=device)
    step = train_step_fn(model, impl, config, batch, device, amp, compiled=compile_)
    t0 = time.perf_counter()
    try:
        seconds = time_steps(step, steps, device)
    except torch.OutOfMemoryError:
        return {**row, "status": "out of memory"}
    finally:
        del model, step
        if device == "cuda":
            torch.cuda.empty_cache()
    return {
        **row,
        "status": "ok",
        "tokens_per_s": batch * config.context_length / seconds,
        "flops_per_token": model_stats(config).train_flops_per_token,
        "compiled": compile_,
        "autocast": str(amp) if amp else None,
        "wall_s_incl_compile": time.perf_counter() - t0,
    }


def train_rows(shape_name, config, batches, device, steps, compile_, amp, budget) -> list[dict]:
    rows = []
    for batch in batches:
        pair = {}
        for impl in ("tinylm", "hf"):
            if not budget.left():
                row = {"batch": batch, "impl": impl, "status": "skipped: time budget"}
            else:
                row = _train_one(impl, config, batch, device, steps, compile_, amp)
            rows.append({"shape": shape_name, **row})
            if row["status"] == "ok":
                pair[impl] = row["tokens_per_s"]
        if len(pair) == 2:
            ratio = pair["tinylm"] / pair["hf"]
            rows.append(
                {
                    "shape": shape_name,
                    "batch": batch,
                    "impl": "ratio",
                    "status": "ok",
                    "ratio": ratio,
                }
            )
    return rows


def decode_rows(shape_name, config, device, new_tokens, budget, rounds=2) -> list[dict]:
    prompt = torch.randint(
        0, config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(1)
    )
    prompt = prompt.to(device)
    result = {}
    rows = []
    for impl in ("tinylm", "hf"):
        if not budget.left():
            rows.append({"shape": shape_name, "impl": impl, "status": "skipped: time budget"})
            continue
        torch.manual_seed(0)
        if impl == "tinylm":
            model = make_tinylm(config, FAST, device=device).eval()
            run = decode_fn(model, "tinylm", prompt, new_tokens)
        else:
            model = make_hf(config, device=device).eval()
            run = decode_fn(model, "hf", prompt, new_tokens, cache_implementation="static")
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model.to(dtype)
        tps = max(time_decode(run, new_tokens, device) for _ in range(rounds))
        result[impl] = tps
        rows.append(
            {
                "shape": shape_name,
                "impl": impl,
                "status": "ok",
                "tokens_per_s": tps,
                "dtype": str(dtype),
                "new_tokens": new_tokens,
                "note": "HF: static cache (auto-compiled on CUDA)" if impl == "hf" else "",
            }
        )
        del model, run
    if len(result) == 2:
        ratio = result["tinylm"] / result["hf"]
        rows.append({"shape": shape_name, "impl": "ratio", "status": "ok", "ratio": ratio})
    return rows


def bigram_walks(config, batch: int, steps: int) -> list[torch.Tensor]:
    """A learnable stream (a fixed random bigram walk), so the loss actually moves in 50 steps."""
    gen = torch.Generator().manual_seed(0)
    table = torch.randint(0, config.vocab_size, (config.vocab_size,), generator=gen)
    starts = torch.randint(0, config.vocab_size, (steps, batch), generator=gen)
    seqs = []
    for i in range(steps):
        ids = [starts[i]]
        for _ in range(config.context_length):
            ids.append(table[ids[-1]])
        seqs.append(torch.stack(ids, dim=1))
    return seqs


def loss_check(config, device, batch, steps, budget) -> dict:
    """Same init, same batches, fp32 vs bf16 autocast: both finite and close after `steps`."""
    if not budget.left():
        return {"status": "skipped: time budget"}
    seqs = bigram_walks(config, batch, steps)
    losses = {}
    for label, amp in (("fp32", None), ("bf16", torch.bfloat16)):
        torch.manual_seed(0)
        model = make_tinylm(config, FAST, device=device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
        dev_type = torch.device(device).type
        # unchecked(): this phase measures numerics, not the (sync-free) type checks.
        with unchecked():
            for ids in seqs:
                ids = ids.to(device)
                with torch.autocast(dev_type, dtype=amp, enabled=amp is not None):
                    loss = cross_entropy(model(ids[:, :-1]), ids[:, 1:])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        losses[label] = float(loss.detach())
        del model, opt
    diff = abs(losses["fp32"] - losses["bf16"])
    tolerance = BF16_LOSS_RTOL * abs(losses["fp32"])
    finite = all(math.isfinite(v) for v in losses.values())
    return {
        "status": "ok",
        "steps": steps,
        "loss_fp32": losses["fp32"],
        "loss_bf16": losses["bf16"],
        "abs_diff": diff,
        "tolerance": tolerance,
        "initial_loss_ln_vocab": math.log(config.vocab_size),
        "finite": finite,
        "passed": finite and diff <= tolerance,
    }
