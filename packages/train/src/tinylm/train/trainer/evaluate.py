"""Which batches a run sees, and the held-out loss it is judged by.

Every batch is drawn from a CPU generator seeded by (seed, step, stream), never from a running
loader: a resumed run needs no data-loader state, and the stream number (rank·grad_accum + micro
for training, the rank for evaluation) makes N processes × 1 micro-batch see exactly the batches
of 1 process × N micro-batches. Evaluation uses seed + 1 and steps 0..iters-1, so every eval
scores the same held-out batches and successive val losses are comparable.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import torch

from tinylm.train.data import get_batch
from tinylm.train.runtime import Distributed

__all__ = ["batch_generator", "evaluate"]


def batch_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator for one batch; odd 64-bit multipliers keep nearby triples far apart."""
    mixed = seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB
    return torch.Generator().manual_seed(mixed % (1 << 63))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    tokens: np.ndarray,
    *,
    iters: int,
    batch_size: int,
    context_length: int,
    seed: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
    dist: Distributed,
) -> float:
    """Mean loss on the same `iters` held-out batches every time (comparable across evals);
    `seed` is the run's (train.seed): the batches are drawn with seed + 1."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    for i in range(iters):
        gen = batch_generator(seed + 1, i, dist.rank)
        x, y = get_batch(tokens, batch_size, context_length, device, gen)
        with autocast():
            total += model(x, targets=y).float()  # compute.loss's kernel
    model.train(was_training)
    return dist.mean(total / iters).item()
