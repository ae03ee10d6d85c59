"""`OptimizerSet`: several optimizers over one model that step, schedule and checkpoint as one.

A modern recipe runs Muon on the hidden matrices and AdamW on everything else. Training code
should not care: an `OptimizerSet` has the surface of one optimizer (`step`, `zero_grad`,
`param_groups`, `state_dict`, `load_state_dict`), so clipping, an `LRSchedule`, logging and
checkpointing walk it like a single `torch.optim.Optimizer`.

`param_groups` is the concatenation of every member's groups (the same dict objects, so setting a
group's lr sets it in its optimizer). Groups built by `build_optimizers` carry a "role" name
("matrix", "embedding", ...), which `lr_by_role()` uses for per-role lr logging.

`state_dict()` is `{member name: member.state_dict()}`: tensors, numbers, strings and containers
only, so it saves with `torch.save` and loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import torch

__all__ = ["OptimizerSet"]


class OptimizerSet(Mapping[str, torch.optim.Optimizer]):
    """A named, ordered set of optimizers stepping as one; also a read-only mapping of them."""

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        if not optimizers:
            raise ValueError("an OptimizerSet needs at least one optimizer")
        seen: set[int] = set()
        for name, opt in optimizers.items():
            for group in opt.param_groups:
                for p in group["params"]:
                    if id(p) in seen:
                        raise ValueError(f"a parameter of {name!r} is already in another member")
                    seen.add(id(p))
        self._members = dict(optimizers)

    # The mapping of members: set["muon"], iteration in build order, len, `in`.
    def __getitem__(self, name: str) -> torch.optim.Optimizer:
        return self._members[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    @property
    def members(self) -> Mapping[str, torch.optim.Optimizer]:
        return MappingProxyType(self._members)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for opt in self._members.values() for g in opt.param_groups]

    def lr_by_role(self) -> dict[str, float]:
        """{role: lr} over all groups (a group without a role is named member/index)."""
        out = {}
        for name, opt in self._members.items():
            for i, group in enumerate(opt.param_groups):
                out[group.get("role", f"{name}/{i}")] = group["lr"]
        return out

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Step every member; a closure is evaluated once, before the first member steps."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self._members.values():
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self._members.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, dict[str, Any]]:
        return {name: opt.state_dict() for name, opt in self._members.items()}

    def load_state_dict(self, state: Mapping[str, dict[str, Any]]) -> None:
        """Load every member's state; the saved members must be exactly this set's members."""
        if set(state) != set(self._members):
            raise ValueError(
                f"optimizer state has members {sorted(state)}, this set has {sorted(self._members)}"
            )
        for name, opt in self._members.items():
            opt.load_state_dict(state[name])

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={type(o).__name__}" for n, o in self._members.items())
        return f"OptimizerSet({inner})"
