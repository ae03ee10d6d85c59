"""`OptimConfig`: the [optim] section of a run config, and `build` from it to optimizers + schedule.

    opt, sched = OptimConfig(optimizer="muon", schedule="wsd").build(
        model.parameter_groups(), max_steps=5000
    )

The field names are the TOML keys of a run's [optim] table (and its `--optim.key` overrides), so
a config file maps onto this class field for field. `build` reads them into the two tables that
decide everything else: `OptimizerHParams` for `build_optimizers` (per-role lrs, betas, decay)
and the `LRSchedule` arguments (kind, warmup, floor, momentum warmup).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from tinylm.optim.build import OPTIMIZER_KINDS, OptimizerHParams, build_optimizers
from tinylm.optim.lr_schedule import SCHEDULE_KINDS, LRSchedule
from tinylm.optim.optimizer_set import OptimizerSet

__all__ = ["OptimConfig"]


@dataclass(frozen=True)
class OptimConfig:
    """The optimizer set over the model's parameter roles and the schedule driving all of it.

    Roles (`TransformerLM.parameter_groups()`): matrix, embedding, head, scalar. `optimizer`
    picks a row of `OPTIMIZER_KINDS` ("adamw": AdamW for every role; "muon": Muon for "matrix",
    AdamW for the rest), `schedule` a row of `SCHEDULE_KINDS`. Every role follows the same
    schedule shape from its own peak lr down to peak · min_lr/lr. A None field means "same as
    the AdamW matrix value" (lr, (beta1, beta2), weight_decay).
    """

    optimizer: str = "adamw"  # adamw | muon
    schedule: str = "cosine"  # cosine | wsd
    lr: float = 3e-3  # peak AdamW lr of "matrix" (kind adamw) and default of the other roles
    min_lr: float = 3e-4  # floor of that lr; every role ends at its peak · min_lr / lr
    warmup_steps: int = 20
    cosine_steps: int = 0  # end of the schedule (cosine or wsd); 0 = the run's max_steps
    decay_fraction: float = 0.2  # wsd: the last fraction of the schedule decays linearly
    fit_to_time: bool = False  # schedule follows wallclock / the run's time budget (not bit-exact)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # global grad-norm clip; 0 = off
    embedding_lr: float | None = None  # token (and value) embedding tables
    head_lr: float | None = None  # untied lm_head
    scalar_lr: float | None = None  # norm gains, gates, skip weights
    embedding_betas: tuple[float, ...] | None = None
    head_betas: tuple[float, ...] | None = None
    scalar_betas: tuple[float, ...] | None = None
    embedding_weight_decay: float | None = None
    head_weight_decay: float | None = None
    scalar_weight_decay: float = 0.0  # gains are not decayed
    muon_lr: float = 0.02  # Muon's lr for "matrix" (optimizer = "muon")
    muon_momentum: float = 0.95
    muon_nesterov: bool = True
    muon_ns_steps: int = 5
    muon_weight_decay: float = 0.0  # decoupled: θ·(1 − lr·wd)
    momentum_warmup_steps: int = 0  # Muon momentum rises from momentum_start over these steps
    momentum_start: float = 0.85

    def __post_init__(self) -> None:
        for name, table in (("optimizer", OPTIMIZER_KINDS), ("schedule", SCHEDULE_KINDS)):
            if getattr(self, name) not in table:
                raise ValueError(
                    f"optim.{name} must be one of {', '.join(table)}, got {getattr(self, name)!r}"
                )
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"optim.decay_fraction must be in [0, 1], got {self.decay_fraction}")
        for name in ("embedding_betas", "head_betas", "scalar_betas"):
            value = getattr(self, name)
            if value is not None and len(value) != 2:
                raise ValueError(f"optim.{name} must be two numbers [beta1, beta2], got {value!r}")
        if self.lr < 0 or self.min_lr < 0 or self.muon_lr < 0:
            raise ValueError("optim.lr, optim.min_lr and optim.muon_lr must be >= 0")

    @property
    def min_lr_ratio(self) -> float:
        """The floor of every role as a fraction of its peak."""
        return self.min_lr / self.lr if self.lr > 0 else 0.0

    def hparams(self) -> OptimizerHParams:
        """These fields as `build_optimizers`' per-role hyperparameters (None = matrix value)."""
        return OptimizerHParams(
            adamw_lr=self.lr,
            muon_lr=self.muon_lr,
            embedding_lr=self.embedding_lr,
            head_lr=self.head_lr,
            scalar_lr=self.scalar_lr,
            betas=(self.beta1, self.beta2),
            embedding_betas=self.embedding_betas,
            head_betas=self.head_betas,
            scalar_betas=self.scalar_betas,
            eps=self.eps,
            weight_decay=self.weight_decay,
            embedding_weight_decay=self.embedding_weight_decay,
            head_weight_decay=self.head_weight_decay,
            scalar_weight_decay=self.scalar_weight_decay,
            muon_momentum=self.muon_momentum,
            nesterov=self.muon_nesterov,
            ns_steps=self.muon_ns_steps,
            muon_weight_decay=self.muon_weight_decay,
        )

    def schedule_for(self, optimizer: OptimizerSet, max_steps: int) -> LRSchedule:
        """One schedule over every role: warmup, then cosine or WSD down to peak · min_lr/lr.

        It ends at `cosine_steps`, or at `max_steps` (the run's length) when that is 0.
        """
        total = self.cosine_steps or max_steps
        return LRSchedule(
            optimizer,
            self.schedule,
            total_iters=total,
            warmup_iters=min(self.warmup_steps, total),
            min_lr_ratio=self.min_lr_ratio,
            decay_fraction=self.decay_fraction,
            momentum_warmup_iters=self.momentum_warmup_steps,
            momentum_start=self.momentum_start,
        )

    def build(
        self, param_groups: Mapping[str, Sequence[torch.nn.Parameter]], max_steps: int
    ) -> tuple[OptimizerSet, LRSchedule]:
        """The optimizer set over `param_groups` (roles -> parameters) and its schedule."""
        optimizer = build_optimizers(param_groups, self.optimizer, self.hparams())
        return optimizer, self.schedule_for(optimizer, max_steps)
