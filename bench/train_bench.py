"""Benchmark the training loop: throughput and the share of wall time that is not training.

    uv run --no-sync python -m bench.train_bench                 # the default CPU run (≈2 min)
    uv run --no-sync python -m bench.train_bench --steps 50      # shorter, same shape
    uv run --no-sync python -m bench.train_bench --quick         # toy sizes, checks the script
    uv run --no-sync python -m bench.train_bench --dtype bfloat16  # the default run, bf16 autocast
    uv run --no-sync python -m bench.train_bench --tinystories   # CUDA: the 17M TinyStories shape

Reports steps/s and tokens/s of the loop, and data loading, eval, checkpointing and plotting as a
share of the loop's wall time (target: under 3% at default intervals). Data preparation
(tokenizer training and encoding, cached after the first run) is reported separately. The
TinyStories shape runs on random token ids, so it needs no dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from tinylm.train import atomic_write, load_config, train

TINYSTORIES_MODEL = {
    "vocab_size": 10_000,
    "context_length": 256,
    "d_model": 512,
    "num_layers": 4,
    "num_heads": 16,
    "d_ff": 1344,
    "rope_theta": 10000.0,
}


def run(overrides: dict, label: str, quiet: bool) -> dict:
    config = load_config(overrides=overrides)
    result = train(config, progress=not quiet, log=(lambda *a, **k: None) if quiet else print)
    t = result.timings
    loop = t["train"]
    steps = result.step
    tokens_per_step = result.tokens / max(steps, 1)
    overhead = {k: t.get(k, 0.0) / loop for k in ("data", "eval", "checkpoint", "plot")}
    row = {
        "run": label,
        "device": str(config.train.device),
        "steps": steps,
        "tokens_per_step": int(tokens_per_step),
        "steps_per_s": steps / loop,
        "tokens_per_s": result.tokens / loop,
        "loop_s": loop,
        "setup_s": t["total"] - loop,
        "val_loss": result.val_loss,
        "unigram_entropy": result.unigram_entropy,
        **{f"{k}_share": v for k, v in overhead.items()},
        "overhead_share": sum(overhead.values()),
    }
    return row


QUICK = {  # --quick: toy sizes, to check the script works
    "data.text_bytes": 200_000,
    "data.vocab_size": 300,
    "data.tokenizer_bytes": 100_000,
    "model.d_model": 32,
    "model.num_layers": 2,
    "model.num_heads": 2,
    "model.d_ff": 64,
    "model.context_length": 32,
    "train.max_steps": 40,
    "eval.interval": 20,
    "run.checkpoint_interval": 20,
    "sample.max_new_tokens": 0,
}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = {"run.root": tmp, "run.name": "default"} | (QUICK if args.quick else {})
        if args.steps:
            base["train.max_steps"] = args.steps
        label = "default (CPU-sized)"
        if args.dtype:
            base["compute.dtype"] = args.dtype
            label += f", compute.dtype {args.dtype}"
        if not args.tinystories:
            rows.append(run(base, label, args.quiet))
        if args.tinystories:
            if not torch.cuda.is_available():
                print("--tinystories needs CUDA; skipped", file=sys.stderr)
            else:
                rows.append(run(tinystories_overrides(tmp, args), "TinyStories 17M", args.quiet))
    for row in rows:
        print(_describe(row))
    if args.json:
        atomic_write(args.json, json.dumps(rows, indent=2))
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=0, help="override train.max_steps")
    p.add_argument("--quick", action="store_true", help="toy sizes: check the script works")
    p.add_argument("--tinystories", action="store_true", help="CUDA: the 17M TinyStories shape")
    p.add_argument("--compile", action="store_true", help="torch.compile (TinyStories shape)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or run log")
    p.add_argument(
        "--dtype",
        default=None,
        help="compute.dtype for the run: auto | float32 | bfloat16 (bf16 autocast, CPU too)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    return p.parse_args(argv)


def _describe(row: dict) -> str:
    """One row as a line: speed, the loop's overhead by kind, the loss reached."""
    return (
        f"{row['run']}: {row['steps']} steps x {row['tokens_per_step']:,} tokens, "
        f"{row['steps_per_s']:.2f} steps/s, {row['tokens_per_s']:,.0f} tokens/s, "
        f"loop {row['loop_s']:.1f} s (+{row['setup_s']:.1f} s setup); overhead "
        f"{100 * row['overhead_share']:.2f}% (data {100 * row['data_share']:.2f}%, "
        f"eval {100 * row['eval_share']:.2f}%, "
        f"checkpoint {100 * row['checkpoint_share']:.2f}%, "
        f"plot {100 * row['plot_share']:.2f}%); val loss {row['val_loss']:.3f} vs unigram "
        f"{row['unigram_entropy']:.3f}"
    )


def tinystories_overrides(tmp: str, args) -> dict:
    """Random ids in the TinyStories shape: throughput does not depend on the text."""
    rng = np.random.default_rng(0)
    np.save(os.path.join(tmp, "ts_train.npy"), rng.integers(0, 10_000, 20_000_000, dtype=np.uint16))
    np.save(os.path.join(tmp, "ts_val.npy"), rng.integers(0, 10_000, 1_000_000, dtype=np.uint16))
    overrides = {f"model.{k}": v for k, v in TINYSTORIES_MODEL.items()}
    overrides.update(
        {
            "compute.attention": "sdpa",
            "data.train_tokens": os.path.join(tmp, "ts_train.npy"),
            "data.val_tokens": os.path.join(tmp, "ts_val.npy"),
            "data.vocab_size": 10_000,
            "train.batch_size": 64,
            "train.max_steps": args.steps or 500,
            "train.device": "cuda",
            "compute.compile": args.compile,
            "train.log_interval": 50,
            "eval.interval": 250,
            "eval.iters": 10,
            "run.checkpoint_interval": 250,
            "run.name": "tinystories",
            "optim.lr": 1e-3,
            "optim.min_lr": 1e-4,
            "optim.warmup_steps": 50,
            "sample.max_new_tokens": 0,
        }
    )
    return overrides


if __name__ == "__main__":
    raise SystemExit(main())
