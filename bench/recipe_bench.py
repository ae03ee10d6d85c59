"""Recipe bench: the modern recipe vs today's baseline vs a Hugging Face peer, at equal wall-clock.

    uv run --no-sync python -m bench.recipe_bench                     # default: 300 s each, CPU
    uv run --no-sync python -m bench.recipe_bench --seconds 60        # shorter, same shape
    uv run --no-sync python -m bench.recipe_bench --quick             # toy sizes: checks the script
    uv run --no-sync python -m bench.recipe_bench --contenders baseline,modern \\
        --variant muon05:optim.muon_lr=0.05 --variant skip:model.unet_skips=true   # tuning runs
    uv run --no-sync python -m bench.recipe_bench --device cuda --shape leaderboard  # a lent GPU

Contenders (same tokens in the same order, same shape, same batch, same wall-clock budget):
  peer@LR   HF `LlamaForCausalLM` (its default init) + `torch.optim.AdamW`, warmup + cosine;
            `peer` = the sweep over PEER_LRS (the best one is reported)
  baseline  tinylm AdamW + cosine: train's configs/default.toml (the run `train-lm` makes)
  modern    tinylm with the recipe: train's configs/modern.toml (Muon + per-role AdamW, WSD, ...)
  NAME      any `--variant NAME:key=value,...`: modern.toml with those config keys changed
Both configs are read by `tinylm.train.load_config` with only the bench's size as overrides
(bench/recipes.py, printed at the start), so the recipe proved is the one `train-lm` runs.

Fairness on a loaded shared machine: all contenders live in one process and train in round-robin
time slices; each one's clock counts only its own steps (`time.perf_counter` around them, with a
CUDA sync), so machine load hits all of them alike. Each is evaluated, untimed, at 25/50/75/100% of
its own budget on the same held-out windows (all non-overlapping context windows of the val split,
up to a fixed count), with the same loss function (F.cross_entropy on the returned logits).
Schedules are fitted to the budget (`LRSchedule.step(progress=elapsed/budget)`), so every run
finishes its decay when its time is spent. The tokens are prepared as a training run prepares
them (`tinylm.train.prepare_data`: documents split, BPE on the train split, cached in --cache).

Modules: bench/recipes.py (which configs, the size overrides), recipe_parts.py (shapes, batches,
contenders), recipe_run.py (the round-robin run and the results), this file (the command line).
"""

from __future__ import annotations

import os

# Shape checks cost time in the hot path; this bench measures speed (set before tinylm.nn loads).
os.environ.setdefault("TINYLM_TYPECHECK", "0")

