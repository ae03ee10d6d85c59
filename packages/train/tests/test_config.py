"""Config files, TOML round trips and command-line overrides."""

import tomllib

import pytest

from tinylm.train import TrainConfig, default_config_path, load_config


def test_default_config_loads_and_fills_vocab_size():
    cfg = load_config()
    assert cfg.model.vocab_size == cfg.data.vocab_size == 2000
    assert cfg.model.context_length == 128
    assert str(cfg.run_dir) == "runs/default"
    assert default_config_path().is_file()


def test_toml_round_trip(tmp_path):
    cfg = load_config()
    cfg.save(tmp_path / "c.toml")
    again = load_config(tmp_path / "c.toml")
    assert again == cfg
    assert tomllib.loads(cfg.to_toml())["optim"]["lr"] == cfg.optim.lr


def test_overrides_are_parsed_by_field_type():
    cfg = load_config(
        overrides={
            "optim.lr": "1e-4",
            "train.max_steps": "1e3",
            "compute.compile": "true",
            "model.tie_embeddings": "yes",
            "data.special_tokens": "<|a|>,<|b|>",
            "run.name": "exp",
            "model.rope_theta": "500",
        }
    )
    assert cfg.optim.lr == 1e-4
    assert cfg.train.max_steps == 1000 and isinstance(cfg.train.max_steps, int)
    assert cfg.compute.compile is True and cfg.model.tie_embeddings is True
    assert cfg.data.special_tokens == ("<|a|>", "<|b|>")
    assert cfg.model.rope_theta == 500.0
    assert str(cfg.run_dir) == "runs/exp"
    list_form = load_config(overrides={"data.special_tokens": '["<|x|>"]'})
    assert list_form.data.special_tokens == ("<|x|>",)


def test_vocab_override_propagates_unless_model_sets_it():
    assert load_config(overrides={"data.vocab_size": "500"}).model.vocab_size == 500
    cfg = load_config(overrides={"data.vocab_size": "500", "model.vocab_size": "512"})
    assert cfg.model.vocab_size == 512


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("optim.lrr", "optim.lr"),
        ("train.max_step", "train.max_steps"),
        ("modle.d_model", "model.d_model"),
    ],
)
def test_unknown_key_suggests_closest(key, suggestion):
    with pytest.raises(
        ValueError, match=f"unknown config key '{key}'; did you mean '{suggestion}'"
    ):
        load_config(overrides={key: "1"})


def test_unknown_key_in_file(tmp_path):
    (tmp_path / "c.toml").write_text("[optim]\nlearning_rate = 1.0\n")
    with pytest.raises(ValueError, match=r"unknown config key 'optim\.learning_rate'"):
        load_config(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text("[optimizer]\nlr = 1.0\n")
    with pytest.raises(ValueError, match=r"unknown config section \[optimizer\]; did you mean"):
        load_config(tmp_path / "d.toml")


def test_bad_values():
    with pytest.raises(ValueError, match=r"optim\.lr' must be a number"):
        load_config(overrides={"optim.lr": "fast"})
    with pytest.raises(ValueError, match="must be an integer"):
        load_config(overrides={"train.max_steps": "2.5"})
    with pytest.raises(ValueError, match="true or false"):
        load_config(overrides={"compute.compile": "maybe"})
    with pytest.raises(ValueError, match=r"ModelConfig\.norm"):
        load_config(overrides={"model.norm": "sideways"})
    with pytest.raises(ValueError, match=r"train\.max_steps' must be int"):
        TrainConfig.from_dict({**load_config().to_dict(), "train": {"max_steps": "ten"}})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[optim\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "partial.toml").write_text("[model]\nd_model = 8\n")
    with pytest.raises(ValueError, match=r"\[model\]"):
        load_config(tmp_path / "partial.toml")


def test_replace():
    cfg = load_config().replace(train={"max_steps": 7})
    assert cfg.train.max_steps == 7 and cfg.train.batch_size == load_config().train.batch_size
