"""Recipe bench: the modern recipe vs today's baseline vs a Hugging Face peer, at equal wall-clock.

    uv run --no-sync python bench/recipe_bench.py                     # default: 300 s each, CPU
    uv run --no-sync python bench/recipe_bench.py --seconds 60        # shorter, same shape
    uv run --no-sync python bench/recipe_bench.py --quick             # toy sizes: checks the script
    uv run --no-sync python bench/recipe_bench.py --contenders baseline,modern \\
        --variant muon05:muon_lr=0.05 --variant noskip:unet_skips=false   # tuning runs
    uv run --no-sync python bench/recipe_bench.py --device cuda --shape leaderboard  # a lent GPU

Contenders (same tokens in the same order, same shape, same batch, same wall-clock budget):
  peer@LR   HF `LlamaForCausalLM` (its default init) + `torch.optim.AdamW`, warmup + cosine;
            `peer` = the sweep over PEER_LRS (the best one is reported)
  baseline  tinylm AdamW + cosine: today's default train recipe (BASELINE below)
  modern    tinylm with the recipe: Muon + per-role AdamW, WSD, recipe switches (MODERN below)
  NAME      any `--variant NAME:key=value,...`: MODERN with those keys changed

Fairness on a loaded shared machine: all contenders live in one process and train in round-robin
time slices; each one's clock counts only its own steps (`time.perf_counter` around them, with a
CUDA sync), so machine load hits all of them alike. Each is evaluated, untimed, at 25/50/75/100% of
its own budget on the same held-out windows (all non-overlapping context windows of the val split,
up to a fixed count), with the same loss function (F.cross_entropy on the returned logits).
Schedules are fitted to the budget (`LRSchedule.step(progress=elapsed/budget)`), so every run
finishes its decay when its time is spent.
"""

from __future__ import annotations

import os

# Shape checks cost time in the hot path; this bench measures speed (set before tinylm.nn loads).
os.environ.setdefault("TINYLM_TYPECHECK", "0")

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nn_bench import make_hf  # the HF peer, shared with nn_bench and gpu_check

from tinylm.bpe import Tokenizer, train_bpe
from tinylm.nn import ComputeConfig, ModelConfig, TransformerLM, default_d_ff
from tinylm.optim import LRSchedule, OptimizerHParams, build_optimizers, clip_grad_norm

# --------------------------------------------------------------------------------------------
# The modern recipe: the ONE place its values live. Keys are the bundled config's TOML keys:
# [model] switches, then [optim] (optimizer/schedule and per-role lrs). See bench/RECIPE.md.
MODERN: dict = {
    # [model]
    "qk_norm": True,
    "ffn": "relu2",  # d_ff rescaled to keep the parameter count (ModelConfig.with_ffn)
    "logit_softcap": 0.0,  # 15 cost 25% of the throughput here and lost 0.28 nats (RECIPE.md)
    "value_embeddings": 1,
    "unet_skips": False,  # neutral per step at this scale (RECIPE.md); switchable
    "zero_init_proj": True,
    "parameter_free_norm": False,
    "tie_embeddings": False,
    # [optim]
    "optimizer": "muon",  # Muon for "matrix", AdamW for "embedding"/"head"/"scalar"
    "schedule": "wsd",
    "muon_lr": 0.03,
    "embedding_lr": 0.3,
    "head_lr": 0.008,
    "scalar_lr": 0.02,
    "betas": (0.8, 0.95),  # AdamW roles
    "weight_decay": 0.1,  # AdamW embedding/head decay (0 lost 0.10 nats at 600 s: RECIPE.md)
    "muon_weight_decay": 0.1,  # decoupled, θ·(1 − lr·wd)
    "muon_momentum": 0.95,
    "momentum_start": 0.85,
    "momentum_warmup_steps": 50,
    "warmup_steps": 10,
    "decay_fraction": 0.4,
    "min_lr_ratio": 0.0,
    "grad_clip": 1.0,
}
# --------------------------------------------------------------------------------------------

