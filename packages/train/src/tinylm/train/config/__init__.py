"""Run configuration: frozen dataclasses, one per TOML section, + `--section.key value` overrides.

    [data]   where tokens come from (bundled corpus or one text file → split → BPE → .npy, a
             train + a validation text file → BPE → .npy, or pre-encoded .npy files)
    [model]  the fields of `tinylm.nn.ModelConfig`: what the model is (vocab_size defaults to
             data.vocab_size); a resume must keep it
    [compute] `RunComputeConfig`: the fields of `tinylm.nn.ComputeConfig` (attention kernel,
             fused QKV, pointwise and loss kernels) + the run's torch.compile and dtype; a resume
             may change it
    [optim]  `tinylm.optim.OptimConfig`: the optimizer set (adamw | muon, per-role lrs/betas/decay)
             and the schedule (cosine | wsd, optionally fitted to train.max_seconds)
    [train]  steps, batch, device, time budget, MFU peak
    [eval]   held-out evaluation interval and size
    [run]    run directory, checkpoint interval, optional W&B logging
    [sample] the text sample generated at the end

`load_config(path, overrides)` reads a TOML file (default: the shipped `configs/default.toml`; a
bare name such as "modern" is a bundled config, anything else a path), merges the file over its
`base` (if it names one), applies overrides, validates every key (unknown ones fail with the
closest valid name) and returns a `TrainConfig`; `TrainConfig.to_toml()` writes it back, full and
flat, so every run carries its exact config. Fields whose value is None ("same as ...") are left
out of the TOML (TOML has no null).

Modules: sections.py (the dataclasses), load.py (files, bases, overrides), values.py (a value as
its field's type), checks.py (ranges and combinations). Old configs (before [compute] existed)
still load: `run.migrate` moves `model.attention`, `model.fused_qkv`, `train.compile` and
`train.dtype` to [compute].
"""

from tinylm.optim import OptimConfig
from tinylm.train.config.checks import CHECKS, MAX_SEED, validate_config
from tinylm.train.config.load import (
    apply_overrides,
    bundled_configs,
    default_config_path,
    load_config,
    merge_configs,
    read_config,
    resolve_config_path,
)
from tinylm.train.config.sections import (
    SECTIONS,
    EvalConfig,
    LoopConfig,
    RunComputeConfig,
    RunConfig,
    SampleConfig,
    TrainConfig,
)
from tinylm.train.config.values import coerce_value, field_types, hint, parse_value
from tinylm.train.data.config import DataConfig
from tinylm.train.run.migrate import MOVED_KEYS

# The names the train-lm command line has always imported from here.
_field_types = field_types
_hint = hint

__all__ = [
    "CHECKS",
    "MAX_SEED",
    "MOVED_KEYS",
    "SECTIONS",
    "DataConfig",
    "EvalConfig",
    "LoopConfig",
    "OptimConfig",
    "RunComputeConfig",
    "RunConfig",
    "SampleConfig",
    "TrainConfig",
    "apply_overrides",
    "bundled_configs",
    "coerce_value",
    "default_config_path",
    "field_types",
    "hint",
    "load_config",
    "merge_configs",
    "parse_value",
    "read_config",
    "resolve_config_path",
    "validate_config",
]
