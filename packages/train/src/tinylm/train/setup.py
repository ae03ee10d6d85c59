"""Everything a run needs before its first step: checked data, model, optimizer, schedule, resume.

Kept apart from the loop so that `loop.py` reads as the training step and its bookkeeping.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinylm.bpe import Tokenizer
from tinylm.nn import TransformerLM
from tinylm.optim import AdamW, CosineSchedule
from tinylm.train.checkpoint import load_checkpoint, read_checkpoint
from tinylm.train.config import TrainConfig
from tinylm.train.data import check_tokens, open_tokens
from tinylm.train.metrics import unigram_entropy
from tinylm.train.prepare import load_tokenizer, prepare_data
from tinylm.train.rundir import find_checkpoints
from tinylm.train.runtime import Distributed

__all__ = [
    "ResumePoint",
    "RunData",
    "build_model_and_optimizer",
    "check_positive",
    "load_run_data",
    "param_groups",
    "resume_from",
    "save_run_files",
]


@dataclass(frozen=True)
class RunData:
    train: np.ndarray
    val: np.ndarray
    tokenizer: Tokenizer | None
    tokenizer_dir: Path | None
    unigram_entropy: float  # of the val split: the loss of the best context-free model


@dataclass(frozen=True)
class ResumePoint:
    step: int = 0
    tokens: int = 0
    wallclock: float = 0.0
    checkpoint: Path | None = None


def check_positive(cfg: TrainConfig) -> None:
    for name, value in (
        ("train.max_steps", cfg.train.max_steps),
        ("train.batch_size", cfg.train.batch_size),
        ("train.grad_accum", cfg.train.grad_accum),
        ("eval.iters", cfg.eval.iters),
        ("eval.interval", cfg.eval.interval),
        ("train.log_interval", cfg.train.log_interval),
        ("run.checkpoint_interval", cfg.run.checkpoint_interval),
    ):
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def load_run_data(cfg: TrainConfig, dist: Distributed, log) -> RunData:
    """Prepare (rank 0 first, the others then hit its cache), open and sanity-check the tokens."""
    cache_root = Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.run.root) / "_data"
    if dist.is_main:
        data = prepare_data(cfg.data, cache_root, log=log)
    dist.barrier()
    if not dist.is_main:
        data = prepare_data(cfg.data, cache_root, log=lambda *a: None)
    train = open_tokens(data.train_path, cfg.data.dtype)
    val = open_tokens(data.val_path, cfg.data.dtype)
    vocab_size, context_length = cfg.model.vocab_size, cfg.model.context_length
    check_tokens(train, f"train data {data.train_path}", vocab_size, context_length)
    check_tokens(val, f"val data {data.val_path}", vocab_size, context_length)
    tokenizer = None
    if data.tokenizer_dir is not None:
        tokenizer = load_tokenizer(data.tokenizer_dir, cfg.data.special_tokens)
    return RunData(train, val, tokenizer, data.tokenizer_dir, unigram_entropy(val, vocab_size))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices (linear layers, embeddings); leave gains (1-d norm weights) undecayed."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_model_and_optimizer(
    cfg: TrainConfig, device: torch.device
) -> tuple[TransformerLM, AdamW, CosineSchedule]:
    """Same seeded init on every rank (DDP also broadcasts rank 0's weights)."""
    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed % (1 << 32))
    model = TransformerLM(cfg.model, device=device)
    optimizer = AdamW(
        param_groups(model, cfg.optim.weight_decay),
        lr=cfg.optim.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
    )
    cycle = cfg.optim.cosine_steps or cfg.train.max_steps
    schedule = CosineSchedule(
        optimizer,
        max_lr=cfg.optim.lr,
        min_lr=cfg.optim.min_lr,
        warmup_iters=min(cfg.optim.warmup_steps, cycle),
        cosine_cycle_iters=cycle,
    )
    return model, optimizer, schedule


def resume_from(
    cfg: TrainConfig, model: torch.nn.Module, optimizer: AdamW, schedule: CosineSchedule
) -> ResumePoint:
    """Load the newest checkpoint of the run: weights, optimizer state, schedule position, RNGs.

    Position comes from the checkpoint, hyperparameters from the config, so a resumed run may be
    given a longer schedule or another weight decay on the command line.
    """
    path = find_checkpoints(cfg.run_dir)[-1]
    payload = read_checkpoint(path)
    saved_model = payload.get("config", {}).get("model")
    if saved_model is not None and saved_model != cfg.model.to_dict():
        raise ValueError(
            f"{path} was trained with a different [model] config; resume with the "
            "run's own config.toml"
        )
    step = load_checkpoint(payload, model, optimizer, restore_rng=True)
    schedule.load_state_dict({**schedule.state_dict(), "t": payload["scheduler"]["t"]})
    fresh_groups = param_groups(model, cfg.optim.weight_decay)
    for group, fresh in zip(optimizer.param_groups, fresh_groups, strict=True):
        group.update(weight_decay=fresh["weight_decay"], eps=cfg.optim.eps)
        group.update(betas=(cfg.optim.beta1, cfg.optim.beta2))
    tokens = int(payload.get("data", {}).get("tokens", 0))
    return ResumePoint(step, tokens, float(payload.get("wallclock", 0.0)), path)


def save_run_files(cfg: TrainConfig, data: RunData) -> None:
    """The run's own config.toml and a copy of its tokenizer (what `generate` needs)."""
    run_dir = cfg.run_dir
    cfg.save(run_dir / "config.toml")
    if data.tokenizer_dir is not None:
        (run_dir / "tokenizer").mkdir(exist_ok=True)
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(data.tokenizer_dir / name, run_dir / "tokenizer" / name)
