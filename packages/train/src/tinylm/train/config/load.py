"""Config files: bundled names, `base` overlays, `--section.key` overrides -> a `TrainConfig`.

A config file may start with `base = "NAME"` and hold only what differs from it: NAME is a bundled
config ("default", "modern": `bundled_configs()`) or, when it has a suffix or a path separator, a
file path relative to the file that names it. The base is read first (its own base before it:
chains are allowed, a loop is an error), then the file's tables are merged over it key by key, then
the overrides. A file without `base` must be complete, as before. What a run saves (`to_toml`) is
always the full, flat config.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from tinylm.train.config.sections import SECTIONS, TrainConfig
from tinylm.train.config.values import field_types, hint, parse_value
from tinylm.train.run.migrate import MOVED_KEYS

__all__ = [
    "apply_overrides",
    "bundled_configs",
    "default_config_path",
    "load_config",
    "merge_configs",
    "read_config",
    "resolve_config_path",
]


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
        f"unknown config {text!r}{hint(text, bundled)}; bundled configs: {', '.join(bundled)} "
        "(or give a .toml path)"
    )


def load_config(
    path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Read a TOML config (default: the shipped default.toml) and apply `{"section.key": value}`.

    `path` is a file path or the name of a bundled config (`bundled_configs()`); its `base`
    chain is merged first (`read_config`). Override values may be strings as typed on a command
    line ("3e-4", "true", "a,b"); they are parsed according to the field's type.
    """
    raw = read_config(resolve_config_path(path))
    return TrainConfig.from_dict(apply_overrides(raw, overrides or {}))


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The raw tables of a config file with its `base` chain merged under it (`base` removed)."""
    return _read_chain(Path(path), ())


def merge_configs(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top`'s tables merged key by key over `base`'s (a key in `top` wins; others are kept)."""
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in top.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    return merged


def _read_chain(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    key = path.resolve()
    if key in seen:
        loop = " -> ".join(str(p) for p in (*seen, key))
        raise ValueError(f"config file {path}: its base chain loops: {loop}")
    raw = _read_toml(path)
    if "base" not in raw:
        return raw
    base = raw.pop("base")
    if not isinstance(base, str) or not base:
        raise ValueError(
            f"config file {path}: base must be a bundled config name or a file path, got {base!r}"
        )
    return merge_configs(_read_chain(_base_path(path, base), (*seen, key)), raw)


def _base_path(path: Path, base: str) -> Path:
    """A bundled config's path, or `base` relative to the directory of the file naming it."""
    if Path(base).suffix or "/" in base or os.sep in base:
        found = path.parent / base
        if not found.is_file():
            raise FileNotFoundError(f"config file {path}: base file not found: {found}")
        return found
    bundled = bundled_configs()
    if base not in bundled:
        raise ValueError(
            f"config file {path}: unknown base {base!r}{hint(base, bundled)}; bundled configs: "
            f"{', '.join(bundled)} (or a .toml path relative to the file)"
        )
    return bundled[base]


def _read_toml(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")  # TOML is UTF-8, whatever the locale says
    except UnicodeDecodeError as e:
        raise ValueError(
            f"config file {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
            f"{e.start}); TOML files are UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path} is not valid TOML: {e}") from None


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the raw section dict with dotted-key overrides applied (keys validated)."""
    raw = {section: dict(values) for section, values in raw.items()}
    valid = [f"{s}.{n}" for s, kind in SECTIONS.items() for n in field_types(kind)]
    for key, value in overrides.items():
        if key in MOVED_KEYS:
            raise ValueError(f"config key '{key}' is now '{MOVED_KEYS[key]}'")
        if key not in valid:
            raise ValueError(f"unknown config key '{key}'{hint(key, valid)}")
        section, name = key.split(".", 1)
        kind = field_types(SECTIONS[section])[name]
        raw.setdefault(section, {})[name] = (
            parse_value(key, value, kind) if isinstance(value, str) else value
        )
    return raw
