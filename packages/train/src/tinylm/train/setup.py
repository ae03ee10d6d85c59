"""Everything a run needs before its first step: checked data, model, optimizer, schedule, resume.

Kept apart from the loop so that `loop.py` reads as the training step and its bookkeeping.

The optimizers come from the model's parameter roles (`model.parameter_groups()`: matrix,
embedding, head, scalar) through `tinylm.optim.build_optimizers`, one `OptimizerSet` whatever the
[optim] kind; one `LRSchedule` drives every role's lr (and Muon's momentum warmup).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinylm.bpe import Tokenizer
from tinylm.nn import ModelConfig, TransformerLM, split_compute_keys
from tinylm.optim import LRSchedule, OptimizerHParams, OptimizerSet, build_optimizers
from tinylm.train.checkpoint import load_checkpoint, read_checkpoint
from tinylm.train.config import OptimConfig, TrainConfig
from tinylm.train.data import check_tokens, open_tokens
from tinylm.train.metrics import unigram_entropy
from tinylm.train.prepare import load_tokenizer, prepare_data
from tinylm.train.rundir import find_checkpoints
from tinylm.train.runtime import Distributed

__all__ = [
    "ResumePoint",
    "RunData",
    "build_model_and_optimizer",
    "build_schedule",
    "check_positive",
    "check_recipe",
    "load_run_data",
    "optimizer_hparams",
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


def check_recipe(cfg: TrainConfig) -> None:
    """Combinations of [optim] and [train] that cannot work, as one-line errors before setup."""
    o = cfg.optim
    if o.fit_to_time and cfg.train.max_seconds <= 0:
        raise ValueError("optim.fit_to_time needs a budget: set train.max_seconds > 0")
    if o.cosine_steps < 0:
        raise ValueError(f"optim.cosine_steps must be >= 0, got {o.cosine_steps}")
    if o.warmup_steps < 0 or o.momentum_warmup_steps < 0:
        raise ValueError("optim.warmup_steps and optim.momentum_warmup_steps must be >= 0")
    if not 0.0 <= o.momentum_start < 1.0:
        raise ValueError(f"optim.momentum_start must be in [0, 1), got {o.momentum_start}")


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


def optimizer_hparams(optim: OptimConfig) -> OptimizerHParams:
    """[optim] -> tinylm.optim's per-role hyperparameters (None = the AdamW matrix value)."""
    return OptimizerHParams(
        adamw_lr=optim.lr,
        muon_lr=optim.muon_lr,
        embedding_lr=optim.embedding_lr,
        head_lr=optim.head_lr,
        scalar_lr=optim.scalar_lr,
        betas=(optim.beta1, optim.beta2),
        embedding_betas=optim.embedding_betas,
        head_betas=optim.head_betas,
        scalar_betas=optim.scalar_betas,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        embedding_weight_decay=optim.embedding_weight_decay,
        head_weight_decay=optim.head_weight_decay,
        scalar_weight_decay=optim.scalar_weight_decay,
        muon_momentum=optim.muon_momentum,
        nesterov=optim.muon_nesterov,
        ns_steps=optim.muon_ns_steps,
        muon_weight_decay=optim.muon_weight_decay,
    )


def build_schedule(cfg: TrainConfig, optimizer: OptimizerSet) -> LRSchedule:
    """One schedule over every role: warmup, then cosine or WSD down to peak · min_lr/lr."""
    o = cfg.optim
    total = o.cosine_steps or cfg.train.max_steps
    return LRSchedule(
        optimizer,
        o.schedule,
        total_iters=total,
        warmup_iters=min(o.warmup_steps, total),
        min_lr_ratio=o.min_lr_ratio,
        decay_fraction=o.decay_fraction,
        momentum_warmup_iters=o.momentum_warmup_steps,
        momentum_start=o.momentum_start,
    )


