"""Shipped run configs, [app] overrides, and the budget planner against brute force."""

import dataclasses
import json
import math
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.apps import RUNS, fit_steps, load_run_config, run_config_path
from tinylm.apps.config import bundled_config_path
from tinylm.apps.study import base_config_path
from tinylm.nn import model_stats
from tinylm.train import load_config


def test_tinystories_config_is_the_17m_model():
    app, config = load_run_config("tinystories")
    m = config.model
    assert (m.vocab_size, m.context_length, m.d_model) == (10_000, 256, 512)
    assert (m.num_layers, m.num_heads, m.d_ff, m.rope_theta) == (4, 16, 1344, 10_000.0)
    assert config.data.vocab_size == 10_000
    assert config.data.special_tokens == ("<|endoftext|>",)
    stats = model_stats(m)
    # 4 blocks (12.46M) + ln_final + untied lm_head (5.12M): the "17M non-embedding" model.
    assert 17_000_000 <= stats.non_embedding_params <= 18_000_000
    assert stats.params - stats.non_embedding_params == 10_000 * 512
    assert app.budget_hours == 0


def test_owt_config():
    _, config = load_run_config("owt")
    assert config.model.vocab_size == 32_000 == config.data.vocab_size
    assert config.data.special_tokens == ("<|endoftext|>",)
    assert config.model.context_length in (256, 512)


def test_leaderboard_config():
    app, config = load_run_config("leaderboard")
    assert config.model.context_length == 512
    assert config.model.vocab_size == 32_000
    assert config.compute.attention == "sdpa" and config.compute.fused_qkv is True
    assert config.compute.compile is True
    assert config.compute.dtype == "bfloat16"
    # the modern recipe (packages/train/src/tinylm/train/configs/modern.toml at this size)
    assert config.optim.optimizer == "muon" and config.optim.schedule == "wsd"
    m = config.model
    assert m.qk_norm and m.ffn == "relu2" and m.logit_softcap > 0 and m.zero_init_proj
    assert m.unet_skips and 2 * m.value_embeddings <= m.num_layers
    assert config.train.max_seconds == 5400
    assert app.budget_hours == 1.5 and app.budget_seconds == 5400
    assert 0 < app.calibrate_steps <= config.optim.warmup_steps  # calibration stays in warmup
    assert 50e6 < model_stats(config.model).params < 300e6


@pytest.mark.parametrize("name", RUNS)
def test_every_shipped_config_exists(name):
    assert run_config_path(name).is_file()


def test_overrides_reach_app_and_train_sections():
    app, config = load_run_config(
        "tinystories",
        {"app.train_text": "a.txt", "app.budget_hours": "0.5", "optim.lr": "1e-3"},
    )
    assert app.train_text == "a.txt" and app.budget_hours == 0.5
    assert config.optim.lr == 1e-3


def test_bad_keys_name_the_problem():
    with pytest.raises(ValueError, match=r"did you mean 'app\.budget_hours'"):
        load_run_config("owt", {"app.budget_hour": "1"})
    with pytest.raises(ValueError, match=r"optim\.lr"):
        load_run_config("owt", {"optim.lrr": "1"})
    with pytest.raises(ValueError, match="must be a number"):
        load_run_config("owt", {"app.budget_hours": "soon"})
    with pytest.raises(ValueError, match=r"unknown run 'tinystory'.*did you mean 'tinystories'"):
        load_run_config("tinystory")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_run_config("/nonexistent/run.toml")


def _brute_force(available, start, step, fixed, ev, ev_int, ck, ck_int):
    """Simulate the run ending at each step in turn: the last end whose time fits (>= start+1)."""
    best, periodic = start + 1, fixed
    for end in range(start + 1, start + 400):
        # Periodic events strictly before `end`, then the final eval + checkpoint at `end`
        # (one each, also when `end` is itself on an interval).
        total = periodic + (end - start) * step + ev + ck
        if total <= available:
            best = end
        periodic += (ev if end % ev_int == 0 else 0) + (ck if end % ck_int == 0 else 0)
    return best


@settings(max_examples=60, deadline=None)
@given(
    available=st.floats(0, 200),
    start=st.integers(0, 30),
    step=st.floats(0.6, 3),
    fixed=st.floats(0, 20),
    ev=st.floats(0, 5),
    ev_int=st.integers(1, 50),
    ck=st.floats(0, 5),
    ck_int=st.integers(1, 50),
)
def test_fit_steps_matches_brute_force(available, start, step, fixed, ev, ev_int, ck, ck_int):
    steps, predicted = fit_steps(
        available,
        start_step=start,
        step_seconds=step,
        fixed_seconds=fixed,
        eval_seconds=ev,
        eval_interval=ev_int,
        checkpoint_seconds=ck,
        checkpoint_interval=ck_int,
    )
    assert steps == _brute_force(available, start, step, fixed, ev, ev_int, ck, ck_int)
    if steps > start + 1:
        assert predicted <= available + 1e-9
    assert math.isfinite(predicted)


