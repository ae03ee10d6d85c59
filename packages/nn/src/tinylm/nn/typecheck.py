"""Runtime shape/dtype checking of jaxtyping annotations, switchable off for speed.

Every public entry point of `tinylm.nn` is wrapped in `typechecked`, which runs beartype on its
jaxtyping annotations (`Float[Tensor, "... seq d_model"]`): a tensor of the wrong dtype, rank or
inconsistent size fails at the call with a message naming the argument and the dimension.

`TINYLM_TYPECHECK` (read once, at import of `tinylm.nn`) picks one of three levels:

| value | shape/dtype checks | value checks (read tensor data) |
|---|---|---|
| `0`/`false`/`no`/`off` | none (plain functions) | none |
| `1` (default) | every call | CPU tensors: always; accelerator: API boundaries only |
| `2`/`strict` | every call | always, accelerator tensors too (one host sync each) |

Which checks sync with the device (measured by `tests/test_typecheck.py` with a
TorchFunctionMode that records `__int__`/`__bool__`/`item`/`tolist`/...):
- shape/dtype checks (beartype + jaxtyping) read only tensor metadata: never a sync.
- value checks (`token id < vocab_size` in Embedding, `position < max_seq_len` in RoPE,
  `target < vocab` in the losses) read data: `int(ids.max())`. On a CPU tensor that is a cheap
  reduction, not a device sync, so they run at level 1. On CUDA/MPS each would block the host
  until the GPU catches up, so at level 1 the training hot path (model forward, loss) skips them
  and they run only at the API boundaries that see data once per call: `generate`'s prompt
  check (and whatever calls `value_checks_enabled(t, boundary=True)`).
- Inside `torch.compile` nothing Python-side runs: no checks, no graph breaks.
- Inside `with unchecked():` nothing runs either. `generate` checks its prompt and the prompt
  forward, then decodes token by token under `unchecked()`: the per-token calls see the same
  shapes and dtypes again, and ~100 beartype checks per token would dominate batch-1 decoding.
"""

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from beartype import beartype
from jaxtyping import jaxtyped
from torch import Tensor

F = TypeVar("F", bound=Callable)

_LEVEL = os.environ.get("TINYLM_TYPECHECK", "1").strip().lower()
#: Shape/dtype checks on (levels 1 and 2).
TYPECHECK: bool = _LEVEL not in {"0", "false", "no", "off"}
#: Value checks on accelerator tensors in the hot path too (level 2), at one host sync each.
STRICT: bool = _LEVEL in {"2", "strict"}


def is_compiling() -> bool:
    """True while torch.compile/dynamo traces (the Python checks must stay out of the graph)."""
    return torch.compiler.is_compiling()


_suspended = 0  # > 0 inside `unchecked()`; a plain int: read on every checked call, so cheap


@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """Skip all checks (shape/dtype and value) inside the block, e.g. in a decode loop whose
    shapes were checked on its first step. Nests; not meant to be shared across threads."""
    global _suspended
    _suspended += 1
    try:
        yield
    finally:
        _suspended -= 1


def typechecked(fn: F) -> F:
    """Check `fn`'s jaxtyping annotations with beartype, unless disabled or compiling."""
    if not TYPECHECK:
        return fn
    checked = jaxtyped(typechecker=beartype)(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _suspended or torch.compiler.is_compiling():
            return fn(*args, **kwargs)
        return checked(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def value_checks_enabled(tensor: Tensor | None = None, *, boundary: bool = False) -> bool:
    """Whether a data-dependent check (e.g. token id < vocab_size) on `tensor` should run now.

    Such a check reads tensor values (`int(t.max())`): a host sync when `tensor` lives on an
    accelerator. Policy (see the module docstring): never under `TINYLM_TYPECHECK=0` or inside
    torch.compile; on CPU tensors always; on accelerator tensors only at an API `boundary`
    (once per call, e.g. a generate prompt) or with `TINYLM_TYPECHECK=strict`.

    Called without a tensor it keeps the old answer (on whenever type checks are on, any device);
    hot-path callers should pass the tensor so that GPU training does not sync.
    """
    if not TYPECHECK or _suspended or torch.compiler.is_compiling():
        return False
    if tensor is None or boundary or STRICT:
        return True
    return tensor.device.type == "cpu"