def build_model_and_optimizer(
    cfg: TrainConfig, device: torch.device
) -> tuple[TransformerLM, OptimizerSet, LRSchedule]:
    """Same seeded init on every rank (DDP also broadcasts rank 0's weights)."""
    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed % (1 << 32))
    model = TransformerLM(cfg.model, cfg.compute, device=device)
    roles = model.parameter_groups()
    optimizer = build_optimizers(roles, cfg.optim.optimizer, optimizer_hparams(cfg.optim))
    return model, optimizer, build_schedule(cfg, optimizer)


def saved_model_config(saved: dict[str, Any]) -> ModelConfig | None:
    """The [model] a checkpoint was trained with (older ones carry kernel keys: dropped)."""
    model = saved.get("model")
    if model is None:
        return None
    model = dict(model)
    model.setdefault("vocab_size", saved.get("data", {}).get("vocab_size", 2000))
    return ModelConfig.from_dict(split_compute_keys(model)[0])


def _old_adamw_state(
    state: dict[str, Any], model: torch.nn.Module, optimizer: OptimizerSet
) -> dict[str, Any]:
    """A single-AdamW state dict of the older format (groups split by `ndim`, decayed first) as
    this AdamW-only set's state: the moments follow their parameters into the role groups."""
    if list(optimizer) != ["adamw"]:
        raise ValueError(
            "checkpoint holds one AdamW (an older format); resume it with optim.optimizer = "
            f"'adamw', not {list(optimizer)}"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    old_order = [p for p in params if p.ndim >= 2] + [p for p in params if p.ndim < 2]
    new = optimizer["adamw"].state_dict()
    new_index = {
        id(p): i
        for i, p in enumerate(p for g in optimizer["adamw"].param_groups for p in g["params"])
    }
    old_ids = [i for g in state["param_groups"] for i in g["params"]]
    if len(old_ids) != len(old_order):
        raise ValueError("checkpoint's optimizer state does not fit this model")
    by_old_id = dict(zip(old_ids, old_order, strict=True))
    moments = {new_index[id(by_old_id[i])]: v for i, v in state["state"].items()}
    return {"adamw": {"state": moments, "param_groups": new["param_groups"]}}


def resume_from(
    cfg: TrainConfig, model: torch.nn.Module, optimizer: OptimizerSet, schedule: LRSchedule
) -> ResumePoint:
    """Load the newest checkpoint of the run: weights, optimizer states, schedule position, RNGs.

    Position comes from the checkpoint, hyperparameters from the config, so a resumed run may be
    given a longer schedule, other lrs or another weight decay on the command line, and other
    kernels ([compute]); the architecture ([model]) and the optimizer kind must stay.
    """
    path = find_checkpoints(cfg.run_dir)[-1]
    payload = read_checkpoint(path)
    saved = payload.get("config", {})
    saved_model = saved_model_config(saved)
    if saved_model is not None and saved_model != cfg.model:
        raise ValueError(
            f"{path} was trained with a different [model] config; resume with the "
            "run's own config.toml ([compute] may change, [model] may not)"
        )
    state = payload["optimizer"]
    if "state" in state and "param_groups" in state:  # one AdamW: checkpoints before roles
        payload = {**payload, "optimizer": _old_adamw_state(state, model, optimizer)}
    elif set(state) != set(optimizer):
        was = saved.get("optim", {}).get("optimizer", "?")
        raise ValueError(
            f"{path} was trained with optim.optimizer = {was!r} (optimizers {sorted(state)}); "
            f"this config builds {sorted(optimizer)}"
        )
    # The config's hyperparameters (base lrs, betas, decay, momentum) win over the saved ones.
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    step = load_checkpoint(payload, model, optimizer, restore_rng=True)
    for group, settings in zip(optimizer.param_groups, fresh, strict=True):
        group.update(settings)
    saved_schedule = payload.get("scheduler", {})
    schedule.load_state_dict(
        {
            **schedule.state_dict(),
            "t": saved_schedule["t"],
            "progress": saved_schedule.get("progress"),
        }
    )
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
