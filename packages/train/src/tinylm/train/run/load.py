"""Loading a run directory back: its checkpoint, config, model and tokenizer.

    model, tokenizer, config = load_run("runs/default")      # newest loadable checkpoint, CPU
    run = load_run("runs/default", checkpoint="runs/default/checkpoints/step_0000300.pt")
    run.model, run.checkpoint, run.step                       # which checkpoint was loaded

`generate`, `export-hf` and user code load a run only through `load_run`. `train-lm --resume`
reads its checkpoint through the same `newest_loadable` and restores the optimizer, schedule and
RNG states on top (`setup.resume_from`). Older formats are migrated on the way in (`migrate`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tinylm.bpe import Tokenizer
from tinylm.nn import ModelConfig, TransformerLM
from tinylm.train.config import DataConfig, TrainConfig, load_config
from tinylm.train.data import load_tokenizer
from tinylm.train.run.checkpoint import UnsafeCheckpoint, read_checkpoint
from tinylm.train.run.directory import find_checkpoints
from tinylm.train.run.migrate import migrate_checkpoint

__all__ = ["LoadedRun", "load_run", "newest_loadable", "open_checkpoint", "saved_model_config"]

Log = Callable[[str], Any]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class LoadedRun:
    """A loaded run; unpacks as `model, tokenizer, config`."""

    model: TransformerLM  # weights loaded, eval mode
    tokenizer: Tokenizer
    config: TrainConfig  # the checkpoint's own config, else the run's config.toml
    checkpoint: Path
    step: int  # optimizer steps the checkpoint had taken

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.tokenizer, self.config))


def load_run(
    run_dir: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    log: Log = _stderr,
) -> LoadedRun:
    """The run's newest loadable (or the given) checkpoint as an eval-mode model on `device`.

    One-line errors (FileNotFoundError / ValueError) for a missing run directory, no checkpoint,
    a checkpoint refused for safety or unreadable, no config, no tokenizer, weights that do not
    fit the config. A newest checkpoint that does not read back (a crash mid-write) is skipped,
    saying so through `log`; one refused for safety never is. The caller's RNGs are untouched.
    """
    run_dir = Path(run_dir)
    path, payload = open_checkpoint(run_dir, checkpoint, log=log)
    config = _run_config(payload, run_dir, path)
    tokenizer = _run_tokenizer(run_dir, config)
    if max(tokenizer.vocab) >= config.model.vocab_size:
        raise ValueError(
            f"the tokenizer has id {max(tokenizer.vocab)} but model.vocab_size is "
            f"{config.model.vocab_size}"
        )
    device = torch.device(device)
    with _rng_untouched(device):  # the init is overwritten: leave the caller's random streams
        model = TransformerLM(config.model, config.compute, device=device)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:  # torch's first line is a header; the second names a tensor
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise ValueError(f"{path}: weights do not fit its config: {lines[-1][:300]}") from None
    return LoadedRun(model.eval(), tokenizer, config, path, int(payload["iteration"]))


def open_checkpoint(
    run_dir: Path, checkpoint: str | os.PathLike | None = None, *, log: Log = _stderr
) -> tuple[Path, dict[str, Any]]:
    """(path, migrated payload) of the given checkpoint, else of the run's newest loadable."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if checkpoint is not None:
        return Path(checkpoint), migrate_checkpoint(read_checkpoint(checkpoint))
    if not find_checkpoints(run_dir):
        raise FileNotFoundError(f"no checkpoint in {run_dir / 'checkpoints'}")
    return newest_loadable(run_dir, log)


def newest_loadable(run_dir: Path, log: Log) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that reads back (migrated), saying which newer ones were skipped.

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
        return path, migrate_checkpoint(payload)
    raise ValueError(
        f"--resume: no loadable checkpoint in {run_dir / 'checkpoints'}: {'; '.join(skipped)}"
    )


def saved_model_config(saved: dict[str, Any]) -> ModelConfig | None:
    """The [model] of a migrated saved config (None if it has none); vocab_size defaults to
    data.vocab_size as in `TrainConfig`. Only [model]: a resume may change every other section."""
    model = saved.get("model")
    if model is None:
        return None
    model = dict(model)
    model.setdefault("vocab_size", saved.get("data", {}).get("vocab_size", DataConfig.vocab_size))
    return ModelConfig.from_dict(model)


def _run_config(payload: dict[str, Any], run_dir: Path, checkpoint: Path) -> TrainConfig:
    """The config the checkpoint carries, else the run's config.toml."""
    if isinstance(payload.get("config"), dict):
        return TrainConfig.from_dict(payload["config"])
    path = run_dir / "config.toml"
    if not path.is_file():
        raise ValueError(f"{checkpoint} carries no config and {path} does not exist")
    return load_config(path)


def _run_tokenizer(run_dir: Path, config: TrainConfig) -> Tokenizer:
    """tokenizer/ of the run, else the config's data.tokenizer_dir."""
    specials = config.data.special_tokens
    for directory in (run_dir / "tokenizer", Path(config.data.tokenizer_dir)):
        if str(directory) not in ("", ".") and (directory / "vocab.json").is_file():
            return load_tokenizer(directory, specials)
    raise FileNotFoundError(f"no tokenizer (vocab.json, merges.txt) in {run_dir / 'tokenizer'}")


@contextmanager
def _rng_untouched(device: torch.device) -> Iterator[None]:
    cuda = device.type == "cuda"
    devices = (
        [torch.cuda.current_device() if device.index is None else device.index] if cuda else []
    )
    with torch.random.fork_rng(devices=devices):
        yield
