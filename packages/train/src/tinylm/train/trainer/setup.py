"""Everything a run needs before its first step: checked data, model, optimizer, schedule, resume.

Kept apart from the loop so that the Trainer reads as the training step and its bookkeeping.

The optimizers come from the model's parameter roles (`model.parameter_groups()`: matrix,
embedding, head, scalar) through `tinylm.optim.build_optimizers`, one `OptimizerSet` whatever the
[optim] kind; one `LRSchedule` drives every role's lr (and Muon's momentum warmup).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinylm.bpe import Tokenizer
from tinylm.nn import ComputeConfig, ModelConfig, TransformerLM
from tinylm.optim import LRSchedule, OptimConfig, OptimizerSet
from tinylm.train.config import DataConfig
from tinylm.train.data import check_tokens, load_tokenizer, open_tokens, prepare_data
from tinylm.train.files import atomic_write
from tinylm.train.run.checkpoint import load_checkpoint
from tinylm.train.run.load import newest_loadable, saved_model_config
from tinylm.train.run.metrics import unigram_entropy
from tinylm.train.run.migrate import migrate_optimizer_state
from tinylm.train.runtime import Distributed

__all__ = [
    "ResumePoint",
    "RunData",
    "build_model_and_optimizer",
    "load_run_data",
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
    # The schedule length a resumed run keeps (optim.cosine_steps it continues with), when the
    # config left it to train.max_steps; None: the config's own.
    cosine_steps: int | None = None


def load_run_data(
    config: DataConfig,
    *,
    run_root: str,
    vocab_size: int,
    context_length: int,
    dist: Distributed,
    log,
    progress: bool = False,
) -> RunData:
    """Prepare (rank 0 first, the others then hit its cache), open and check the tokens (every
    id, in one streaming pass: see `check_tokens`). The cache is data.cache_dir, or
    <run_root>/_data when that is empty; `vocab_size` and `context_length` are the model's."""
    cache_root = Path(config.cache_dir) if config.cache_dir else Path(run_root) / "_data"
    if dist.is_main:
        data = prepare_data(config, cache_root, log=log, progress=progress)
    dist.barrier()
    if not dist.is_main:
        data = prepare_data(config, cache_root, log=lambda *a: None)
    train = open_tokens(data.train_path, config.dtype)
    val = open_tokens(data.val_path, config.dtype)
    check_tokens(train, f"train data {data.train_path}", vocab_size, context_length)
    check_tokens(val, f"val data {data.val_path}", vocab_size, context_length)
    tokenizer = data.tokenizer  # the one prepare_data just trained or loaded: not read again
    if tokenizer is None and data.tokenizer_dir is not None:
        tokenizer = load_tokenizer(data.tokenizer_dir, config.special_tokens)
    return RunData(train, val, tokenizer, data.tokenizer_dir, unigram_entropy(val, vocab_size))


def build_model_and_optimizer(
    model: ModelConfig,
    compute: ComputeConfig,
    optim: OptimConfig,
    *,
    seed: int,
    max_steps: int,
    device: torch.device,
) -> tuple[TransformerLM, OptimizerSet, LRSchedule]:
    """The model seeded by `seed` (train.seed: the same init on every rank; DDP also
    broadcasts rank 0's weights), its optimizer set and the schedule over `max_steps`."""
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    net = TransformerLM(model, compute, device=device)
    optimizer, schedule = optim.build(net.parameter_groups(), max_steps)
    return net, optimizer, schedule


def resume_from(
    run_dir: Path,
    model_config: ModelConfig,
    optim: OptimConfig,
    max_steps: int,
    model: torch.nn.Module,
    optimizer: OptimizerSet,
    schedule: LRSchedule,
    log=print,
) -> ResumePoint:
    """Load the newest loadable checkpoint of the run: weights, optimizer states, schedule, RNGs.

    Position comes from the checkpoint, hyperparameters from the config, so a resumed run may be
    given other lrs, betas or weight decay on the command line, and other kernels ([compute]);
    the architecture ([model]) and the optimizer kind must stay. The schedule keeps the length
    it had when the run started unless `optim.cosine_steps` is set: extending a finished run
    with a larger `train.max_steps` trains on at the floor, it does not re-stretch (and raise)
    the schedule. The returned point records that length (`cosine_steps`) for the run's config.
    """
    path, payload = newest_loadable(run_dir, log)
    saved = payload.get("config", {})
    saved_model = saved_model_config(saved)
    if saved_model is not None and saved_model != model_config:
        raise ValueError(
            f"{path} was trained with a different [model] config; resume with the "
            "run's own config.toml ([compute] may change, [model] may not)"
        )
    saved_schedule = payload.get("scheduler")
    if not isinstance(saved_schedule, dict) or "t" not in saved_schedule:
        raise ValueError(
            f"{path} has no 'scheduler' entry, so the learning-rate schedule cannot be resumed; "
            "it was not written by train-lm (use it with load_checkpoint, or start a new run)"
        )
    state = migrate_optimizer_state(payload["optimizer"], model, optimizer)
    payload = {**payload, "optimizer": state}
    if set(state) != set(optimizer):
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
    saved_total = saved_schedule.get("total_iters", max_steps)
    cycle = optim.cosine_steps or int(saved_total)
    kept = None
    if optim.cosine_steps == 0 and cycle != max_steps:
        if max_steps > cycle:
            log(
                f"note: the {optim.schedule} schedule of this run ends at step {cycle}; "
                f"steps {cycle + 1}..{max_steps} train at min_lr {optim.min_lr:g} "
                "(every role at its floor) "
                f"(pass --optim.cosine_steps {max_steps} to stretch it instead)"
            )
        kept = cycle
    schedule.load_state_dict(
        {
            **schedule.state_dict(),
            "t": saved_schedule["t"],
            "progress": saved_schedule.get("progress"),
            "total_iters": cycle,
            "warmup_iters": min(optim.warmup_steps, cycle),
        }
    )
    tokens = int(payload.get("data", {}).get("tokens", 0))
    return ResumePoint(step, tokens, float(payload.get("wallclock", 0.0)), path, kept)


def save_run_files(run_dir: Path, tokenizer_dir: Path | None, config_toml: str | None) -> None:
    """The run's own config.toml (`config_toml`, when given) and a copy of its tokenizer (what
    `generate` needs)."""
    if config_toml is not None:
        atomic_write(run_dir / "config.toml", config_toml)
    if tokenizer_dir is not None:
        (run_dir / "tokenizer").mkdir(exist_ok=True)
        for name in ("vocab.json", "merges.txt"):
            source, target = tokenizer_dir / name, run_dir / "tokenizer" / name
            if not (target.exists() and source.samefile(target)):  # already the run's own
                atomic_write(target, source.read_bytes())
