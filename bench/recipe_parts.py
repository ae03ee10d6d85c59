"""recipe_bench's pieces: shapes, batches, eval windows, and the contenders built from recipes.

A `Contender` is a model with its optimizer, schedule and clipping, and its own clock: it counts
only its own steps, so round-robin slices in one process share a loaded machine fairly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.harness import make_hf
from bench.recipes import BASELINE, MODEL_KEYS, MODERN
from tinylm.nn import ComputeConfig, ModelConfig, TransformerLM, default_d_ff
from tinylm.optim import LRSchedule, OptimizerHParams, build_optimizers, clip_grad_norm


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


def _clipper(params: list, max_norm: float) -> Callable[[], object]:
    return (lambda: clip_grad_norm(params, max_norm)) if max_norm > 0 else (lambda: None)


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
    clip = lambda: clip_grad_norm(params, b["grad_clip"])  # noqa: E731
    describe = f"AdamW lr {b['lr']:g} + cosine"
    return Contender(name, model, model, opt, sched, clip, sum(p.numel() for p in params), describe)


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
    describe = f"{r['optimizer']} {r['muon_lr']:g} + {r['schedule']}"
    clip = _clipper(params, r["grad_clip"])
    return Contender(name, model, model, opt, sched, clip, sum(p.numel() for p in params), describe)


def make_peer(name: str, shape: Shape, vocab: int, device, seed: int, lr: float) -> Contender:
    # The harness's HF Llama of the baseline's ModelConfig: HF's own init, every weight N(0, 0.02).
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
