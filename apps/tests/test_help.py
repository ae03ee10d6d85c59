"""Every option in every apps command's --help states its default (or that it has none)."""

import re

import pytest

from tinylm.apps import main, run_command
from tinylm.apps.study_cli import main as study_main


def _options(text: str) -> dict[str, str]:
    """{option: its whole help entry} for the lines that start with two spaces and `--`."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^  (--[\w.-]+)", line)
        if match:
            current = match.group(1)
            entries[current] = line
        elif current and line.startswith("     "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


@pytest.mark.parametrize("name", ["tinystories", "owt", "leaderboard"])
def test_run_help_gives_every_default(name, capsys):
    assert run_command(name, ["--help"]) == 0
    options = _options(capsys.readouterr().out)
    assert {"--train-text", "--out", "--device", "--budget-hours", "--compile"} <= set(options)
    for option, entry in options.items():
        if option != "--section.key":
            assert "default" in entry, entry
    assert "(default: auto)" in options["--device"]  # the config's value, not a made-up one
    if name != "tinystories":  # no bundled corpus: the data files are required
        assert "default: none, required" in options["--train-text"]


def test_study_help_gives_every_default(capsys):
    assert study_main(["--help"]) == 0
    options = _options(capsys.readouterr().out)
    assert {"--scale", "--jobs", "--only", "--out"} <= set(options)
    for option, entry in options.items():
        if option not in ("--section.key", "--print-commands"):
            assert "default" in entry, entry


def test_tinylm_run_help_lists_the_runs(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(f"  {name} " in text for name in ("tinystories", "owt", "leaderboard"))
    assert "NAME --help" in text


def test_tinystories_help_shows_the_bundled_overlay(capsys):
    assert run_command("tinystories", ["--help"]) == 0
    text = capsys.readouterr().out
    assert 'bundled = "tinystories"' in text and "tinystories_bundled.toml" in text


@pytest.mark.parametrize("name", ["tinystories", "owt", "leaderboard"])
def test_run_help_shows_the_whole_config_not_just_the_overlay(name, capsys):
    """The shipped configs are overlays (`base = ...`); --help resolves the chain, so every key a
    run uses is listed with its value (e.g. the layer count, which tinystories.toml inherits)."""
    from tinylm.apps.config import load_run_config

    assert run_command(name, ["--help"]) == 0
    shipped = capsys.readouterr().out.split("Shipped config", 1)[1]
    _, config = load_run_config(name)
    assert 'base = "' not in shipped
    assert f"num_layers = {config.model.num_layers}\n" in shipped
    assert f"max_steps = {config.train.max_steps}\n" in shipped
