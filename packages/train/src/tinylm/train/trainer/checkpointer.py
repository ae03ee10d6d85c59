"""The run's checkpoints: `step_<step>.pt` written atomically by rank 0, the newest few kept.

A checkpoint holds the weights, every optimizer's state, the schedule, the RNG states, the run's
config and its position (tokens, step, seed, world size, grad_accum). A write that fails (disk
full, ...) leaves the previous checkpoints as they were and stops the run with RunFailed naming
the cause and the last good checkpoint. A resumed run's config.toml is replaced only at its first
checkpoint: a resume that fails (diverges with a new lr, a bad override) leaves the previous
config in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tinylm.optim import LRSchedule, OptimizerSet
from tinylm.train.errors import RunFailed
from tinylm.train.files import atomic_write
from tinylm.train.run.checkpoint import save_checkpoint
from tinylm.train.run.directory import checkpoint_path, find_checkpoints
from tinylm.train.trainer.clock import RunClock

__all__ = ["Checkpointer"]


class Checkpointer:
    def __init__(
        self,
        run_dir: Path,
        *,
        keep: int,
        clock: RunClock,
        settings: dict[str, Any],
        position: dict[str, int],
        last: Path | None = None,
        pending_config: str | None = None,
        enabled: bool = True,
    ) -> None:
        """`settings`: the run's config as a dict (stored in each checkpoint); `position`: the
        fixed part of its data record (seed, world_size, grad_accum); `last`: the checkpoint a
        resumed run started from; `pending_config`: config.toml text written at the first save;
        `enabled`: this process writes (rank 0)."""
        self.run_dir, self.keep, self.clock = run_dir, keep, clock
        self.settings, self.position = settings, position
        self.last, self.pending_config, self.enabled = last, pending_config, enabled

    def kept(self) -> str:
        """What a run that stops now leaves behind (for its error message)."""
        if self.last:
            return f"last good checkpoint {self.last} is untouched"
        return "no checkpoint was written"

    def save(
        self,
        step: int,
        tokens: int,
        model: torch.nn.Module,
        optimizer: OptimizerSet,
        schedule: LRSchedule,
    ) -> None:
        """Write step_<step>.pt and drop all but the newest `keep` (rank 0; others return)."""
        if not self.enabled:
            return
        with self.clock.timer("checkpoint"):
            path = checkpoint_path(self.run_dir, step)
            try:
                path.parent.mkdir(exist_ok=True)
                save_checkpoint(
                    model,
                    optimizer,
                    step,
                    path,
                    scheduler=schedule,
                    config=self.settings,
                    data={"tokens": tokens, "step": step, **self.position},
                    wallclock=self.clock.wallclock(),
                )
            except OSError as e:
                cause = e.strerror or str(e)
                raise RunFailed(f"could not write checkpoint {path}: {cause}; {self.kept()}") from e
            self.last = path
            if self.pending_config is not None:  # the resumed run is known good now
                atomic_write(self.run_dir / "config.toml", self.pending_config)
                self.pending_config = None
            periodic = find_checkpoints(self.run_dir)
            for old in periodic[: max(0, len(periodic) - max(1, self.keep))]:
                old.unlink(missing_ok=True)
