"""Config files, TOML round trips and command-line overrides."""

import json
import tomllib
from pathlib import Path

import pytest

from tinylm.nn import ComputeConfig
from tinylm.train import RunComputeConfig, TrainConfig, default_config_path, load_config


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
    with pytest.raises(ValueError, match=r"missing required key\(s\) model\.context_length, "):
        load_config(tmp_path / "partial.toml")


def test_partial_config_reports_the_bad_value_not_the_missing_keys(tmp_path):
    """A partial config with a wrong type names that key, before any missing [model] key."""
    (tmp_path / "p.toml").write_text('[train]\nmax_steps = "ten"\n')
    with pytest.raises(ValueError, match=r"^config key 'train\.max_steps' must be int, got 'ten'$"):
        load_config(tmp_path / "p.toml")
    (tmp_path / "q.toml").write_text("[train]\nmax_steps = 5\n")
    with pytest.raises(ValueError) as missing:
        load_config(tmp_path / "q.toml")
    for key in ("context_length", "d_model", "num_layers", "num_heads", "d_ff"):
        assert f"model.{key}" in str(missing.value)
    assert "vocab_size" not in str(missing.value)  # it comes from data.vocab_size


def test_config_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[sample]\nprompt = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(ValueError) as e:
        load_config(path)
    message = str(e.value)
    assert str(path) in message and "UTF-8" in message and "0xe9" in message
    assert "\n" not in message


@pytest.mark.parametrize("key", ["train.seed", "sample.seed"])
def test_seed_range_is_checked_at_config_time(key):
    """torch.manual_seed overflows past 2**64 - 1 and TOML's integers stop at 2**63 - 1: a seed
    outside [0, 2**63 - 1] is refused by name before any work, not deep inside the run."""
    top = 2**63 - 1
    section, name = key.split(".")
    assert getattr(getattr(load_config(overrides={key: str(top)}), section), name) == top
    cfg = load_config(overrides={key: str(top)})
    assert (
        getattr(getattr(TrainConfig.from_dict(tomllib.loads(cfg.to_toml())), section), name) == top
    )
    for bad in (str(2**64), str(2**63), "-1"):
        with pytest.raises(
            ValueError, match=rf"config key '{key}' must be an integer in \[0, {top}\]"
        ):
            load_config(overrides={key: bad})


def test_integer_overrides_are_exact():
    """Integers are parsed as integers: no rounding through a float past 2**53."""
    cfg = load_config(overrides={"train.seed": str(2**53 + 1)})
    assert cfg.train.seed == 2**53 + 1
    assert load_config(overrides={"train.max_steps": "1e3"}).train.max_steps == 1000


def test_replace():
    cfg = load_config().replace(train={"max_steps": 7})
    assert cfg.train.max_steps == 7 and cfg.train.batch_size == load_config().train.batch_size


# ---- [compute]: nn's kernel choice + the run's compile/dtype -----------------------------------


def test_compute_section_is_nns_kernel_choice_plus_the_runs_compile_and_dtype():
    compute = RunComputeConfig(attention="sdpa", fused_qkv=True, compile=True, dtype="bfloat16")
    assert isinstance(compute, ComputeConfig)  # TransformerLM takes it as its kernels
    assert RunComputeConfig.from_dict(compute.to_dict()) == compute
    assert RunComputeConfig.from_json(compute.to_json()) == compute
    assert list(compute.to_dict()) == [*ComputeConfig().to_dict(), "compile", "dtype"]
    with pytest.raises(ValueError, match="dtype must be one of"):
        RunComputeConfig(dtype="fp8")
    with pytest.raises(ValueError, match="compile must be a bool"):
        RunComputeConfig(compile=1)
    with pytest.raises(ValueError, match="attention must be one of"):
        RunComputeConfig(attention="flash")
    cfg = load_config(overrides={"compute.dtype": "float32", "compute.attention": "naive"})
    assert cfg.compute == RunComputeConfig(
        attention="naive", pointwise="torch", loss="fused_linear", dtype="float32"
    )