# Today's default train recipe (packages/train configs/default.toml [optim]).
BASELINE: dict = {
    "optimizer": "adamw",
    "schedule": "cosine",
    "lr": 3e-3,
    "min_lr_ratio": 0.1,  # min_lr 3e-4
    "warmup_steps": 20,
    "weight_decay": 0.1,  # matrices and embeddings/head; gains 0
    "betas": (0.9, 0.95),
    "grad_clip": 1.0,
}
PEER_LRS = (1e-3, 3e-3, 1e-2)

MODEL_KEYS = (
    "qk_norm",
    "ffn",
    "logit_softcap",
    "value_embeddings",
    "unet_skips",
    "zero_init_proj",
    "parameter_free_norm",
    "tie_embeddings",
)

BUNDLED_TEXT = (
    Path(__file__).resolve().parents[1] / "packages/train/src/tinylm/train/data/openprose_4M.txt"
)
SPECIAL = "<|endoftext|>"


@dataclasses.dataclass(frozen=True)
class Shape:
    """Everything the contenders share: data, model shape, batch, budget, eval windows."""

    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    batch_size: int
    seconds: float
    text_bytes: int
    tokenizer_bytes: int
    val_fraction: float = 0.05
    eval_windows: int = 96
    model_vocab: int = 0  # 0 = the tokenizer's size; else padded to this (GPT-2: 50304)


SHAPES = {
    # 3.3M parameters (1.8M in the blocks) at context 256; a 4096-token BPE of the bundled corpus.
    "cpu": Shape(4096, 256, 192, 4, 3, 16, 300.0, 2_000_000, 1_000_000, 0.05, 64),
    # 12 x 768 at context 512, GPT-2-sized vocab: for a lent GPU (pass --text with a big corpus).
    "leaderboard": Shape(
        50257, 512, 768, 12, 12, 32, 240.0, 4_182_577, 4_000_000, 0.05, 256, 50304
    ),
    # the tuning proxy: ~4x cheaper steps than "cpu" with the same Muon share of a step (~14%),
    # so a loaded 2-core box still gets ~100 steps a minute (bench/RECIPE.md)
    "tune": Shape(4096, 128, 128, 4, 2, 16, 60.0, 2_000_000, 1_000_000, 0.05, 64),
    # toy sizes: checks the script in seconds
    "quick": Shape(384, 64, 64, 2, 2, 4, 5.0, 60_000, 40_000, 0.1, 8),
}


# ---------------------------------------------------------------------------- data


def prepare_data(shape: Shape, text_path: Path, cache: Path, log) -> tuple[np.ndarray, np.ndarray]:
    """Train/val token ids of the first `text_bytes` of `text_path`, cached under `cache`.

    The val split is the tail (`val_fraction`), cut at a document boundary; the BPE is trained on
    the first `tokenizer_bytes` of the train split only.
    """
    key = hashlib.sha256(
        f"{text_path.resolve()}|{text_path.stat().st_size}|{shape.text_bytes}|"
        f"{shape.tokenizer_bytes}|{shape.vocab_size}|{shape.val_fraction}".encode()
    ).hexdigest()[:12]
    d = cache / f"recipe_bench_{key}"
    train_npy, val_npy = d / "train.npy", d / "val.npy"
    if train_npy.exists() and val_npy.exists():
        log(f"data: cached {d}")
        return np.load(train_npy), np.load(val_npy)
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(text_path, "rb") as f:
        raw = f.read(shape.text_bytes)
    text = raw.decode("utf-8", errors="ignore")
    cut = int(len(text) * (1 - shape.val_fraction))
    doc = text.find(SPECIAL, cut)
    cut = doc if doc > 0 else cut
    train_text, val_text = text[:cut], text[cut:]
    tok_src = d / f"tokenizer_text.{os.getpid()}.txt"  # per process: two benches may race here
    tok_src.write_text(train_text[: shape.tokenizer_bytes], encoding="utf-8")
    vocab, merges = train_bpe(tok_src, shape.vocab_size, [SPECIAL])
    tok_src.unlink()
    tokenizer = Tokenizer(vocab, merges, [SPECIAL])
    tokenizer.save(d / "vocab.json", d / "merges.txt")
    train_ids = np.asarray(tokenizer.encode(train_text), dtype=np.int32)
    val_ids = np.asarray(tokenizer.encode(val_text), dtype=np.int32)
    for path, ids in ((train_npy, train_ids), (val_npy, val_ids)):
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, ids)
        tmp.replace(path)  # atomic: a half-written cache is never picked up
    log(
        f"data: trained {len(tokenizer)}-token BPE, {len(train_ids):,} train / {len(val_ids):,} "
        f"val tokens in {time.perf_counter() - t0:.1f} s -> {d}"
    )
    return train_ids, val_ids


