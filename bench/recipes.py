"""The recipes recipe_bench compares are train's bundled configs, read by `load_config`.

    baseline  configs/default.toml  (AdamW + cosine: the run `train-lm` makes)
    modern    configs/modern.toml   (`train-lm --config modern`)
    NAME      `--variant NAME:key=value,...`: modern.toml with those keys changed

So the recipe the bench proves is the one users run. The bench changes only the size (its
`Shape`: vocab, context, width, depth, heads, d_ff, batch) and one speed-only kernel switch, all as
`--section.key` overrides (`shape_overrides`), printed at the start of every run. The model's
[model] and [optim] sections are used as loaded; data preparation, budget and evaluation are the
bench's own (recipe_bench.py).
"""

from __future__ import annotations

import dataclasses
import typing

from tinylm.nn import default_d_ff
from tinylm.train import TrainConfig, load_config

CONFIGS = {"baseline": "default", "modern": "modern"}

# The HF peer's AdamW lrs (`--contenders peer` runs them all; the best one is reported).
PEER_LRS = (1e-3, 3e-3, 1e-2)

# The bench's one non-size override: the fused QKV matmul (same function, faster; the bench's
# contenders always ran it).
SPEED = {"compute.fused_qkv": "true"}


def shape_overrides(shape, vocab: int) -> dict[str, str]:
    """The bench's size as config overrides (d_ff: `swiglu_d_ff` rescaled per FFN, below)."""
    return {
        "model.vocab_size": str(vocab),
        "model.context_length": str(shape.context_length),
        "model.d_model": str(shape.d_model),
        "model.num_layers": str(shape.num_layers),
        "model.num_heads": str(shape.num_heads),
        "train.batch_size": str(shape.batch_size),
        **SPEED,
    }


def recipe_config(name: str, shape, vocab: int, variant: dict[str, str] | None = None):
    """(config, the overrides applied) of contender `name` ("baseline" | "modern" | a variant).

    d_ff is the usual SwiGLU width of the shape's d_model rescaled to the config's FFN kind
    (`ModelConfig.with_ffn`: ReLU² at 1.5x, same parameter count), unless the variant sets it.
    """
    overrides = {**shape_overrides(shape, vocab), **(variant or {})}
    config = load_config(CONFIGS.get(name, "modern"), overrides)
    if "model.d_ff" not in overrides:
        swiglu = dataclasses.replace(config.model, ffn="swiglu", d_ff=default_d_ff(shape.d_model))
        overrides["model.d_ff"] = str(swiglu.with_ffn(config.model.ffn).d_ff)
        config = config.replace(model={"d_ff": int(overrides["model.d_ff"])})
    return config, overrides


def dotted_key(key: str) -> str:
    """`section.key` as given, or a bare key of exactly one section (`muon_lr`: `optim.muon_lr`)."""
    if "." in key:
        return key
    sections = typing.get_type_hints(TrainConfig)  # section name -> its dataclass
    owners = [
        s for s, kind in sections.items() if key in {f.name for f in dataclasses.fields(kind)}
    ]
    if len(owners) != 1:
        where = f"in {', '.join(owners)}" if owners else "in no section"
        raise ValueError(f"config key {key!r} is {where}; write it as section.key")
    return f"{owners[0]}.{key}"


def differences(config: TrainConfig, reference: TrainConfig) -> dict:
    """{section.key: value} of every key where `config` differs from `reference`."""
    ours, theirs = config.to_dict(), reference.to_dict()
    return {
        f"{section}.{key}": value
        for section, values in ours.items()
        for key, value in values.items()
        if theirs[section].get(key) != value
    }
