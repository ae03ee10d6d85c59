"""Runtime shape/dtype checking of jaxtyping annotations, switchable off for speed.

Every public entry point of `tinylm.nn` is wrapped in `typechecked`, which runs beartype on its
jaxtyping annotations (`Float[Tensor, "... seq d_model"]`): a tensor of the wrong dtype, rank or
inconsistent size fails at the call with a message naming the argument and the dimension.

Set the environment variable `TINYLM_TYPECHECK=0` (also `false`, `no`, `off`) *before importing*
`tinylm.nn` to skip the checks; the wrapped functions are then the plain functions, zero overhead.
Checks are skipped anyway while `torch.compile` traces, so compiled graphs carry no Python checks
and no graph breaks.
"""

import functools
import os
from collections.abc import Callable
from typing import TypeVar

import torch
from beartype import beartype
from jaxtyping import jaxtyped

F = TypeVar("F", bound=Callable)

TYPECHECK: bool = os.environ.get("TINYLM_TYPECHECK", "1").strip().lower() not in {
    "0",
    "false",
    "no",
    "off",
}


def is_compiling() -> bool:
    """True while torch.compile/dynamo traces (the Python checks must stay out of the graph)."""
    return torch.compiler.is_compiling()


def typechecked(fn: F) -> F:
    """Check `fn`'s jaxtyping annotations with beartype, unless disabled or compiling."""
    if not TYPECHECK:
        return fn
    checked = jaxtyped(typechecker=beartype)(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if torch.compiler.is_compiling():
            return fn(*args, **kwargs)
        return checked(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def value_checks_enabled() -> bool:
    """Data-dependent checks (token id < vocab_size) read tensor values, i.e. sync with the device.

    They run in eager mode while type checking is on; off under `TINYLM_TYPECHECK=0` and inside
    torch.compile, where a data-dependent branch would break the graph.
    """
    return TYPECHECK and not torch.compiler.is_compiling()