class Batches:
    """Batch i is a pure function of (seed, i): every contender sees the same tokens in order."""

    def __init__(self, ids: np.ndarray, batch: int, ctx: int, seed: int, device):
        self.ids, self.batch, self.ctx, self.seed, self.device = ids, batch, ctx, seed, device

    def __call__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, i))
        starts = rng.integers(0, len(self.ids) - self.ctx - 1, size=self.batch)
        w = np.stack([self.ids[s : s + self.ctx + 1] for s in starts]).astype(np.int64)
        w = torch.from_numpy(w).to(self.device)
        return w[:, :-1], w[:, 1:]


def eval_windows(val: np.ndarray, ctx: int, limit: int, device) -> torch.Tensor:
    """All non-overlapping (ctx+1)-token windows of the val split (stride ctx), up to `limit`."""
    n = min(limit, (len(val) - 1) // ctx)
    if n < 1:
        raise SystemExit(f"error: the val split ({len(val)} tokens) is shorter than one window")
    w = np.stack([val[i * ctx : i * ctx + ctx + 1] for i in range(n)]).astype(np.int64)
    return torch.from_numpy(w).to(device)


# ---------------------------------------------------------------------------- contenders


@dataclasses.dataclass
class Contender:
    name: str
    model: torch.nn.Module
    logits: Callable[[torch.Tensor], torch.Tensor]  # ids -> logits (softcapped if the model is)
    optimizer: object
    schedule: LRSchedule
    clip: Callable[[], object]
    params: int
    describe: str
    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    evals: dict = dataclasses.field(default_factory=dict)  # fraction -> (loss, step, tokens)
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    def spent(self, steps_mode: bool) -> float:
        """How much of its budget this contender has used: seconds, or steps with --steps."""
        return float(self.step) if steps_mode else self.elapsed

    def train_step(self, x, y, budget: float, sync, steps_mode: bool = False) -> None:
        t0 = time.perf_counter()
        with self.autocast():
            logits = self.logits(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        loss.backward()
        self.clip()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        sync()
        self.elapsed += time.perf_counter() - t0
        self.step += 1
        self.tokens += y.numel()
        self.schedule.step(progress=self.spent(steps_mode) / budget)

    @torch.no_grad()
    def evaluate(self, windows: torch.Tensor, batch: int) -> float:
        self.model.eval()
        total, count = 0.0, 0
        for i in range(0, len(windows), batch):
            w = windows[i : i + batch]
            with self.autocast():
                logits = self.logits(w[:, :-1]).float()
            total += F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum")
            count += w[:, 1:].numel()
        self.model.train()
        return float(total) / count


def model_config(shape: Shape, vocab: int, recipe: dict | None) -> ModelConfig:
    base = ModelConfig(
        vocab_size=vocab,
        context_length=shape.context_length,
        d_model=shape.d_model,
        num_layers=shape.num_layers,
        num_heads=shape.num_heads,
        d_ff=default_d_ff(shape.d_model),
    )
    if recipe is None:
        return base
    cfg = base.with_ffn(recipe["ffn"])  # same parameter count as the SwiGLU shape
    return dataclasses.replace(cfg, **{k: recipe[k] for k in MODEL_KEYS if k != "ffn"})


def tinylm_compute(device) -> ComputeConfig:
    """train's default kernels (the loss is F.cross_entropy on the logits for every contender)."""
    return ComputeConfig(attention="sdpa", fused_qkv=True, pointwise="torch")


def make_baseline(name: str, shape: Shape, vocab: int, device, seed: int) -> Contender:
    torch.manual_seed(seed)
    model = TransformerLM(model_config(shape, vocab, None), tinylm_compute(device), device=device)
    b = BASELINE
    hp = OptimizerHParams(adamw_lr=b["lr"], betas=b["betas"], weight_decay=b["weight_decay"])
    opt = build_optimizers(model.parameter_groups(), b["optimizer"], hp)
    sched = LRSchedule(
        opt,
        b["schedule"],
        total_iters=10**9,  # unused: the shape follows the wall-clock fraction
        warmup_iters=b["warmup_steps"],
        min_lr_ratio=b["min_lr_ratio"],
    )
    params = list(model.parameters())
    return Contender(
        name,
        model,
        model,
        opt,
        sched,
        lambda: clip_grad_norm(params, b["grad_clip"]),
        sum(p.numel() for p in params),
        f"AdamW lr {b['lr']:g} + cosine",
    )


def make_modern(name: str, shape: Shape, vocab: int, device, seed: int, r: dict) -> Contender:
    torch.manual_seed(seed)
    model = TransformerLM(model_config(shape, vocab, r), tinylm_compute(device), device=device)
    hp = OptimizerHParams(
        muon_lr=r["muon_lr"],
        embedding_lr=r["embedding_lr"],
        head_lr=r["head_lr"],
        scalar_lr=r["scalar_lr"],
        adamw_lr=r["embedding_lr"],
        betas=tuple(r["betas"]),
        weight_decay=r["weight_decay"],
        muon_momentum=r["muon_momentum"],
        muon_weight_decay=r["muon_weight_decay"],
    )
    opt = build_optimizers(model.parameter_groups(), r["optimizer"], hp)
    sched = LRSchedule(
        opt,
        r["schedule"],
        total_iters=10**9,
        warmup_iters=r["warmup_steps"],
        min_lr_ratio=r["min_lr_ratio"],
        decay_fraction=r["decay_fraction"],
        momentum_warmup_iters=r["momentum_warmup_steps"],
        momentum_start=r["momentum_start"],
    )
    params = list(model.parameters())
    clip = r["grad_clip"]
    return Contender(
        name,
        model,
        model,
        opt,
        sched,
        (lambda: clip_grad_norm(params, clip)) if clip > 0 else (lambda: None),
        sum(p.numel() for p in params),
        f"{r['optimizer']} {r['muon_lr']:g} + {r['schedule']}",
    )


def make_peer(name: str, shape: Shape, vocab: int, device, seed: int, lr: float) -> Contender:
    # nn_bench's HF Llama of the baseline's ModelConfig: HF's own init, every weight N(0, 0.02).
    model = make_hf(model_config(shape, vocab, None), device, seed=seed, use_cache=False)
    b = BASELINE
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": b["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=b["betas"],
        eps=1e-8,
    )
    sched = LRSchedule(
        opt,
        "cosine",
        total_iters=10**9,
        warmup_iters=b["warmup_steps"],
        min_lr_ratio=b["min_lr_ratio"],
    )
    params = list(model.parameters())
    return Contender(
        name,
        model,
        lambda ids: model(input_ids=ids).logits,
        opt,
        sched,
        lambda: torch.nn.utils.clip_grad_norm_(params, b["grad_clip"]),
        sum(p.numel() for p in params),
        f"HF Llama + torch AdamW lr {lr:g} + cosine",
    )


def parse_value(text: str, like):
    """Parse a --variant value with the type of the recipe's current value."""
    if isinstance(like, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a bool, got {text!r}")
    if isinstance(like, tuple):
        return tuple(float(v) for v in text.split("/"))
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    return text


def parse_variant(spec: str, base: dict) -> tuple[str, dict]:
    """`NAME:key=value,key=value` -> (NAME, base with those keys replaced). Tuples: a/b."""
    name, _, body = spec.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]+", name):
        raise ValueError(f"bad variant name {name!r} in {spec!r}")
    recipe = dict(base)
    for item in filter(None, body.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in base:
            raise ValueError(f"bad variant item {item!r}; keys: {', '.join(base)}")
        recipe[key] = parse_value(value, base[key])
    return name, recipe


def peer_name(lr: float) -> str:
    return f"peer@{lr:g}"


def build_contenders(names: list[str], variants: dict, shape, vocab, device, seed) -> list:
    out = []
    for name in names:
        if name == "baseline":
            out.append(make_baseline(name, shape, vocab, device, seed))
        elif name == "modern":
            out.append(make_modern(name, shape, vocab, device, seed, MODERN))
        elif name.startswith("peer@"):
            out.append(make_peer(name, shape, vocab, device, seed, float(name[5:])))
        elif name in variants:
            c = make_modern(name, shape, vocab, device, seed, variants[name])
            diff = [f"{k}={v}" for k, v in variants[name].items() if MODERN[k] != v]
            c.describe = "modern, " + (", ".join(diff) or "unchanged")
            out.append(c)
        else:
            raise ValueError(f"unknown contender {name!r}")
    return out


# ---------------------------------------------------------------------------- the run

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def run(contenders, batches: Batches, windows, budget, slice_s, sync, log, steps_mode=False):
    """Round-robin time slices until every contender has spent its budget; evals untimed.

    `budget` is seconds of each contender's own compute, or steps when `steps_mode` (--steps:
    equal steps instead of equal time, a low-noise tuning aid on a loaded machine).
    """
    eval_batch = batches.batch
    for c in contenders:  # untimed warm-up (lazy inits, kernel choice); the grads are dropped
        x, _ = batches(0)
        c.logits(x).float().mean().backward()
        c.optimizer.zero_grad(set_to_none=True)
        sync()
    wall0 = time.perf_counter()
    active = list(contenders)
    while active:
        for c in list(active):
            start = c.elapsed
            while c.spent(steps_mode) < budget and (c.elapsed - start < slice_s):
                x, y = batches(c.step)
                c.train_step(x, y, budget, sync, steps_mode)
                for frac in FRACTIONS:
                    if frac not in c.evals and c.spent(steps_mode) >= frac * budget - 1e-9:
                        done = [v for v in c.evals.values() if v[1] == c.step]
                        loss = done[0][0] if done else c.evaluate(windows, eval_batch)
                        c.evals[frac] = (loss, c.step, c.tokens)
                        log(
                            f"  {c.name:>12} {frac:4.0%}  {c.elapsed:7.1f} s  step {c.step:5d}  "
                            f"{c.tokens / c.elapsed:8,.0f} tok/s  val {loss:.4f}  "
                            f"(wall {time.perf_counter() - wall0:6.0f} s)"
                        )
            if c.spent(steps_mode) >= budget:
                active.remove(c)


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def report(contenders: list[Contender], budget: float, unit: str = "s") -> tuple[list[dict], str]:
    rows = []
    for c in contenders:
        rows.append(
            {
                "name": c.name,
                "describe": c.describe,
                "params": c.params,
                "steps": c.step,
                "tokens": c.tokens,
                "seconds": c.elapsed,
                "tokens_per_s": c.tokens / c.elapsed if c.elapsed else float("nan"),
                "val_loss": {f"{int(f * 100)}%": c.evals[f][0] for f in FRACTIONS if f in c.evals},
            }
        )
    by = {r["name"]: r for r in rows}
    peers = [r for r in rows if r["name"].startswith("peer@")]
    final = lambda r: r["val_loss"].get("100%", float("nan"))  # noqa: E731
    best_peer = min(peers, key=final) if peers else None
    l0 = final(best_peer) if best_peer else None
    l1 = final(by["baseline"]) if "baseline" in by else None
    l2 = final(by["modern"]) if "modern" in by else None
    peer_tps = float(np.mean([r["tokens_per_s"] for r in peers])) if peers else None
    d1 = l2 - l1 if l1 is not None and l2 is not None else None
    d2 = l2 - l0 if l0 is not None and l2 is not None else None
    ratio = by["baseline"]["tokens_per_s"] / peer_tps if peer_tps and "baseline" in by else None
    lr = best_peer["name"][5:] if best_peer else "n/a"
    line = (
        f"recipe-bench: peer {fmt(l0)} (lr {lr}), baseline {fmt(l1)}, modern {fmt(l2)} nats at "
        f"{budget:g} {unit}; modern − baseline = {fmt(d1, '+.4f')}; "
        f"modern − peer = {fmt(d2, '+.4f')}; "
        f"baseline tok/s / peer = {fmt(ratio, '.2f')}"
    )
    return rows, line


def print_table(rows: list[dict], out) -> None:
    head = (
        f"{'contender':>12} {'params':>9} {'steps':>6} {'tokens':>11} {'tok/s':>8} "
        + " ".join(f"{'val@' + f'{int(f * 100)}%':>8}" for f in FRACTIONS)
        + "  what"
    )
    print(head, file=out)
    for r in rows:
        losses = " ".join(f"{fmt(r['val_loss'].get(f'{int(f * 100)}%')):>8}" for f in FRACTIONS)
        print(
            f"{r['name']:>12} {r['params'] / 1e6:8.2f}M {r['steps']:6d} {r['tokens']:11,d} "
            f"{r['tokens_per_s']:8,.0f} {losses}  {r['describe']}",
            file=out,
        )


def main(argv: list[str] | None = None) -> int:
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
        help="a modern variant (MODERN keys; tuples as a/b); added to the contenders",
    )
    p.add_argument("--text", type=Path, default=BUNDLED_TEXT, help="corpus (default: bundled)")
    p.add_argument("--text-bytes", type=int, default=None, help="read this much of --text")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()), help="data cache")
    p.add_argument("--slice", type=float, default=1.0, help="round-robin time slice (s)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    log = lambda *a: print(*a, flush=True)  # noqa: E731

    shape = SHAPES["quick" if args.quick else args.shape]
    if args.seconds is not None:
        shape = dataclasses.replace(shape, seconds=args.seconds)
    if args.text_bytes is not None:
        shape = dataclasses.replace(shape, text_bytes=args.text_bytes)
    budget, unit = (args.steps, "steps") if args.steps > 0 else (shape.seconds, "s")
    if shape.seconds <= 0:
        print("error: --seconds must be > 0", file=sys.stderr)
        return 2
    if not args.text.is_file():
        print(f"error: text file not found: {args.text}", file=sys.stderr)
        return 2
    try:
        variants = dict(parse_variant(v, MODERN) for v in args.variant)
    except ValueError as e:
        print(f"error: --variant: {e}", file=sys.stderr)
        return 2
    names: list[str] = []
    for name in filter(None, args.contenders.split(",")):
        names.extend(peer_name(lr) for lr in PEER_LRS) if name == "peer" else names.append(name)
    names.extend(v for v in variants if v not in names)
    known = {"baseline", "modern", *variants}
    bad = [n for n in names if n not in known and not re.fullmatch(r"peer@[0-9.]+(e-?\d+)?", n)]
    if bad:
        print(
            f"error: unknown contender {bad[0]!r} (peer, peer@LR, baseline, modern, "
            f"or a --variant name)",
            file=sys.stderr,
        )
        return 2
    names = [peer_name(float(n[5:])) if n.startswith("peer@") else n for n in names]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    args.cache.mkdir(parents=True, exist_ok=True)
    train_ids, val_ids = prepare_data(shape, args.text, args.cache, log)
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
    for c in contenders:
        log(f"  {c.name:>12}: {c.params / 1e6:.2f}M params, {c.describe}")
    wall0 = time.perf_counter()
    run(contenders, batches, windows, budget, args.slice, sync, log, steps_mode=args.steps > 0)
    rows, line = report(contenders, budget, unit)
    log(f"done in {time.perf_counter() - wall0:.0f} s wall")
    print_table(rows, sys.stdout)
    if args.json:
        payload = {
            "shape": dataclasses.asdict(shape),
            "device": str(device),
            "modern": {k: list(v) if isinstance(v, tuple) else v for k, v in MODERN.items()},
            "baseline": {k: list(v) if isinstance(v, tuple) else v for k, v in BASELINE.items()},
            "variants": {
                n: {k: v for k, v in r.items() if MODERN[k] != v} for n, r in variants.items()
            },
            "rows": rows,
            "last_line": line,
        }
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=list))
        tmp.replace(args.json)
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
