"""The training loop as parts: `train(config)` → `Trainer(config).fit()` → `train_step()`.

launch.py        train(): process group, run-directory lock, signals, determinism
trainer.py       Trainer: builds the run; train_step(); fit(), the loop
cadence.py       Cadence: when to log / evaluate / checkpoint / stop (pure)
clock.py         RunClock: wall-clock across resumes, time per phase
checkpointer.py  Checkpointer: step_<n>.pt files, atomic, rotated
guard.py         DivergenceGuard: NaN/inf and blow-up checks
meter.py         LossMean, Throughput: what is measured between reports
sink.py          MetricsSink: metrics.jsonl, loss.png, W&B
summary.py       RunResult and the lines a run prints about itself
setup.py         what a run needs before its first step: data, model + optimizer, resume point
evaluate.py      batch seeding (a pure function of seed, step, stream) and held-out loss
progress.py      a bar on a terminal, plain periodic lines when redirected
"""

from tinylm.train.errors import TrainingDiverged
from tinylm.train.trainer.cadence import Actions, Cadence
from tinylm.train.trainer.checkpointer import Checkpointer
from tinylm.train.trainer.clock import RunClock
from tinylm.train.trainer.guard import DivergenceGuard
from tinylm.train.trainer.launch import train
from tinylm.train.trainer.meter import LossMean, Throughput
from tinylm.train.trainer.sink import MetricsSink
from tinylm.train.trainer.summary import RunResult
from tinylm.train.trainer.trainer import Trainer

__all__ = [
    "Actions",
    "Cadence",
    "Checkpointer",
    "DivergenceGuard",
    "LossMean",
    "MetricsSink",
    "RunClock",
    "RunResult",
    "Throughput",
    "Trainer",
    "TrainingDiverged",
    "train",
]