def test_budget_plan_never_disagrees_with_itself():
    """A calibration too slow for another step: the plan says max_steps = calibrate_steps and
    a hard stop at the calibration clock (it used to say calibrate+1 while the pipeline kept the
    calibration's config: the 'max_steps = 5' CI failure on a loaded box)."""
    from tinylm.apps.budget import describe_plan, plan_budget

    config = load_run_config("leaderboard", {"train.max_steps": "100000"})[1]
    records = [{"step": s, "wallclock": 2.0 * s} for s in range(1, 5)]
    common = dict(margin=0.1, calibrate_steps=4, records=records, config=config,
                  timings={"checkpoint": 0.1, "plot": 0.1}, clock_seconds=8.0)  # fmt: skip
    slow = plan_budget(budget_seconds=9.0, used_seconds=8.5, setup_seconds=0.4, **common)
    assert slow.max_steps == 4 and slow.max_seconds == slow.clock_seconds == 8.0
    assert "no further step fits" in describe_plan(slow.to_dict())
    roomy = plan_budget(budget_seconds=900.0, used_seconds=9.0, setup_seconds=1.0, **common)
    assert roomy.max_steps > 4 and roomy.max_seconds > 8.0
    line = describe_plan(roomy.to_dict())
    hard_stop = 9.0 + 1.0 + roomy.max_seconds - 8.0  # one clock: the budget's
    assert f"hard stop at {hard_stop:.0f} s" in line and "of the 900 s budget" in line
    assert roomy.predicted_seconds <= hard_stop <= 900.0


def test_config_file_overlays_the_shipped_one(tmp_path):
    from tinylm.apps import overlay

    path = tmp_path / "mine.toml"
    path.write_text("[optim]\nlr = 1e-3\n\n[app]\nbudget_hours = 0.25\n")
    app, config = load_run_config(path, base="leaderboard")
    shipped_app, shipped = load_run_config("leaderboard")
    assert config.optim.lr == 1e-3 and app.budget_hours == 0.25
    # Every key the file does not set keeps the shipped value.
    assert config.model == shipped.model
    assert config.optim.min_lr == shipped.optim.min_lr
    assert app.calibrate_steps == shipped_app.calibrate_steps
    assert overlay({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}, "b": {"z": 4}}) == {
        "a": {"x": 1, "y": 3},
        "b": {"z": 4},
    }


def test_cli_config_overlay_is_announced(tmp_path, capsys, monkeypatch):
    import tinylm.apps.cli as cli

    seen = {}
    finished = SimpleNamespace(result=SimpleNamespace(stopped="finished", signal=None))
    monkeypatch.setattr(
        cli, "run_pipeline", lambda app, config, out, **kw: seen.update(c=config) or finished
    )
    path = tmp_path / "mine.toml"
    path.write_text("[train]\nmax_steps = 7\n")
    code = cli.run_command("tinystories", ["--config", str(path), "--out", str(tmp_path / "r")])
    assert code == 0
    assert seen["c"].train.max_steps == 7 and seen["c"].model.d_model == 512
    assert "overlaid on the shipped tinystories.toml" in capsys.readouterr().err


def test_report_title_comes_from_actual_settings():
    from tinylm.apps import report_title

    app, config = load_run_config("leaderboard", {"app.budget_hours": str(60 / 3600)})
    title = report_title(app, config.model)
    params = model_stats(config.model).params
    assert title.startswith("Leaderboard: OpenWebText")
    assert f"{params / 1e6:.3g}M-parameter" in title and "context 512" in title
    assert "60.0 s training budget" in title and "1.5" not in title
    app, config = load_run_config("tinystories", {"model.context_length": "128"})
    title = report_title(app, config.model)
    assert "context 128" in title and "budget" not in title


def _as_run_dict(app, config) -> dict:
    return {"app": None if app is None else dataclasses.asdict(app), **config.to_dict()}


EXPECTED = json.loads((Path(__file__).parent / "fixtures" / "run_configs.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_overlays_load_exactly_as_the_full_files_did(name):
    """The shipped TOMLs are `base = ...` overlays now; each loads to exactly the config its full
    file gave (fixtures/run_configs.json was written from the full files before the rewrite)."""
    if name == "study_h100":
        got = _as_run_dict(None, load_config(base_config_path("h100")))
    elif name.endswith("_bundled"):
        run = name.removesuffix("_bundled")
        got = _as_run_dict(*load_run_config(bundled_config_path(run), base=run))
    else:
        got = _as_run_dict(*load_run_config(name))
    assert got == EXPECTED[name]


def test_shipped_run_configs_are_overlays():
    for name in RUNS:
        assert "base" in tomllib.loads(run_config_path(name).read_text())


def test_app_values_use_trains_rules():
    """[app] values parse as train's keys do: finite numbers, the same booleans and messages."""
    with pytest.raises(ValueError, match=r"^config key 'app\.budget_hours' must be a finite"):
        load_run_config("owt", {"app.budget_hours": "nan"})
    with pytest.raises(ValueError, match=r"^config key 'app\.calibrate_steps' must be an integer"):
        load_run_config("owt", {"app.calibrate_steps": "2.5"})
    app, _ = load_run_config("owt", {"app.calibrate_steps": "1e1", "app.budget_hours": "2"})
    assert app.calibrate_steps == 10 and app.budget_hours == 2.0
