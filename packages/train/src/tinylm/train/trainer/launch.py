"""`train(config) -> RunResult`: the entry point of `train-lm` and the apps.

It puts the run in place around `Trainer(config).fit()`: the DDP process group torchrun
describes, the run directory (created, proven writable, locked for the whole run), the signal
handlers (StopFlag) and CPU determinism. Only rank 0 prints; a log that cannot be written (a
closed terminal or pipe) is dropped, never fatal.
"""

from __future__ import annotations

import time
from contextlib import suppress

from tinylm.train.config import TrainConfig
from tinylm.train.run.directory import prepare_run_dir
from tinylm.train.runtime import (
    Distributed,
    StopFlag,
    determinism,
    device_type,
    resolve_device,
    setup_distributed,
)
from tinylm.train.trainer.summary import RunResult
from tinylm.train.trainer.trainer import Trainer

__all__ = ["train"]


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    progress: bool = True,
    log=print,
    tty: bool | None = None,
) -> RunResult:
    """Train `config.model` as `config` says; returns a summary (with the trained model).

    `resume` continues from the newest checkpoint in the run directory; `stop_at` ends (with a
    checkpoint) after that many steps without changing the schedule, as an interruption would.
    `progress` shows a bar when `tty` (default: stderr is a terminal), else a plain line every
    train.log_interval steps (see progress.py).
    Raises ValueError / FileNotFoundError / PermissionError for bad input before any training,
    and TrainingDiverged when the loss stops being finite.
    """
    dist = setup_distributed(device_type(config.train.device))
    try:
        shown = progress and dist.is_main
        log = _unfailing(log) if dist.is_main else _quiet
        return _train(config, dist, resume, stop_at, shown, tty, log)
    finally:
        dist.close()


def _quiet(*args, **kwargs) -> None:
    pass


def _unfailing(log):
    """`log`, dropping what cannot be written: a closed terminal (what sends SIGHUP) fails every
    write with EIO, a closed pipe with EPIPE, and the run must still checkpoint and end as the
    signal says rather than die on a progress line. Its files hold what the output would have."""

    def write(*args, **kwargs) -> None:
        with suppress(OSError):
            log(*args, **kwargs)

    return write


def _train(
    config: TrainConfig,
    dist: Distributed,
    resume: bool,
    stop_at: int | None,
    progress: bool,
    tty: bool | None,
    log,
) -> RunResult:
    """Lock the run directory and catch signals for the whole run, then set up and train.

    Signals: during setup (nothing to save yet) a SIGINT/SIGTERM ends the run at once with
    RunInterrupted; once training runs the first one finishes the step and checkpoints, a second
    aborts at once (the last checkpoint stays intact).
    """
    setup_start = time.perf_counter()
    stop = StopFlag()
    lock = None
    with stop.installed():
        try:
            device = resolve_device(config.train.device, dist.local_rank)
            if dist.is_main:
                lock = prepare_run_dir(config.run_dir, resume)
            dist.barrier()
            with determinism(device, config.train.deterministic):
                trainer = Trainer(
                    config,
                    resume=resume,
                    stop_at=stop_at,
                    dist=dist,
                    device=device,
                    stop=stop,
                    log=log,
                    progress=progress,
                    tty=tty,
                    setup_start=setup_start,
                )
                return trainer.fit()
        finally:
            if lock is not None:
                lock.release()
