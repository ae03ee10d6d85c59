"""Run configuration: frozen dataclasses, one per TOML section, + `--section.key value` overrides.

    [data]   where tokens come from (bundled corpus or one text file → split → BPE → .npy, a
             train + a validation text file → BPE → .npy, or pre-encoded .npy files)
    [model]  the fields of `tinylm.nn.ModelConfig`: what the model is (vocab_size defaults to
             data.vocab_size); a resume must keep it
    [compute] the fields of `tinylm.nn.ComputeConfig`: how it is computed (attention kernel,
             fused QKV, loss kernel, torch.compile, dtype); a resume may change it
    [optim]  the optimizer set (adamw | muon, per-role lrs/betas/decay) and the schedule
             (cosine | wsd, optionally fitted to train.max_seconds)
    [train]  steps, batch, device, time budget, MFU peak
    [eval]   held-out evaluation interval and size
    [run]    run directory, checkpoint interval, optional W&B logging
    [sample] the text sample generated at the end

`load_config(path, overrides)` reads a TOML file (default: the shipped `configs/default.toml`; a
bare name such as "modern" is a bundled config, anything else a path), applies overrides,
validates every key (unknown ones fail with the closest valid name) and returns a `TrainConfig`;
`TrainConfig.to_toml()` writes it back so every run carries its exact config.
Fields whose value is None ("same as ...") are left out of the TOML (TOML has no null).

Old configs (before [compute] existed) still load: `run.migrate` moves `model.attention`,
`model.fused_qkv`, `train.compile` and `train.dtype` to [compute].
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from tinylm.nn import ComputeConfig, ModelConfig
from tinylm.optim import OPTIMIZER_KINDS, SCHEDULE_KINDS
from tinylm.train.data.cache import BUNDLED_CORPORA
from tinylm.train.data.config import DataConfig
from tinylm.train.files import atomic_write
from tinylm.train.run.migrate import MOVED_KEYS, migrate_config

__all__ = [
    "DataConfig",
    "EvalConfig",
    "LoopConfig",
    "OptimConfig",
    "RunConfig",
    "SampleConfig",
    "TrainConfig",
    "bundled_configs",
    "default_config_path",
    "load_config",
    "resolve_config_path",
    "validate_config",
]


@dataclass(frozen=True)
class OptimConfig:
    """The optimizer set over the model's parameter roles and the schedule driving all of it.

    Roles (`TransformerLM.parameter_groups()`): matrix, embedding, head, scalar. `optimizer`
    picks a row of `tinylm.optim.OPTIMIZER_KINDS` ("adamw": AdamW for every role; "muon": Muon
    for "matrix", AdamW for the rest), `schedule` a row of `SCHEDULE_KINDS`. Every role follows
    the same schedule shape from its own peak lr down to peak · min_lr/lr. A None field means
    "same as the AdamW matrix value" (lr, (beta1, beta2), weight_decay).
    """

    optimizer: str = "adamw"  # adamw | muon
    schedule: str = "cosine"  # cosine | wsd
    lr: float = 3e-3  # peak AdamW lr of "matrix" (kind adamw) and default of the other roles
    min_lr: float = 3e-4  # floor of that lr; every role ends at its peak · min_lr / lr
    warmup_steps: int = 20
    cosine_steps: int = 0  # end of the schedule (cosine or wsd); 0 = train.max_steps
    decay_fraction: float = 0.2  # wsd: the last fraction of the schedule decays linearly
    fit_to_time: bool = False  # schedule follows wallclock / train.max_seconds (not bit-exact)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # global grad-norm clip; 0 = off
    embedding_lr: float | None = None  # token (and value) embedding tables
    head_lr: float | None = None  # untied lm_head
    scalar_lr: float | None = None  # norm gains, gates, skip weights
    embedding_betas: tuple[float, ...] | None = None
    head_betas: tuple[float, ...] | None = None
    scalar_betas: tuple[float, ...] | None = None
    embedding_weight_decay: float | None = None
    head_weight_decay: float | None = None
    scalar_weight_decay: float = 0.0  # gains are not decayed
    muon_lr: float = 0.02  # Muon's lr for "matrix" (optimizer = "muon")
    muon_momentum: float = 0.95
    muon_nesterov: bool = True
    muon_ns_steps: int = 5
    muon_weight_decay: float = 0.0  # decoupled: θ·(1 − lr·wd)
    momentum_warmup_steps: int = 0  # Muon momentum rises from momentum_start over these steps
    momentum_start: float = 0.85

    def __post_init__(self) -> None:
        for name, table in (("optimizer", OPTIMIZER_KINDS), ("schedule", SCHEDULE_KINDS)):
            if getattr(self, name) not in table:
                raise ValueError(
                    f"optim.{name} must be one of {', '.join(table)}, got {getattr(self, name)!r}"
                )
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError(f"optim.decay_fraction must be in [0, 1], got {self.decay_fraction}")
        for name in ("embedding_betas", "head_betas", "scalar_betas"):
            value = getattr(self, name)
            if value is not None and len(value) != 2:
                raise ValueError(f"optim.{name} must be two numbers [beta1, beta2], got {value!r}")
        if self.lr < 0 or self.min_lr < 0 or self.muon_lr < 0:
            raise ValueError("optim.lr, optim.min_lr and optim.muon_lr must be >= 0")

    @property
    def min_lr_ratio(self) -> float:
        """The floor of every role as a fraction of its peak."""
        return self.min_lr / self.lr if self.lr > 0 else 0.0


@dataclass(frozen=True)
class LoopConfig:
    max_steps: int = 300  # optimizer steps
    batch_size: int = 16  # sequences per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    max_seconds: float = 0.0  # wall-clock budget; stop (with a checkpoint) when spent; 0 = none
    log_interval: int = 10  # steps between metrics.jsonl lines (and loss checks)
    peak_flops: float = 0.0  # per-device peak FLOP/s for MFU; 0 = table (GPUs) or measured (CPU)
    diverge_margin: float = 5.0  # stop when train loss > ln(vocab) + margin ...; 0 = off
    diverge_patience: int = 3  # ... at this many consecutive log steps
    deterministic: bool = True  # CPU: bit-reproducible at any thread count (see README)


@dataclass(frozen=True)
class EvalConfig:
    interval: int = 50  # steps between held-out evaluations (and at the end)
    iters: int = 10  # batches per evaluation
    batch_size: int = 0  # 0 = train.batch_size


@dataclass(frozen=True)
class RunConfig:
    name: str = "default"  # run directory is <root>/<name>
    root: str = "runs"
    checkpoint_interval: int = (
        100  # steps between periodic checkpoints (a final one is always written)
    )
    keep_checkpoints: int = 2  # periodic checkpoints kept (older ones are deleted)
    wandb: bool = False  # log to Weights & Biases (needs `wandb` installed)
    wandb_project: str = "tinylm"


@dataclass(frozen=True)
class SampleConfig:
    prompt: str = "The"
    max_new_tokens: int = 200  # 0 = no sample
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 0  # keep the k most likely tokens; 0 = off
    seed: int = 0


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "compute": ComputeConfig,
    "optim": OptimConfig,
    "train": LoopConfig,
    "eval": EvalConfig,
    "run": RunConfig,
    "sample": SampleConfig,
}


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.root) / self.run.name

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (tuples as lists, None fields left out): TOML- and JSON-ready."""
        out = {}
        for name in SECTIONS:
            section = dataclasses.asdict(getattr(self, name))
            out[name] = {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in section.items()
                if v is not None
            }
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Validate and build; `model.vocab_size` defaults to `data.vocab_size`.

        Keys of configs written before [compute] existed are moved there first.
        """
        raw = migrate_config(raw)
        for section, values in raw.items():
            if section not in SECTIONS:
                raise ValueError(f"unknown config section [{section}]{_hint(section, SECTIONS)}")
            if not isinstance(values, dict):
                raise ValueError(f"config section [{section}] must be a table")
            names = _field_types(SECTIONS[section])
            for key in values:
                if key not in names:
                    full = [f"{section}.{n}" for n in names]
                    raise ValueError(
                        f"unknown config key '{section}.{key}'{_hint(f'{section}.{key}', full)}"
                    )
        # Every value's type first, then what is missing: a partial config with a bad value is
        # told about that value, not about the keys it never meant to set.
        coerced = {}
        for section, kind in SECTIONS.items():
            types_ = _field_types(kind)
            coerced[section] = {
                k: _coerce(f"{section}.{k}", v, types_[k]) for k, v in raw.get(section, {}).items()
            }
        data_vocab = coerced["data"].get("vocab_size", DataConfig.vocab_size)
        coerced["model"].setdefault("vocab_size", data_vocab)
        missing = [
            f"{section}.{f.name}"
            for section, kind in SECTIONS.items()
            for f in dataclasses.fields(kind)
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in coerced[section]
        ]
        if missing:
            raise ValueError(
                f"config is missing required key(s) {', '.join(missing)}; a config file must "
                "set them (the bundled ones do: `train-lm --help` prints default.toml)"
            )
        config = cls(**{section: SECTIONS[section](**coerced[section]) for section in SECTIONS})
        validate_config(config)
        return config

    def replace(self, **sections: dict[str, Any]) -> TrainConfig:
        """Copy with some fields changed: `cfg.replace(train={"max_steps": 10})`."""
        raw = self.to_dict()
        for section, values in sections.items():
            raw.setdefault(section, {}).update(values)
        return TrainConfig.from_dict(raw)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as TOML atomically."""
        atomic_write(path, self.to_toml())


