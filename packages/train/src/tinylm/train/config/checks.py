"""Value checks of a whole run config: ranges, names, and combinations across sections.

One table (`CHECKS`), checked for every config before a run touches anything: a bad value is one
line now, not a traceback after the first eval. Each entry: (predicate, what the value must be).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from tinylm.train.data.cache import BUNDLED_CORPORA

if TYPE_CHECKING:
    from tinylm.train.config.sections import TrainConfig

__all__ = ["CHECKS", "MAX_SEED", "validate_config"]

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_ID_DTYPES = ("", "uint8", "uint16", "uint32", "int32", "int64")


def _num(lo: float | None = None, hi: float | None = None, *, lo_open=False, hi_open=False):
    def ok(v) -> bool:
        if not math.isfinite(v):
            return False
        if lo is not None and (v <= lo if lo_open else v < lo):
            return False
        return not (hi is not None and (v >= hi if hi_open else v > hi))

    left = "" if lo is None else ("> " if lo_open else ">= ") + f"{lo:g}"
    right = "" if hi is None else ("< " if hi_open else "<= ") + f"{hi:g}"
    bounds = " and ".join(p for p in (left, right) if p)
    return ok, "a finite number" + (f" {bounds}" if bounds else "")


# Seeds: what torch.manual_seed and TOML's integers (signed 64-bit, config.toml) both take.
MAX_SEED = 2**63 - 1
SEED = ((lambda v: 0 <= v <= MAX_SEED), f"an integer in [0, {MAX_SEED}] (2**63 - 1)")


def _one_of(*choices: str):
    return (lambda v: v in choices), "one of " + ", ".join(repr(c) for c in choices)


POSITIVE, NON_NEGATIVE = _num(1), _num(0)
CHECKS: dict[str, tuple[Any, str]] = {
    "data.text_bytes": NON_NEGATIVE,
    "data.val_fraction": _num(0, 1, lo_open=True, hi_open=True),
    "data.vocab_size": POSITIVE,
    "data.tokenizer_bytes": NON_NEGATIVE,
    "data.dtype": _one_of(*_ID_DTYPES),
    "data.num_workers": NON_NEGATIVE,
    "data.text_errors": _one_of("strict", "replace"),
    "optim.lr": _num(0, lo_open=True),
    "optim.min_lr": NON_NEGATIVE,
    "optim.warmup_steps": NON_NEGATIVE,
    "optim.cosine_steps": NON_NEGATIVE,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.beta1": _num(0, 1, hi_open=True),
    "optim.beta2": _num(0, 1, hi_open=True),
    "optim.eps": _num(0, lo_open=True),
    "optim.grad_clip": NON_NEGATIVE,
    "optim.decay_fraction": _num(0, 1),
    "optim.muon_lr": NON_NEGATIVE,
    "optim.muon_momentum": _num(0, 1, hi_open=True),
    "optim.muon_ns_steps": NON_NEGATIVE,
    "optim.momentum_warmup_steps": NON_NEGATIVE,
    "optim.momentum_start": _num(0, 1, hi_open=True),
    "train.max_steps": POSITIVE,
    "train.batch_size": POSITIVE,
    "train.grad_accum": POSITIVE,
    "train.seed": SEED,
    "train.device": ((lambda v: bool(_DEVICE.match(v))), "auto, cpu, cuda, cuda:N or mps"),
    "train.peak_flops": NON_NEGATIVE,
    "train.max_seconds": NON_NEGATIVE,
    "train.log_interval": POSITIVE,
    "train.diverge_margin": NON_NEGATIVE,
    "train.diverge_patience": POSITIVE,
    "eval.interval": POSITIVE,
    "eval.iters": POSITIVE,
    "eval.batch_size": NON_NEGATIVE,
    "run.name": ((lambda v: bool(v) and "/" not in v and v not in (".", "..")), "a plain name"),
    "run.checkpoint_interval": POSITIVE,
    "run.keep_checkpoints": POSITIVE,
    "sample.max_new_tokens": NON_NEGATIVE,
    "sample.temperature": NON_NEGATIVE,
    "sample.top_p": _num(0, 1, lo_open=True),
    "sample.top_k": NON_NEGATIVE,
    "sample.seed": SEED,
}


def validate_config(config: TrainConfig) -> None:
    """Raise ValueError (one line naming the key) for any value outside `CHECKS`' ranges."""
    for key, (ok, must) in CHECKS.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if not ok(value):
            raise ValueError(f"config key '{key}' must be {must}, got {value!r}")
    # Combinations within [data] and across sections.
    d = config.data
    if d.val_text and (not d.text or d.text in BUNDLED_CORPORA):
        raise ValueError(
            "data.val_text needs data.text, the train file beside it (a file path: a bundled "
            "corpus is split by itself)"
        )
    if d.val_text and d.text_errors != "strict":
        raise ValueError(
            "data.text_errors = 'replace' needs a single data.text: the streamed encoding of "
            "data.text + data.val_text reads strict UTF-8"
        )
    if config.optim.fit_to_time and config.train.max_seconds <= 0:
        raise ValueError("optim.fit_to_time needs a budget: set train.max_seconds > 0")
