"""Older checkpoints and configs -> today's formats: the one place that knows the old ones.

Every run directory train-lm ever wrote still loads (generate, export-hf, --resume). Each rule
is a pure function of the saved data, never of which version of a package is installed:

    config      [model] attention / fused_qkv and [train] compile / dtype, from before [compute]
                existed, move to [compute] (a [compute] value the file also sets wins)
    weights     `_orig_mod.` / `module.` key prefixes (a compiled or DDP model's state dict)
                are dropped
    schedule    a CosineSchedule's `cosine_cycle_iters` (checkpoints before parameter roles) is
                the LRSchedule's `total_iters`
    optimizer   one AdamW's state dict (checkpoints before parameter roles: two groups split by
                `ndim`, decayed first) becomes an AdamW-only OptimizerSet's: the moments follow
                their parameters into the role groups
"""

from __future__ import annotations

from typing import Any

import torch

from tinylm.nn import strip_wrapper_prefixes

__all__ = ["MOVED_KEYS", "migrate_checkpoint", "migrate_config", "migrate_optimizer_state"]

# "old.key" -> "new.key" for keys that moved section. Saved configs are moved silently; a command
# line or a new file naming the old key gets a one-line pointer (config.apply_overrides, cli).
MOVED_KEYS = {
    "model.attention": "compute.attention",
    "model.fused_qkv": "compute.fused_qkv",
    "train.compile": "compute.compile",
    "train.dtype": "compute.dtype",
}


def migrate_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw config dict (TOML tables) with every moved key in its new section; a copy."""
    out = dict(raw)
    for old, new in MOVED_KEYS.items():
        section, key = old.split(".")
        values = out.get(section)
        if not isinstance(values, dict) or key not in values:
            continue
        out[section] = {k: v for k, v in values.items() if k != key}
        target, name = new.split(".")
        moved = dict(out.get(target, {}))
        moved.setdefault(name, values[key])
        out[target] = moved
    return out


def migrate_checkpoint(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint dict (as `read_checkpoint` returns it) in today's format; a shallow copy."""
    out = dict(payload)
    if isinstance(payload["model"], dict):
        out["model"] = strip_wrapper_prefixes(payload["model"])
    if isinstance(payload.get("config"), dict):
        out["config"] = migrate_config(payload["config"])
    schedule = payload.get("scheduler")
    cosine = isinstance(schedule, dict) and "cosine_cycle_iters" in schedule
    if cosine and "total_iters" not in schedule:
        out["scheduler"] = {**schedule, "total_iters": schedule["cosine_cycle_iters"]}
    return out


def migrate_optimizer_state(
    state: dict[str, Any], model: torch.nn.Module, optimizer: Any
) -> dict[str, Any]:
    """A saved optimizer state in the OptimizerSet format ({member: state dict}) of `optimizer`.

    Today's states pass through. A single AdamW's (`state`/`param_groups` at the top) is mapped
    onto this set's AdamW, which must then be the only member.
    """
    if not ("state" in state and "param_groups" in state):
        return state
    if list(optimizer) != ["adamw"]:
        raise ValueError(
            "checkpoint holds one AdamW (an older format); resume it with optim.optimizer = "
            f"'adamw', not {list(optimizer)}"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    old_order = [p for p in params if p.ndim >= 2] + [p for p in params if p.ndim < 2]
    new = optimizer["adamw"].state_dict()
    new_index = {
        id(p): i
        for i, p in enumerate(p for g in optimizer["adamw"].param_groups for p in g["params"])
    }
    old_ids = [i for g in state["param_groups"] for i in g["params"]]
    if len(old_ids) != len(old_order):
        raise ValueError("checkpoint's optimizer state does not fit this model")
    by_old_id = dict(zip(old_ids, old_order, strict=True))
    moments = {new_index[id(by_old_id[i])]: v for i, v in state["state"].items()}
    return {"adamw": {"state": moments, "param_groups": new["param_groups"]}}
