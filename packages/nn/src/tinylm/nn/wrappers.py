"""The plain model under `torch.compile` and data-parallel wrappers, and its plain state dict.

`torch.compile(model)` returns a module that keeps the original as `_orig_mod`;
`DistributedDataParallel` / `DataParallel` keep it as `module`. Their state dicts carry those
names as key prefixes (`_orig_mod.`, `module.`, in any nesting). Checkpoints, decoding and
exports want the model underneath: this module is the one place that knows the wrappers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch.nn import Module

__all__ = ["strip_wrapper_prefixes", "unwrap"]

_DATA_PARALLEL = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
_WRAPPER_PREFIX = re.compile(r"^(?:_orig_mod\.|module\.)+")


def unwrap(model: Module) -> Module:
    """The plain module under any nesting of torch.compile and (Distributed)DataParallel.

    A compiled wrapper forwards attribute lookups to the model, so the wrappers are recognised by
    what they are (`_orig_mod`, the data-parallel classes), never by the model's own attributes.
    """
    while True:
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, Module):
            model = inner
        elif isinstance(model, _DATA_PARALLEL):
            model = model.module
        else:
            return model


def strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """`state_dict` with every leading `_orig_mod.` / `module.` removed from its keys."""
    return {_WRAPPER_PREFIX.sub("", key): value for key, value in state_dict.items()}
