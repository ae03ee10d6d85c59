"""tinylm.optim.OptimConfig can stand for train's [optim] section: same keys, defaults, types.

Train still declares its own class today; these checks say that swapping it for optim's changes
neither the TOML schema, the `--optim.key` overrides (parsed by the field types) nor the errors.
"""

import dataclasses
import typing

import pytest

from tinylm.optim import OptimConfig
from tinylm.train import OptimConfig as TrainOptimConfig


def _fields(cls) -> list[tuple[str, object, object]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, f.default, hints[f.name]) for f in dataclasses.fields(cls)]


def test_same_fields_defaults_and_types_in_the_same_order():
    assert _fields(OptimConfig) == _fields(TrainOptimConfig)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"optimizer": "sgd"},
        {"schedule": "linear"},
        {"decay_fraction": -0.1},
        {"scalar_betas": (0.9, 0.95, 0.99)},
        {"min_lr": -1.0},
    ],
)
def test_same_error_for_the_same_bad_value(kwargs):
    with pytest.raises(ValueError) as ours:
        OptimConfig(**kwargs)
    with pytest.raises(ValueError) as train:
        TrainOptimConfig(**kwargs)
    assert str(ours.value) == str(train.value)


def test_same_floor_ratio():
    for lr, min_lr in ((3e-3, 3e-4), (0.0, 1e-4), (1.0, 0.0)):
        ours = OptimConfig(lr=lr, min_lr=min_lr).min_lr_ratio
        assert ours == TrainOptimConfig(lr=lr, min_lr=min_lr).min_lr_ratio
