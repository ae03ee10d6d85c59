"""Everything a run needs before its first step: checked data, model, optimizer, schedule, resume.

Kept apart from the loop so that `loop.py` reads as the training step and its bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinylm.bpe import Tokenizer
from tinylm.nn import TransformerLM
from tinylm.optim import AdamW, CosineSchedule
from tinylm.train.checkpoint import UnsafeCheckpoint, load_checkpoint, read_checkpoint
from tinylm.train.config import TrainConfig
from tinylm.train.data import check_tokens, open_tokens
from tinylm.train.files import atomic_write
from tinylm.train.metrics import unigram_entropy
from tinylm.train.prepare import load_tokenizer, prepare_data
from tinylm.train.rundir import find_checkpoints
from tinylm.train.runtime import Distributed

__all__ = [
    "ResumePoint",
    "RunData",
    "build_model_and_optimizer",
    "load_run_data",
    "newest_loadable",
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
    config: TrainConfig | None = None  # the config the resumed run continues with


def load_run_data(cfg: TrainConfig, dist: Distributed, log, progress: bool = False) -> RunData:
    """Prepare (rank 0 first, the others then hit its cache), open and check the tokens (every
    id, in one streaming pass: see `check_tokens`)."""
    cache_root = Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.run.root) / "_data"
    if dist.is_main:
        data = prepare_data(cfg.data, cache_root, log=log, progress=progress)
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


def newest_loadable(run_dir: Path, log) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that reads back, saying which newer ones were skipped and why.

    A checkpoint refused for safety (it pickles code) is never skipped over: that is tampering,
    not a crash, so the run stops there.
    """
    skipped = []
    for path in reversed(find_checkpoints(run_dir)):
        try:
            payload = read_checkpoint(path)
        except UnsafeCheckpoint:
            raise
        except ValueError as e:
            skipped.append(f"{path.name} ({e})")
            continue
        if skipped:
            log(f"warning: skipped unreadable {'; '.join(skipped)}; resuming from {path}")
        return path, payload
    raise ValueError(
        f"--resume: no loadable checkpoint in {run_dir / 'checkpoints'}: {'; '.join(skipped)}"
    )


def resume_from(
    cfg: TrainConfig,
    model: torch.nn.Module,
    optimizer: AdamW,
    schedule: CosineSchedule,
    log=print,
) -> ResumePoint:
    """Load the newest loadable checkpoint of the run: weights, optimizer, schedule, RNGs.

    Position comes from the checkpoint, hyperparameters from the config, so a resumed run may be
    given another lr or weight decay on the command line. The cosine keeps the length it had
    when the run started unless `optim.cosine_steps` is set: extending a finished run with a
    larger `train.max_steps` trains on at min_lr, it does not re-stretch (and raise) the
    schedule. The returned config records that length in `optim.cosine_steps`.
    """
    path, payload = newest_loadable(cfg.run_dir, log)
    saved_model = payload.get("config", {}).get("model")
    if saved_model is not None and saved_model != cfg.model.to_dict():
        raise ValueError(
            f"{path} was trained with a different [model] config; resume with the "
            "run's own config.toml"
        )
    saved_schedule = payload.get("scheduler")
    if not isinstance(saved_schedule, dict) or "t" not in saved_schedule:
        raise ValueError(
            f"{path} has no 'scheduler' entry, so the learning-rate schedule cannot be resumed; "
            "it was not written by train-lm (use it with load_checkpoint, or start a new run)"
        )
    step = load_checkpoint(payload, model, optimizer, restore_rng=True)
    cycle = cfg.optim.cosine_steps or int(
        saved_schedule.get("cosine_cycle_iters", cfg.train.max_steps)
    )
    if cfg.optim.cosine_steps == 0 and cycle != cfg.train.max_steps:
        if cfg.train.max_steps > cycle:
            log(
                f"note: the cosine of this run ends at step {cycle}; steps {cycle + 1}.."
                f"{cfg.train.max_steps} train at min_lr {cfg.optim.min_lr:g} "
                f"(pass --optim.cosine_steps {cfg.train.max_steps} to stretch it instead)"
            )
        cfg = cfg.replace(optim={"cosine_steps": cycle})
    schedule.load_state_dict(
        {
            **schedule.state_dict(),
            "t": saved_schedule["t"],
            "cosine_cycle_iters": cycle,
            "warmup_iters": min(cfg.optim.warmup_steps, cycle),
        }
    )
    fresh_groups = param_groups(model, cfg.optim.weight_decay)
    for group, fresh in zip(optimizer.param_groups, fresh_groups, strict=True):
        group.update(weight_decay=fresh["weight_decay"], eps=cfg.optim.eps)
        group.update(betas=(cfg.optim.beta1, cfg.optim.beta2))
    tokens = int(payload.get("data", {}).get("tokens", 0))
    return ResumePoint(step, tokens, float(payload.get("wallclock", 0.0)), path, cfg)


def save_run_files(cfg: TrainConfig, data: RunData, write_config: bool = True) -> None:
    """The run's own config.toml and a copy of its tokenizer (what `generate` needs)."""
    run_dir = cfg.run_dir
    if write_config:
        cfg.save(run_dir / "config.toml")
    if data.tokenizer_dir is not None:
        (run_dir / "tokenizer").mkdir(exist_ok=True)
        for name in ("vocab.json", "merges.txt"):
            source, target = data.tokenizer_dir / name, run_dir / "tokenizer" / name
            if not (target.exists() and source.samefile(target)):  # already the run's own
                atomic_write(target, source.read_bytes())