import argparse
import dataclasses
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.harness import prepare_tokens
from bench.recipe_parts import (
    SHAPES,
    Batches,
    build_contenders,
    eval_windows,
    parse_variant,
    peer_name,
)
from bench.recipe_run import print_table, report, run
from bench.recipes import CONFIGS, PEER_LRS, differences, recipe_config, shape_overrides
from tinylm.train import atomic_write, bundled_corpus


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shape", choices=["cpu", "leaderboard", "tune"], default="cpu")
    p.add_argument("--quick", action="store_true", help="toy sizes (5 s each): checks the script")
    p.add_argument("--seconds", type=float, default=None, help="budget per contender (s)")
    p.add_argument(
        "--steps", type=int, default=0, help="tuning aid: budget in steps instead of seconds"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--contenders",
        default="peer,baseline,modern",
        help="comma list: peer (= every PEER_LRS), peer@LR, baseline, modern, variant names",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VAL,...",
        help="modern.toml with config keys changed (optim.muon_lr=0.05 or muon_lr=0.05); "
        "added to the contenders",
    )
    p.add_argument("--text", type=Path, default=bundled_corpus(), help="corpus (default: bundled)")
    p.add_argument("--text-bytes", type=int, default=None, help="read this much of --text")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()), help="data cache")
    p.add_argument("--slice", type=float, default=1.0, help="round-robin time slice (s)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def contender_names(spec: str, variants: dict) -> list[str]:
    """The --contenders list with `peer` expanded and the variants added; ValueError naming the
    first unknown one."""
    names: list[str] = []
    for name in filter(None, spec.split(",")):
        names.extend(peer_name(lr) for lr in PEER_LRS) if name == "peer" else names.append(name)
    names.extend(v for v in variants if v not in names)
    known = {"baseline", "modern", *variants}
    bad = [n for n in names if n not in known and not re.fullmatch(r"peer@[0-9.]+(e-?\d+)?", n)]
    if bad:
        raise ValueError(
            f"unknown contender {bad[0]!r} (peer, peer@LR, baseline, modern, or a --variant name)"
        )
    return [peer_name(float(n[5:])) if n.startswith("peer@") else n for n in names]


def check_args(args, shape) -> tuple[dict, list[str]]:
    """The variants and contender names; ValueError with the one-line message of a bad flag."""
    if shape.seconds <= 0:
        raise ValueError("--seconds must be > 0")
    if not args.text.is_file():
        raise ValueError(f"text file not found: {args.text}")
    try:
        variants = dict(parse_variant(v) for v in args.variant)
        for overrides in variants.values():  # bad keys and values fail here, before any work
            recipe_config("modern", shape, shape.vocab_size, overrides)
    except ValueError as e:
        raise ValueError(f"--variant: {e}") from None
    return variants, contender_names(args.contenders, variants)


def write_json(path: Path, shape, vocab, device, variants: dict, rows: list, line: str) -> None:
    modern, _ = recipe_config("modern", shape, vocab)
    configs = {}
    for name in CONFIGS:
        config, overrides = recipe_config(name, shape, vocab)
        configs[name] = {"config": f"{CONFIGS[name]}.toml", "overrides": overrides}
        configs[name] |= {s: config.to_dict()[s] for s in ("model", "compute", "optim")}
    payload = {
        "shape": dataclasses.asdict(shape),
        "device": str(device),
        **configs,
        "variants": {
            n: differences(recipe_config(n, shape, vocab, o)[0], modern)
            for n, o in variants.items()
        },
        "rows": rows,
        "last_line": line,
    }
    atomic_write(path, json.dumps(payload, indent=2, default=list))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    shape = SHAPES["quick" if args.quick else args.shape]
    if args.seconds is not None:
        shape = dataclasses.replace(shape, seconds=args.seconds)
    if args.text_bytes is not None:
        shape = dataclasses.replace(shape, text_bytes=args.text_bytes)
    budget, unit = (args.steps, "steps") if args.steps > 0 else (shape.seconds, "s")
    try:
        variants, names = check_args(args, shape)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    args.cache.mkdir(parents=True, exist_ok=True)
    train_ids, val_ids = prepare_tokens(
        args.text,
        text_bytes=shape.text_bytes,
        tokenizer_bytes=shape.tokenizer_bytes,
        vocab_size=shape.vocab_size,
        val_fraction=shape.val_fraction,
        cache=args.cache,
        log=log,
    )
    vocab = max(shape.model_vocab, int(max(train_ids.max(), val_ids.max())) + 1)
    batches = Batches(train_ids, shape.batch_size, shape.context_length, args.seed, device)
    windows = eval_windows(val_ids, shape.context_length, shape.eval_windows, device)
    contenders = build_contenders(names, variants, shape, vocab, device, args.seed)
    if device.type == "cuda":  # every contender alike: bf16 autocast, fp32 weights and loss
        for c in contenders:
            c.autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    log(
        f"recipe-bench: {len(contenders)} contenders x {budget:g} {unit}, "
        f"{shape.num_layers}x{shape.d_model} h{shape.num_heads} ctx {shape.context_length} "
        f"vocab {vocab} batch {shape.batch_size}, {len(windows)} val windows "
        f"({len(windows) * shape.context_length:,} tokens), {len(train_ids):,} train tokens, "
        f"device {device}, torch threads {torch.get_num_threads()}"
    )
    sizes = " ".join(f"--{k} {v}" for k, v in shape_overrides(shape, vocab).items())
    d_ff = {n: recipe_config(n, shape, vocab)[0].model.d_ff for n in CONFIGS}
    log(
        f"configs: baseline = default.toml --model.d_ff {d_ff['baseline']}, modern = modern.toml "
        f"--model.d_ff {d_ff['modern']}, both {sizes}"
    )
    for c in contenders:
        log(f"  {c.name:>12}: {c.params / 1e6:.2f}M params, {c.describe}")
    wall0 = time.perf_counter()
    run(contenders, batches, windows, budget, args.slice, sync, log, steps_mode=args.steps > 0)
    rows, line = report(contenders, budget, unit)
    log(f"done in {time.perf_counter() - wall0:.0f} s wall")
    print_table(rows, sys.stdout)
    if args.json:
        write_json(args.json, shape, vocab, device, variants, rows, line)
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
