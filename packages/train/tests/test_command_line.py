"""split_command_line: the option/override forms every command accepts, and its errors."""

import pytest

from tinylm.train import split_command_line

VALUES = {"--config": None, "--device": "train.device"}
SWITCHES = {"--resume": None, "--compile": "train.compile"}


def test_forms_and_aliases():
    options, overrides = split_command_line(
        ["--config=a.toml", "--resume", "--optim.lr", "1e-3", "--device", "cpu", "--compile"],
        value_options=VALUES,
        switches=SWITCHES,
    )
    assert options == {"--config": "a.toml", "--resume": True}
    assert overrides == {"optim.lr": "1e-3", "train.device": "cpu", "train.compile": "true"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--train.compile", "false", "--compile"], "true"),
        (["--compile", "--train.compile=false"], "false"),
    ],
)
def test_the_last_spelling_of_a_key_wins(argv, expected):
    _, overrides = split_command_line(argv, value_options=VALUES, switches=SWITCHES)
    assert overrides == {"train.compile": expected}


@pytest.mark.parametrize(
    ("argv", "keys", "message"),
    [
        (["stray"], None, "unexpected argument 'stray'; options look like --section.key value"),
        (["--device"], None, "--device needs a value"),
        (["--resum"], None, "unknown option --resum; did you mean '--resume'?"),
        (["--optim.lrr", "1"], ["optim.lr"], "unknown config key 'optim.lrr'; did you mean"),
    ],
)
def test_errors(argv, keys, message):
    with pytest.raises(ValueError, match=message):
        split_command_line(argv, value_options=VALUES, switches=SWITCHES, config_keys=keys)


def test_dotted_keys_pass_through_without_a_key_list():
    _, overrides = split_command_line(["--any.thing=1"], value_options={}, switches={})
    assert overrides == {"any.thing": "1"}
