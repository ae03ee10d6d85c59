"""`generate`: sample text from a trained run.

generate --run runs/default --prompt "Once upon a time" --max-new-tokens 200 --temperature 0.8
generate --run runs/default --top-k 50 --top-p 1   # top-k sampling
generate --run runs/default --dtype bfloat16 --compile on   # fastest CPU decoding (nn README)

The text goes to stdout; the seed (a fresh one unless `--seed` is given) and any warning go to
stderr, one line each (`seed 12345 (--seed 12345 repeats this sample)`, `warning: ...`).
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
from pathlib import Path
from typing import NoReturn

import torch

from tinylm.train.config import MAX_SEED
from tinylm.train.errors import EXIT_BAD_INPUT, run_cli
from tinylm.train.run.load import load_run
from tinylm.train.runtime import resolve_device
from tinylm.train.sampling import sample_text


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default, except None and "" (unset: the help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default == "":
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One `error:` line and status 2, as for every other bad input (not usage + error)."""
        print(f"error: {message} (see generate --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="generate",
        description="Sample text from a train-lm run.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--run", required=True, type=Path, metavar="DIR", help="run directory (holds checkpoints/)"
    )
    p.add_argument(
        "--prompt", default="", metavar="TEXT", help="text to continue (default: a new document)"
    )
    p.add_argument(
        "--max-new-tokens",
        "--max-tokens",
        dest="max_new_tokens",
        type=int,
        metavar="N",
        default=200,
        help="new tokens to generate at most (fewer when the end-of-text token comes)",
    )
    p.add_argument("--temperature", type=float, default=0.8, metavar="T", help="0 = greedy")
    p.add_argument("--top-p", type=float, default=0.95, metavar="P", help="nucleus mass, 1 = off")
    p.add_argument(
        "--top-k", type=int, default=0, metavar="K", help="keep the k most likely tokens, 0 = off"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="S",
        help=f"sampling seed in [0, {MAX_SEED}]; sample i uses seed + i (default: a fresh one, "
        "printed to stderr)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        metavar="FILE",
        help="checkpoint to sample from (default: the run's newest)",
    )
    p.add_argument("--device", default="auto", metavar="DEV", help="auto | cpu | cuda | mps")
    p.add_argument("--num-samples", type=int, default=1, metavar="N", help="samples to draw")
    p.add_argument(
        "--dtype",
        default="float32",
        metavar="DTYPE",
        help="float32 | bfloat16: weights and compute while sampling (bf16: half the bytes)",
    )
    p.add_argument(
        "--compile",
        default="auto",
        metavar="MODE",
        help="auto | on | off: torch.compile the decode step (auto: CUDA only, or "
        "TINYLM_COMPILE_DECODE)",
    )
    return p


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
COMPILE = {"auto": None, "on": True, "off": False}  # tinylm.nn.generate's `compile` argument


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a bad argument (2, its line already printed)
        return done.code if isinstance(done.code, int) else EXIT_BAD_INPUT

    def body() -> None:
        if args.max_new_tokens < 0:
            raise ValueError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
        if args.num_samples < 1:
            raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
        if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
            raise ValueError(f"--seed must be an integer in [0, {MAX_SEED}], got {args.seed}")
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
        model, tokenizer, _ = load_run(args.run, checkpoint=args.checkpoint, device=device)
        model.to(DTYPES[args.dtype])
        seed = secrets.randbelow(1 << 32) if args.seed is None else args.seed
        print(f"seed {seed} (--seed {seed} repeats this sample)", file=sys.stderr)
        for i in range(args.num_samples):
            text = sample_text(
                model,
                tokenizer,
                args.prompt,
                args.max_new_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k,
                seed=seed + i,
                compile=COMPILE[args.compile],
            )
            if args.num_samples > 1:
                print(f"--- sample {i + 1} ---")
            print(text)

    return run_cli(body, abort_message="interrupted")


if __name__ == "__main__":
    raise SystemExit(main())
