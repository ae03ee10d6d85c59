"""recipe_bench's pieces: shapes, batches, eval windows, and the contenders built from configs.

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
from bench.recipes import differences, dotted_key, recipe_config
from tinylm.nn import TransformerLM
from tinylm.optim import LRSchedule, clip_grad_norm
from tinylm.train import TrainConfig


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


def _clipper(params: list, max_norm: float) -> Callable[[], object]:
    return (lambda: clip_grad_norm(params, max_norm)) if max_norm > 0 else (lambda: None)


# Never reached: the schedule follows the wall-clock fraction (`step(progress=...)`), and warmups
# stay in steps.
UNUSED_TOTAL = 10**9


def make_tinylm(name: str, config: TrainConfig, device, seed: int) -> Contender:
    """A contender from a run config: its [model], [compute] kernels and [optim], as train builds
    them (`OptimConfig.build`)."""
    torch.manual_seed(seed)
    model = TransformerLM(config.model, config.compute, device=device)
    opt, sched = config.optim.build(model.parameter_groups(), UNUSED_TOTAL)
    params = list(model.parameters())
    o = config.optim
    lr = f"AdamW lr {o.lr:g}" if o.optimizer == "adamw" else f"{o.optimizer} {o.muon_lr:g}"
    describe = f"{lr} + {o.schedule}"
    clip = _clipper(params, o.grad_clip)
    return Contender(name, model, model, opt, sched, clip, sum(p.numel() for p in params), describe)


def make_peer(name: str, baseline: TrainConfig, device, seed: int, lr: float) -> Contender:
    """HF Llama of the baseline's [model] (HF's own init, every weight N(0, 0.02)) with torch's
    AdamW at `lr` and the baseline's other [optim] values: warmup, cosine floor, betas, decay
    split (gains undecayed), clip."""
    model = make_hf(baseline.model, device, seed=seed, use_cache=False)
    b = baseline.optim
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": b.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(b.beta1, b.beta2),
        eps=b.eps,
    )
    sched = LRSchedule(
        opt,
        "cosine",
        total_iters=UNUSED_TOTAL,
        warmup_iters=b.warmup_steps,
        min_lr_ratio=b.min_lr_ratio,
    )
    params = list(model.parameters())
    return Contender(
        name,
        model,
        lambda ids: model(input_ids=ids).logits,
        opt,
        sched,
        lambda: torch.nn.utils.clip_grad_norm_(params, b.grad_clip),
        sum(p.numel() for p in params),
        f"HF Llama + torch AdamW lr {lr:g} + cosine",
    )


def parse_variant(spec: str) -> tuple[str, dict[str, str]]:
    """`NAME:key=value,key=value` -> (NAME, {"section.key": "value"}): overrides of modern.toml.

    Keys are config keys (`optim.muon_lr`), or bare ones that name one section's key (`muon_lr`);
    values are parsed by the key's type when the config loads, as on train-lm's command line.
    """
    name, _, body = spec.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]+", name):
        raise ValueError(f"bad variant name {name!r} in {spec!r}")
    overrides = {}
    for item in filter(None, body.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"bad variant item {item!r}; items look like section.key=value")
        overrides[dotted_key(key)] = value
    return name, overrides


def peer_name(lr: float) -> str:
    return f"peer@{lr:g}"


def build_contenders(names: list[str], variants: dict, shape, vocab, device, seed) -> list:
    """Contenders by name: baseline (default.toml), modern (modern.toml), peer@LR, variants."""
    modern, _ = recipe_config("modern", shape, vocab)
    out = []
    for name in names:
        if name.startswith("peer@"):
            baseline, _ = recipe_config("baseline", shape, vocab)
            out.append(make_peer(name, baseline, device, seed, float(name[5:])))
            continue
        if name not in ("baseline", "modern") and name not in variants:
            raise ValueError(f"unknown contender {name!r}")
        config, _ = recipe_config(name, shape, vocab, variants.get(name))
        contender = make_tinylm(name, config, device, seed)
        if name in variants:
            diff = [f"{k}={v}" for k, v in differences(config, modern).items()]
            contender.describe = "modern, " + (", ".join(diff) or "unchanged")
        out.append(contender)
    return out
