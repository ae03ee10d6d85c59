"""Splitting a command line into options and `--section.key value` config overrides.

Shared by `train-lm` and the apps' run commands, so every command accepts the same forms:

    --option VALUE   --option=VALUE   --switch   --section.key VALUE   --section.key=VALUE

An option may stand for a config key (`--device cuda` = `--train.device cuda`, `--compile` =
`--compute.compile true`): it then lands among the overrides in command-line order, so whichever of
the two spellings comes last wins. Typos get one-line errors with the closest valid name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from tinylm.train.config.values import hint as _hint


def split_command_line(
    argv: list[str],
    *,
    value_options: Mapping[str, str | None],
    switches: Mapping[str, str | None],
    config_keys: Collection[str] | None = None,
) -> tuple[dict[str, str | bool], dict[str, str]]:
    """Return ({option: value, switch: True}, {"section.key": raw value}) for `argv`.

    Options keep their leading dashes; those mapped to a config key go to the overrides instead
    (a switch's key gets "true"). `config_keys`, when given, validates the dotted keys here,
    before any work starts; otherwise the config loader validates them.
    """
    options: dict[str, str | bool] = {}
    overrides: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ValueError(f"unexpected argument {arg!r}; options look like --section.key value")
        flag, eq, inline = arg.partition("=")
        is_override = "." in flag
        if flag in value_options or is_override:
            value = inline
            if not eq:
                if i + 1 >= len(argv):
                    raise ValueError(f"{flag} needs a value")
                i += 1
                value = argv[i]
            if not is_override and value_options[flag] is None:
                options[flag] = value
            elif not is_override:
                overrides[value_options[flag]] = value
            elif config_keys is not None and flag[2:] not in config_keys:
                raise ValueError(f"unknown config key '{flag[2:]}'{_hint(flag[2:], config_keys)}")
            else:
                overrides[flag[2:]] = value
        elif flag in switches:
            if switches[flag] is None:
                options[flag] = True
            else:
                overrides[switches[flag]] = "true"
        else:
            raise ValueError(f"unknown option {flag}{_hint(flag, [*value_options, *switches])}")
        i += 1
    return options, overrides
