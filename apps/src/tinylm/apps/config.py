"""Run configs: a train TOML (data/model/optim/train/eval/run/sample) plus an `[app]` table.

`[app]` holds what only an end-to-end run needs: the raw text files and the wall-clock budget.
The tokenizer is described by the train schema itself: `data.vocab_size`, `data.special_tokens`,
`data.tokenizer_bytes` (BPE trained on the first N bytes of the train text; 0 = all of it).

`load_run_config(name_or_path, overrides)` returns `(AppConfig, TrainConfig)`; overrides are
`{"section.key": value}` exactly as `train-lm` takes them, plus `app.*` keys. A run TOML may name
a `base` as train's configs do (`base = "default"`, `base = "tinystories.toml"`): the shipped
ones hold only what differs from theirs, and [app] tables merge the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from tinylm.train import (
    TrainConfig,
    apply_overrides,
    atomic_write,
    coerce_value,
    merge_configs,
    parse_value,
    read_config,
)

__all__ = [
    "RUNS",
    "AppConfig",
    "bundled_config_path",
    "load_run_config",
    "overlay",
    "run_config_path",
    "save_run_config",
]

RUNS = ("tinystories", "owt", "leaderboard")


@dataclass(frozen=True)
class AppConfig:
    title: str = ""  # headline of report.md
    train_text: str = ""  # raw training text (documents separated by the first special token)
    val_text: str = ""  # raw validation text
    # A corpus tinylm.train bundles ("tinystories"), split into train/val when neither text
    # file is given (see bundled.py); "" = the files are required.
    bundled: str = ""
    budget_hours: float = 0.0  # wall-clock budget of the training stage; 0 = none
    calibrate_steps: int = 0  # steps timed before the step count is fitted to the budget; 0 = off
    budget_margin: float = 0.03  # fraction of the budget kept free for timing noise

    def __post_init__(self) -> None:
        if self.budget_hours < 0:
            raise ValueError(f"app.budget_hours must be >= 0, got {self.budget_hours}")
        if self.calibrate_steps < 0:
            raise ValueError(f"app.calibrate_steps must be >= 0, got {self.calibrate_steps}")
        if not 0 <= self.budget_margin < 0.5:
            raise ValueError(f"app.budget_margin must be in [0, 0.5), got {self.budget_margin}")

    @property
    def budget_seconds(self) -> float:
        return self.budget_hours * 3600.0


def bundled_config_path(name: str) -> Path | None:
    """The overlay a named run uses when no data files are given (configs/NAME_bundled.toml:
    the bundled corpus and a model sized for it), or None when the run has none."""
    run_config_path(name)  # the same check of the name
    path = Path(str(resources.files("tinylm.apps") / "configs" / f"{name}_bundled.toml"))
    return path if path.is_file() else None


def run_config_path(name: str) -> Path:
    """The shipped TOML of a named run (tinystories | owt | leaderboard)."""
    if name not in RUNS:
        close = difflib.get_close_matches(name, RUNS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown run '{name}' (known: {', '.join(RUNS)}){hint}")
    return Path(str(resources.files("tinylm.apps") / "configs" / f"{name}.toml"))


# `top`'s tables merged key by key over `base`'s: the same merge as a config's `base`.
overlay = merge_configs


def load_run_config(
    source: str | os.PathLike,
    overrides: dict[str, Any] | None = None,
    *,
    base: str | None = None,
) -> tuple[AppConfig, TrainConfig]:
    """Read a run TOML (a run name or a path) and apply `{"section.key": value}` overrides.

    With `base` (a run name), the file is overlaid on that shipped config: it only needs the
    keys it changes, and every other key keeps the shipped value.
    """
    is_name = str(source) in RUNS or not (Path(source).suffix or Path(source).exists())
    path = run_config_path(str(source)) if is_name else Path(source)
    raw = read_config(path)
    if base is not None and not is_name:
        raw = overlay(read_config(run_config_path(base)), raw)
    app_raw = raw.pop("app", {})
    overrides = dict(overrides or {})
    app_overrides = {k: overrides.pop(k) for k in list(overrides) if k.startswith("app.")}
    app = _build_app(app_raw, app_overrides)
    # train parses and validates the remaining keys (types, typos with hints), as load_config does.
    return app, TrainConfig.from_dict(apply_overrides(raw, overrides))


def save_run_config(app: AppConfig, config: TrainConfig, path: str | os.PathLike) -> None:
    """Write `[app]` + the train sections as one TOML, atomically (reloadable for --resume)."""
    path = Path(path)
    atomic_write(path, tomli_w.dumps({"app": dataclasses.asdict(app), **config.to_dict()}))


def _build_app(raw: dict[str, Any], overrides: dict[str, Any]) -> AppConfig:
    types_ = typing.get_type_hints(AppConfig)
    values = {}
    for key, value in [*raw.items(), *((k.split(".", 1)[1], v) for k, v in overrides.items())]:
        if key not in types_:
            valid = [f"app.{n}" for n in types_]
            close = difflib.get_close_matches(f"app.{key}", valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"unknown config key 'app.{key}'{hint}")
        values[key] = _convert(f"app.{key}", value, types_[key])
    return AppConfig(**values)


def _convert(key: str, value: Any, kind: type) -> Any:
    """A TOML value or a command-line string, as the field's type (train's value rules)."""
    return (
        parse_value(key, value, kind) if isinstance(value, str) else coerce_value(key, value, kind)
    )