# ---- `base = ...` overlays ---------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", ["default", "modern"])
def test_bundled_configs_are_what_they_were_as_full_files(name):
    """modern.toml is an overlay on default.toml now; both load exactly as the full files did
    (the expected dicts were written from the full files before the rewrite)."""
    expected = json.loads((FIXTURES / "bundled_configs.json").read_text())
    if name == "modern":  # the one deliberate change since: bench/RECIPE.md row 8
        expected[name]["optim"] |= {"weight_decay": 0.1, "muon_weight_decay": 0.1}
    assert load_config(name).to_dict() == expected[name]


def test_saved_config_of_an_overlay_is_the_full_file(tmp_path):
    cfg = load_config("modern")
    saved = tomllib.loads(cfg.to_toml())
    assert "base" not in saved and set(saved) == set(cfg.to_dict())
    cfg.save(tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg


def test_base_chain_relative_paths_and_overrides(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.toml").write_text('base = "modern"\n[optim]\nlr = 1e-3\nmuon_lr = 0.01\n')
    (tmp_path / "sub" / "b.toml").write_text(
        'base = "../a.toml"\n[optim]\nmuon_lr = 0.02\n[train]\nmax_steps = 7\n'
    )
    cfg = load_config(tmp_path / "sub" / "b.toml", {"train.max_steps": "9"})
    modern = load_config("modern")
    assert cfg.optim.lr == 1e-3  # from a.toml
    assert cfg.optim.muon_lr == 0.02  # b.toml wins over a.toml
    assert cfg.train.max_steps == 9  # the override wins over both
    assert cfg.optim.optimizer == "muon" and cfg.model == modern.model  # from modern, untouched
    assert (
        cfg.replace(optim={"lr": modern.optim.lr, "muon_lr": modern.optim.muon_lr}).replace(
            train={"max_steps": modern.train.max_steps}
        )
        == modern
    )


def test_base_may_be_a_bundled_name_or_a_path_relative_to_the_file(tmp_path, monkeypatch):
    (tmp_path / "x.toml").write_text('base = "default"\n[run]\nname = "x"\n')
    (tmp_path / "y.toml").write_text('base = "x.toml"\n[eval]\niters = 4\n')
    monkeypatch.chdir("/")  # relative to the file, not to the working directory
    cfg = load_config(tmp_path / "y.toml")
    assert cfg == load_config(overrides={"run.name": "x", "eval.iters": "4"})


def test_base_cycle_is_one_error_line(tmp_path):
    (tmp_path / "a.toml").write_text('base = "b.toml"\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(ValueError, match="base chain loops") as e:
        load_config(tmp_path / "a.toml")
    assert "\n" not in str(e.value) and "a.toml -> " in str(e.value)
    (tmp_path / "self.toml").write_text('base = "self.toml"\n')
    with pytest.raises(ValueError, match="base chain loops"):
        load_config(tmp_path / "self.toml")


def test_unknown_or_bad_base_is_named(tmp_path):
    (tmp_path / "a.toml").write_text('base = "modren"\n')
    with pytest.raises(ValueError, match=r"unknown base 'modren'; did you mean 'modern'\?"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "b.toml").write_text('base = "nope.toml"\n')
    with pytest.raises(FileNotFoundError, match=r"b\.toml: base file not found: .*nope\.toml"):
        load_config(tmp_path / "b.toml")
    (tmp_path / "c.toml").write_text("base = 3\n")
    with pytest.raises(ValueError, match="base must be a bundled config name or a file path"):
        load_config(tmp_path / "c.toml")


def test_a_partial_file_without_base_is_still_incomplete(tmp_path):
    (tmp_path / "p.toml").write_text("[train]\nmax_steps = 5\n")
    with pytest.raises(ValueError, match="missing required key"):
        load_config(tmp_path / "p.toml")
    (tmp_path / "q.toml").write_text('base = "default"\n[train]\nmax_steps = 5\n')
    assert load_config(tmp_path / "q.toml") == load_config(overrides={"train.max_steps": 5})
