"""Checkpoints: atomic, `weights_only`-loadable dicts of plain tensors and containers.

A checkpoint is a dict with

    model       state dict, `_orig_mod.` / `module.` prefixes (torch.compile, DDP) stripped
    optimizer   optimizer state dict (train-lm: an OptimizerSet's {member: state dict}, e.g.
                {"muon": ..., "adamw": ...}; checkpoints before parameter roles hold one AdamW's)
    iteration   int, the number of optimizer steps taken
    rng         python / numpy / torch / cuda RNG states as tensors, ints and lists
    format      "tinylm-checkpoint-1"
    ...         any extras passed as keyword arguments (scheduler state: the LRSchedule's position
                and settings; config dict; data position)

Writes go to `<name>.tmp` in the same directory, are fsync'ed, then `os.replace`d over the target:
a crash leaves either the old file or the new one, never half of one. Loads map to CPU first so
resuming never holds two copies of the weights on the GPU; `load_state_dict` then moves them.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import random
import re
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from tinylm.nn import strip_wrapper_prefixes, unwrap

__all__ = [
    "UnsafeCheckpoint",
    "capture_rng_state",
    "load_checkpoint",
    "load_weights_only",
    "read_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

FORMAT = "tinylm-checkpoint-1"


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA, if initialised) RNG states as weights_only-safe values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


def save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    out: str | os.PathLike | IO[bytes],
    **extra: Any,
) -> None:
    """Write model, optimizer, iteration, RNG states and `extra` items to `out` (path or file)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "model": strip_wrapper_prefixes(model.state_dict()),
        "optimizer": optimizer.state_dict(),
        "iteration": int(iteration),
        "rng": capture_rng_state(),
    }
    for key, value in extra.items():
        if key in payload:
            raise ValueError(f"extra checkpoint item {key!r} collides with a built-in item")
        payload[key] = value.state_dict() if hasattr(value, "state_dict") else value
    if not isinstance(out, str | os.PathLike):
        torch.save(payload, out)
        return
    path = Path(out)
    # Not files.atomic_open: a run killed mid-write must leave the fixed name `<name>.tmp`,
    # the one rundir.remove_stale_temporaries deletes on the next start (atomic_open's
    # random `.<name>.XXXX.tmp` would pile up, a whole checkpoint each).
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable too (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class UnsafeCheckpoint(ValueError):
    """The file pickles Python objects other than tensors and plain containers; not loaded."""


def read_checkpoint(src: str | os.PathLike | IO[bytes]) -> dict[str, Any]:
    """Load a checkpoint dict onto the CPU with `weights_only=True`; clear errors for bad files.

    Raises UnsafeCheckpoint (a ValueError) for a file that holds other objects (a pickle that
    would import or call code: refused, nothing in it runs), ValueError for corrupt or truncated
    files and for dicts that are not tinylm checkpoints.
    """
    name = str(src) if isinstance(src, str | os.PathLike) else getattr(src, "name", "<file object>")
    if isinstance(src, str | os.PathLike) and not Path(src).is_file():
        raise FileNotFoundError(f"checkpoint not found: {src}")
    payload = load_weights_only(src)
    if not isinstance(payload, dict) or "model" not in payload or "iteration" not in payload:
        raise ValueError(f"{name} is not a tinylm checkpoint (no 'model'/'iteration' entries)")
    return payload


def load_weights_only(
    src: str | os.PathLike | IO[bytes],
    *,
    kind: str = "checkpoint",
    advice: str = "Use only checkpoints written by train-lm or save_checkpoint",
) -> Any:
    """`torch.load(src, weights_only=True)` onto the CPU, every failure one ValueError line.

    A pickle that would import or call code raises UnsafeCheckpoint ("refused for safety",
    `advice` after it; never torch's hint to turn weights_only off), anything else unreadable
    ValueError("<kind> <name> is corrupt or truncated (...)"). Also for other .pt/.bin files
    (`import-hf` reads pytorch_model.bin through it, with its own `kind` and `advice`).
    """
    name = str(src) if isinstance(src, str | os.PathLike) else getattr(src, "name", "<file object>")
    try:
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": noise beside the real error
            warnings.simplefilter("ignore")
            return torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _UNSAFE.search(str(e)) or _code_opcodes(src)
        if found:
            raise UnsafeCheckpoint(
                f"{kind} {name} holds Python objects other than tensors ({found.group(1)}); "
                f"it was refused for safety and nothing in it was run. {advice}"
            ) from None
        raise ValueError(f"{kind} {name} is corrupt or truncated (not a readable pickle)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{kind} {name} is corrupt or truncated ({_reason(e)})") from None
    except Exception as e:
        # Garbage that starts like a pickle trips the weights_only unpickler in any way
        # (struct.error, KeyError, ...); it runs no code, so every other failure is the file's.
        raise ValueError(f"{kind} {name} is corrupt or truncated ({_reason(e)})") from None


def _code_opcodes(src) -> re.Match | None:
    """For a plain (non-zip) pickle torch could not parse: does it import or call anything?

    Scans the opcodes with `pickletools` (which never executes them); returns a match-like
    object naming the first import, or None for garbage and data-only pickles.
    """
    if not isinstance(src, str | os.PathLike):
        return None
    try:
        with open(src, "rb") as f:
            for opcode, arg, _ in pickletools.genops(f):
                if opcode.name in ("GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE"):
                    what = str(arg).replace(" ", ".") if arg else opcode.name
                    return _UNSAFE.search(f"GLOBAL {what}")
    except Exception:  # not a pickle at all: corrupt
        return None
    return None


# torch's weights_only refusal names the global it would not import ("GLOBAL posix.system").
_UNSAFE = re.compile(r"(?:GLOBAL|global|class)\s+'?([\w.]+)")


def _reason(error: BaseException) -> str:
    """A short cause for a load error: torch's first sentence, with no advice and no escapes."""
    text = _ANSI.sub("", str(error)).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first.split(". ")[0].rstrip(".")


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def load_checkpoint(
    src: str | os.PathLike | IO[bytes] | dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: Any = None,
    restore_rng: bool = False,
) -> int:
    """Restore `model` (and `optimizer`, `scheduler`, RNG states if given/asked) from `src`.

    `src` is a path, a binary file object, or a dict already returned by `read_checkpoint` (to
    read the extras such as `config` or `data` without loading the file twice). Returns the
    iteration. Models wrapped by torch.compile or DDP are fine: prefixes are handled.
    """
    payload = src if isinstance(src, dict) else read_checkpoint(src)
    target = unwrap(model)
    try:
        target.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise ValueError(
            f"checkpoint weights do not fit this model: {str(e).splitlines()[0]}"
        ) from e
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        if "scheduler" not in payload:
            raise ValueError("checkpoint has no scheduler state")
        scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        restore_rng_state(payload["rng"])
    return int(payload["iteration"])
