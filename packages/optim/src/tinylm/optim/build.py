"""`build_optimizers`: parameter roles (`parameter_groups()`) → an `OptimizerSet`, from two tables.

    OPTIMIZER_KINDS   kind -> {role: optimizer family}  ("muon": Muon for "matrix", AdamW else)
    ROLE_FIELDS       role -> the OptimizerHParams fields holding its lr, betas and weight decay

Every role becomes one param group (with `group["role"]`) of its family's optimizer; the set's
members are named after the families ("muon", "adamw") in role order. Empty roles are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tinylm.optim.adamw import AdamW
from tinylm.optim.muon import Muon
from tinylm.optim.optimizer_set import OptimizerSet

__all__ = ["OPTIMIZER_KINDS", "ROLES", "OptimizerHParams", "build_optimizers"]

ROLES = ("matrix", "embedding", "head", "scalar")

OPTIMIZER_KINDS: dict[str, dict[str, str]] = {
    "adamw": {"matrix": "adamw", "embedding": "adamw", "head": "adamw", "scalar": "adamw"},
    "muon": {"matrix": "muon", "embedding": "adamw", "head": "adamw", "scalar": "adamw"},
}

# role -> (lr, betas, weight decay) field names for AdamW; a None value falls back to "matrix"'s.
ROLE_FIELDS: dict[str, tuple[str, str, str]] = {
    "matrix": ("adamw_lr", "betas", "weight_decay"),
    "embedding": ("embedding_lr", "embedding_betas", "embedding_weight_decay"),
    "head": ("head_lr", "head_betas", "head_weight_decay"),
    "scalar": ("scalar_lr", "scalar_betas", "scalar_weight_decay"),
}


@dataclass(frozen=True)
class OptimizerHParams:
    """Hyperparameters of every role; `None` means "same as the AdamW matrix value".

    AdamW roles: lr `<role>_lr` (matrix: `adamw_lr`), betas `<role>_betas` (matrix: `betas`),
    decay `<role>_weight_decay` (matrix: `weight_decay`); `scalar_weight_decay` is 0 by default.
    Muon ("matrix" under kind "muon"): `muon_lr`, `muon_momentum`, `nesterov`, `ns_steps`,
    `muon_weight_decay` (decoupled, θ·(1 − lr·wd)). `eps` is shared by all AdamW groups.
    """

    adamw_lr: float = 3e-3
    muon_lr: float = 0.02
    embedding_lr: float | None = None
    head_lr: float | None = None
    scalar_lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.95)
    embedding_betas: tuple[float, float] | None = None
    head_betas: tuple[float, float] | None = None
    scalar_betas: tuple[float, float] | None = None
    eps: float = 1e-8
    weight_decay: float = 0.1
    embedding_weight_decay: float | None = None
    head_weight_decay: float | None = None
    scalar_weight_decay: float = 0.0
    muon_momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5
    muon_weight_decay: float = 0.0

    def __post_init__(self) -> None:
        # TOML/JSON give lists; store tuples so the config stays hashable and compares equal.
        for f in ("betas", "embedding_betas", "head_betas", "scalar_betas"):
            value = getattr(self, f)
            if value is not None:
                if len(value) != 2:
                    raise ValueError(f"{f} must be two numbers (beta1, beta2), got {value!r}")
                object.__setattr__(self, f, (float(value[0]), float(value[1])))

    def adamw_group(self, role: str) -> dict[str, Any]:
        """lr, betas and weight_decay of an AdamW role, with None resolved to the matrix value."""
        matrix = ROLE_FIELDS["matrix"]
        values = [getattr(self, f) for f in ROLE_FIELDS[role]]
        values = [getattr(self, m) if v is None else v for v, m in zip(values, matrix, strict=True)]
        lr, betas, weight_decay = values
        return dict(lr=lr, betas=betas, weight_decay=weight_decay)

    def muon_group(self, role: str) -> dict[str, Any]:
        return dict(
            lr=self.muon_lr,
            momentum=self.muon_momentum,
            nesterov=self.nesterov,
            ns_steps=self.ns_steps,
            weight_decay=self.muon_weight_decay,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML values; fields left at None ("same as matrix") are omitted (TOML has no
        null), so `from_dict(to_dict())` gives the same hparams back."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()
            if v is not None
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptimizerHParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown optimizer hparams {unknown}; known: {sorted(known)}")
        return cls(**data)


# family -> (how to read a role's group settings, how to build the optimizer from groups)
_FAMILIES = {
    "adamw": (OptimizerHParams.adamw_group, lambda groups, hp: AdamW(groups, eps=hp.eps)),
    "muon": (OptimizerHParams.muon_group, lambda groups, hp: Muon(groups)),
}


def build_optimizers(
    roles: Mapping[str, Sequence[torch.nn.Parameter]],
    kind: str,
    hparams: OptimizerHParams | None = None,
) -> OptimizerSet:
    """One `OptimizerSet` for a model's parameter roles (`TransformerLM.parameter_groups()`).

    kind "adamw": AdamW for every role; "muon": Muon for "matrix", AdamW for the others.
    Unknown kinds or roles raise ValueError with one line naming the valid ones.
    """
    if kind not in OPTIMIZER_KINDS:
        raise ValueError(
            f"unknown optimizer kind {kind!r}; valid kinds: {', '.join(OPTIMIZER_KINDS)}"
        )
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown parameter roles {unknown}; valid roles: {', '.join(ROLES)}")
    hp = hparams or OptimizerHParams()
    groups: dict[str, list[dict[str, Any]]] = {}
    for role in ROLES:
        params = [p for p in roles.get(role, ()) if p.requires_grad]
        if not params:
            continue
        family = OPTIMIZER_KINDS[kind][role]
        settings, _ = _FAMILIES[family]
        groups.setdefault(family, []).append({"params": params, "role": role, **settings(hp, role)})
    if not groups:
        raise ValueError("no trainable parameters in any role")
    return OptimizerSet({family: _FAMILIES[family][1](g, hp) for family, g in groups.items()})
