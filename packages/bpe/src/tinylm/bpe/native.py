"""Loading the optional compiled core (C extensions built by setup.py during `uv sync`).

`load(name)` imports `tinylm.bpe.<name>` (`_core`: scanner and encoder; `_train_core`: training)
and returns the module, or None when the reference (pure-Python) path must run:

* `TINYLM_BPE_NATIVE=0` forces the reference path everywhere (read at each call, so tests and
  benchmarks can flip it per tokenizer);
* the extension was not built (no compiler): a single `warning:` line on stderr, the first time,
  says that the slower pure-Python path runs.

`native_available()` says whether the native core is in use right now.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

_modules: dict[str, ModuleType | None] = {}
_warned = False


def enabled() -> bool:
    """False when `TINYLM_BPE_NATIVE=0` (or "false"/"no"/"off") forces the reference path."""
    return os.environ.get("TINYLM_BPE_NATIVE", "1").strip().lower() not in (
        "0",
        "false",
        "no",
        "off",
    )


def _import(name: str) -> ModuleType | None:
    global _warned
    if name not in _modules:
        try:
            _modules[name] = importlib.import_module(f"tinylm.bpe.{name}")
        except ImportError as err:
            _modules[name] = None
            if not _warned:
                _warned = True
                print(
                    f"warning: tinylm.bpe's native core is not built ({err}); the slower "
                    "pure-Python path runs (rebuild with `uv sync --reinstall-package bpe`)",
                    file=sys.stderr,
                )
    return _modules[name]


def load(name: str) -> ModuleType | None:
    """The compiled module `tinylm.bpe.<name>`, or None to run the reference path."""
    if not enabled():
        return None
    return _import(name)


def native_available() -> bool:
    """True when the native core (scanner and encoder) is in use, False on the reference path."""
    return load("_core") is not None


def encoder(
    byte_ids: list[int],
    ranks: dict[tuple[int, int], int],
    merged_id_by_rank: list[int],
    special_ids: dict[str, int],
    cache_entries: int,
):
    """A compiled `_core.Encoder` over these tables, or None for the reference path (native core
    off or not built). Every id must be in [0, 2**31) (the caller checks)."""
    core = load("_core")
    if core is None:
        return None
    merges = [(a, b, rank, merged_id_by_rank[rank]) for (a, b), rank in ranks.items()]
    specials = [(token.encode("utf-8"), i) for token, i in special_ids.items()]
    return core.Encoder(byte_ids, merges, specials, cache_entries)