def default_config_path() -> Path:
    return Path(str(resources.files("tinylm.train") / "configs" / "default.toml"))


def bundled_configs() -> dict[str, Path]:
    """{name: path} of the configs shipped in tinylm/train/configs (default, modern, ...)."""
    folder = default_config_path().parent
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def resolve_config_path(name_or_path: str | os.PathLike | None) -> Path:
    """A bundled config by name ("modern"), or a file by path; one-line errors for neither."""
    if name_or_path is None:
        return default_config_path()
    text = str(name_or_path)
    bundled = bundled_configs()
    if text in bundled and not Path(text).is_file():
        return bundled[text]
    path = Path(text)
    if path.suffix or os.sep in text or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        return path
    raise ValueError(
        f"unknown config {text!r}{_hint(text, bundled)}; bundled configs: {', '.join(bundled)} "
        "(or give a .toml path)"
    )


def load_config(
    path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Read a TOML config (default: the shipped default.toml) and apply `{"section.key": value}`.

    `path` is a file path or the name of a bundled config (`bundled_configs()`). Override values
    may be strings as typed on a command line ("3e-4", "true", "a,b"); they are parsed according
    to the field's type.
    """
    path = resolve_config_path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")  # TOML is UTF-8, whatever the locale says
    except UnicodeDecodeError as e:
        raise ValueError(
            f"config file {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start}); TOML files are UTF-8"
        ) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path} is not valid TOML: {e}") from None
    return TrainConfig.from_dict(apply_overrides(raw, overrides or {}))


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the raw section dict with dotted-key overrides applied (keys validated)."""
    raw = {section: dict(values) for section, values in raw.items()}
    valid = [f"{s}.{n}" for s, kind in SECTIONS.items() for n in _field_types(kind)]
    for key, value in overrides.items():
        if key in MOVED_KEYS:
            raise ValueError(f"config key '{key}' is now '{MOVED_KEYS[key]}'")
        if key not in valid:
            raise ValueError(f"unknown config key '{key}'{_hint(key, valid)}")
        section, name = key.split(".", 1)
        kind = _field_types(SECTIONS[section])[name]
        raw.setdefault(section, {})[name] = (
            _parse(key, value, kind) if isinstance(value, str) else value
        )
    return raw


def _hint(name: str, valid) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _field_types(kind: type) -> dict[str, Any]:
    hints = typing.get_type_hints(kind)
    return {f.name: hints[f.name] for f in dataclasses.fields(kind)}


def _base_type(tp: Any) -> Any:
    """bool/int/float/str/tuple for the annotations used in config dataclasses."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return type(typing.get_args(tp)[0])
    if origin in (tuple, list):
        return tuple
    if origin in (typing.Union, types.UnionType):
        return _base_type(next(a for a in typing.get_args(tp) if a is not type(None)))
    return tp


def _parse(key: str, text: str, tp: Any) -> Any:
    """Parse a command-line string for a field of type `tp`."""
    base = _base_type(tp)
    if base is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"config key '{key}' must be true or false, got {text!r}")
    if base is tuple:
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                items = tomllib.loads(f"v = {stripped}")["v"]
            except tomllib.TOMLDecodeError:
                raise ValueError(f"config key '{key}' must be a list, got {text!r}") from None
        else:
            items = [part for part in stripped.split(",") if part] if stripped else []
        item = _item_type(tp)
        if item in (int, float):
            return [_parse(key, str(v), item) for v in items]
        return items
    if base is int:
        try:  # exactly, before the float route below (which rounds past 2**53)
            return int(text.strip())
        except ValueError:
            pass
    if base in (int, float):
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"config key '{key}' must be a number, got {text!r}") from None
        if not math.isfinite(number):
            raise ValueError(f"config key '{key}' must be a finite number, got {text!r}")
        if base is int:
            if number != int(number):
                raise ValueError(f"config key '{key}' must be an integer, got {text!r}")
            return int(number)
        return number
    return text


def _item_type(tp: Any) -> Any:
    """The element type of a tuple[X, ...] annotation (possibly inside `| None`), else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    return args[0] if args else None


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check a TOML value against the field type (ints are accepted where floats are expected)."""
    base = _base_type(tp)
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is tuple and isinstance(value, list | tuple):
        item = _item_type(tp)
        if item in (int, float):
            return tuple(_coerce(f"{key}[]", v, item) for v in value)
        return tuple(value)
    ok = isinstance(value, base) and (base is bool or not isinstance(value, bool))
    if not ok:
        raise ValueError(f"config key '{key}' must be {base.__name__}, got {value!r}")
    return value


# ---- value checks -------------------------------------------------------------------------------
# One table, checked for every config before a run touches anything: a bad value is one line now,
# not a traceback after the first eval. Each entry: (predicate, what the value must be).
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
