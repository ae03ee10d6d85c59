"""`generate`: sample text from a trained run.

generate --run runs/default --prompt "Once upon a time" --max-tokens 200 --temperature 0.8
generate --run runs/default --top-k 50 --top-p 1   # top-k sampling
generate --run runs/default --dtype bfloat16 --compile on   # fastest CPU decoding (nn README)
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from tinylm.nn import TransformerLM
from tinylm.train.checkpoint import load_checkpoint, read_checkpoint
from tinylm.train.config import TrainConfig
from tinylm.train.errors import run_cli
from tinylm.train.prepare import load_tokenizer
from tinylm.train.rundir import find_checkpoints
from tinylm.train.runtime import resolve_device
from tinylm.train.sampling import sample_text
from tinylm.train.setup import newest_loadable


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="generate", description="Sample text from a train-lm run.")
    p.add_argument("--run", required=True, type=Path, help="run directory (holds checkpoints/)")
    p.add_argument("--prompt", default="", help="text to continue (default: start of a document)")
    p.add_argument("--max-tokens", type=int, default=200, help="new tokens to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus mass, 1 = off")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens, 0 = off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the run's newest")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument(
        "--dtype",
        default="float32",
        help="float32 | bfloat16: weights and compute while sampling (bf16: half the bytes)",
    )
    p.add_argument(
        "--compile",
        default="auto",
        help="auto | on | off: torch.compile the decode step (auto: CUDA only, or "
        "TINYLM_COMPILE_DECODE)",
    )
    return p


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
COMPILE = {"auto": None, "on": True, "off": False}  # tinylm.nn.generate's `compile` argument


def load_run(run_dir: Path, checkpoint: Path | None, device: torch.device):
    """Model (weights loaded, eval mode) and tokenizer of a run directory."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if checkpoint is None:
        if not find_checkpoints(run_dir):
            raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'}")
        checkpoint, payload = newest_loadable(run_dir, lambda m: print(m, file=sys.stderr))
    else:
        payload = read_checkpoint(checkpoint)
    if "config" not in payload:
        raise ValueError(f"{checkpoint} carries no config; was it written by train-lm?")
    config = TrainConfig.from_dict(payload["config"])  # older configs: kernel keys move to compute
    model = TransformerLM(config.model, config.compute, device=device)
    load_checkpoint(payload, model)
    model.eval()
    tokenizer = load_tokenizer(run_dir / "tokenizer", config.data.special_tokens)
    return model, tokenizer


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        if args.max_tokens < 0:
            raise ValueError(f"--max-tokens must be >= 0, got {args.max_tokens}")
        if args.num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
        if not (math.isfinite(args.temperature) and args.temperature >= 0):
            raise ValueError(f"--temperature must be a finite number >= 0, got {args.temperature}")
        if not 0 < args.top_p <= 1:
            raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
        for option, value, table in (
            ("--dtype", args.dtype, DTYPES),
            ("--compile", args.compile, COMPILE),
        ):
            if value not in table:
                raise ValueError(f"{option} must be {' | '.join(table)}, got {value!r}")
        device = resolve_device(args.device, option="--device")
        model, tokenizer = load_run(args.run, args.checkpoint, device)
        model.to(DTYPES[args.dtype])
        for i in range(args.num_samples):
            text = sample_text(
                model,
                tokenizer,
                args.prompt,
                args.max_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k,
                seed=args.seed + i,
                compile=COMPILE[args.compile],
            )
            if args.num_samples > 1:
                print(f"--- sample {i + 1} ---")
            print(text)

    return run_cli(body, abort_message="interrupted")


if __name__ == "__main__":
    raise SystemExit(main())
