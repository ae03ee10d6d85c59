"""The run config: one frozen dataclass per TOML section, and `TrainConfig` holding them all.

Each component reads its own section: [data] is `DataConfig` (train.data), [model] nn's
`ModelConfig`, [optim] optim's `OptimConfig` (it builds the optimizers and the schedule),
[compute] `RunComputeConfig` (nn's kernel choice + the run's compile/dtype); [train], [eval],
[run] and [sample] are declared here.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from tinylm.nn import ComputeConfig, ModelConfig
from tinylm.optim import OptimConfig
from tinylm.train.config.checks import validate_config
from tinylm.train.config.values import coerce_value, field_types, hint
from tinylm.train.data.config import DataConfig
from tinylm.train.files import atomic_write
from tinylm.train.run.migrate import migrate_config

__all__ = [
    "COMPUTE_DTYPES",
    "SECTIONS",
    "EvalConfig",
    "LoopConfig",
    "RunComputeConfig",
    "RunConfig",
    "SampleConfig",
    "TrainConfig",
]

COMPUTE_DTYPES = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class RunComputeConfig(ComputeConfig):
    """[compute]: the kernels (`tinylm.nn.ComputeConfig`'s fields) and how the run executes them.

    `compile` and `dtype` are the run's, not the model's: nn never reads them (a model is the
    same function under either), the training loop does (torch.compile the model; autocast
    dtype, "auto" = bf16 on CUDA, else float32). One section keeps every "how" knob together.
    """

    compile: bool = False
    dtype: str = "auto"  # auto | float32 | bfloat16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"ComputeConfig.dtype must be one of {COMPUTE_DTYPES}, got {self.dtype!r}"
            )
        if not isinstance(self.compile, bool):
            raise ValueError(f"ComputeConfig.compile must be a bool, got {self.compile!r}")


@dataclass(frozen=True)
class LoopConfig:
    max_steps: int = 300  # optimizer steps
    batch_size: int = 16  # sequences per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    max_seconds: float = 0.0  # wall-clock budget; stop (with a checkpoint) when spent; 0 = none
    log_interval: int = 10  # steps between metrics.jsonl lines (and loss checks)
    # per-device peak FLOP/s for MFU; 0 = the GPU table, or the CPU's theoretical peak (flops.py)
    peak_flops: float = 0.0
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
    "compute": RunComputeConfig,
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
    compute: RunComputeConfig = field(default_factory=RunComputeConfig)
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
                raise ValueError(f"unknown config section [{section}]{hint(section, SECTIONS)}")
            if not isinstance(values, dict):
                raise ValueError(f"config section [{section}] must be a table")
            names = field_types(SECTIONS[section])
            for key in values:
                if key not in names:
                    full = [f"{section}.{n}" for n in names]
                    raise ValueError(
                        f"unknown config key '{section}.{key}'{hint(f'{section}.{key}', full)}"
                    )
        # Every value's type first, then what is missing: a partial config with a bad value is
        # told about that value, not about the keys it never meant to set.
        coerced = {}
        for section, kind in SECTIONS.items():
            types_ = field_types(kind)
            coerced[section] = {
                k: coerce_value(f"{section}.{k}", v, types_[k])
                for k, v in raw.get(section, {}).items()
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
        """Every key of every section (a saved config never depends on a base file)."""
        return tomli_w.dumps(self.to_dict())

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as TOML atomically."""
        atomic_write(path, self.to_toml())
