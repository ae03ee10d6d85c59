"""jaxtyping + beartype checks on public functions, off when TINYLM_TYPECHECK=0 (read at import)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from beartype import beartype
from jaxtyping import jaxtyped

F = TypeVar("F", bound=Callable)

TYPECHECK = os.environ.get("TINYLM_TYPECHECK", "1").strip().lower() not in {
    "0",
    "false",
    "no",
    "off",
}


def typechecked(fn: F) -> F:
    """Wrap `fn` with a beartype check of its annotations, unless checks are switched off."""
    return jaxtyped(typechecker=beartype)(fn) if TYPECHECK else fn
