"""Study planning, --print-commands, and the report built from fake metrics."""

import json
import math
import shlex

import pytest

from tinylm.apps.accounting import largest_batch
from tinylm.apps.study import lr_grid, plan_study, sqrt_scaled_lr
from tinylm.apps.study_cli import main
from tinylm.apps.study_report import collect_results, write_study_report
from tinylm.apps.study_run import PointState
from tinylm.nn import model_stats


def test_lr_sweep_is_log_spaced_and_reaches_divergent_rates(tiny):
    plan = plan_study("lr", "cpu", tiny)
    lrs = [p.value for p in plan.points]
    assert lrs == lr_grid(1e-4, 1.0) == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]
    assert min(lrs) < plan.reference.optim.lr < max(lrs)  # brackets the default rate
    for p in plan.points:
        assert float(p.overrides["optim.lr"]) == p.value
        assert float(p.overrides["optim.min_lr"]) == pytest.approx(p.value / 10)
    assert plan.overrides["train.max_steps"] == "8"  # the user's value wins over the scale's


def test_batch_sweep_sqrt_lr_equal_tokens_and_memory_cap(tiny):
    plan = plan_study("batch", "cpu", tiny, max_batch=20)
    sizes = [p.value for p in plan.points]
    assert sizes == [1, 2, 4, 8, 16]
    for p in plan.points:
        b = int(p.value)
        assert float(p.overrides["optim.lr"]) == pytest.approx(3e-3 * math.sqrt(b / 4), rel=1e-3)
        assert int(p.overrides["train.max_steps"]) == 8 * 4 // b  # 32 sequences each
        assert p.overrides["eval.batch_size"] == "4"  # val loss on the same tokens for all
        evals = int(p.overrides["train.max_steps"]) / int(p.overrides["eval.interval"])
        assert evals == pytest.approx(8 / plan.reference.eval.interval, rel=0.5)
    assert sqrt_scaled_lr(1e-3, 16, 64) == pytest.approx(2e-3)
    # Without --max-batch: the largest power of two whose AdamW memory fits the budget.
    cfg = plan_study("lr", "cpu", tiny).reference.model
    p = model_stats(cfg).params
    t, d, h, v, d_ff = 16, 16, 2, 280, 32
    acts = t * (8 * d + 4 * d_ff) + 2 * h * t * t + t * d + 2 * t * v
    budget = 16 * p + 4 * acts * 100  # room for 100 sequences
    assert largest_batch(cfg, budget) == 100
    capped = plan_study("batch", "cpu", tiny, memory_gb=budget / 1e9)
    assert [pt.value for pt in capped.points][-1] == 64


def test_ablations_silu_matches_swiglu_parameters(tiny):
    plan = plan_study("ablations", "cpu", {**tiny, "model.d_model": "64", "model.d_ff": "172"})
    by_name = {p.name: p for p in plan.points}
    assert set(by_name) == {"baseline", "no-norm", "no-norm-low-lr", "post-norm", "nope", "silu"}
    assert by_name["no-norm"].overrides == {"model.norm": "none"}
    assert float(by_name["no-norm-low-lr"].overrides["optim.lr"]) == pytest.approx(3e-4)
    assert by_name["post-norm"].overrides == {"model.norm": "post"}
    assert by_name["nope"].overrides == {"model.position": "none"}
    silu_ff = int(by_name["silu"].overrides["model.d_ff"])
    # SwiGLU has 3·d·d_ff FFN weights, the SiLU FFN 2·d·d_ff': d_ff' = 3/2·d_ff.
    assert silu_ff == 258
    assert abs(2 * 64 * silu_ff - 3 * 64 * 172) <= 2 * 64


def test_recipe_points_share_one_wall_clock(tiny):
    plan = plan_study("recipe", "cpu", tiny)
    base, modern = plan.points
    assert base.overrides["train.max_seconds"] == modern.overrides["train.max_seconds"]
    assert modern.config == "modern" and not base.config
    assert modern.overrides["model.d_model"] == "16" and modern.overrides["train.batch_size"] == "4"


def test_recipe_point_matches_the_baselines_parameter_count(tiny):
    """The modern point's FFN (ReLU², two matrices) gets the d_ff that keeps the baseline's
    parameter count (SwiGLU, three matrices), not the baseline's literal width."""
    from tinylm.nn import ModelConfig, model_stats
    from tinylm.train import load_config

    plan = plan_study("recipe", "cpu", tiny)
    _, modern = plan.points
    ref = load_config(overrides=tiny).model
    ffn = load_config("modern").model.ffn
    d_ff = int(modern.overrides["model.d_ff"])
    assert ffn == "relu2" and d_ff == round(ref.d_ff * 3 / 2)
    matched = ModelConfig(**{**ref.to_dict(), "ffn": ffn, "d_ff": d_ff})
    assert model_stats(matched).params == model_stats(ref).params


def test_print_commands(tmp_path, capsys, tiny):
    args = [f"--{k}={v}" for k, v in tiny.items()]
    code = main(["ablations", "--out", str(tmp_path), "--print-commands", *args])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6
    for line, name in zip(
        lines, ["baseline", "no-norm", "no-norm-low-lr", "post-norm", "nope", "silu"], strict=True
    ):
        argv = shlex.split(line)
        assert argv[0].endswith("train-lm") or argv[1:3] == ["-m", "tinylm.train.cli.train_lm"]
        assert argv[argv.index("--run.name") + 1] == name
        assert argv[argv.index("--run.root") + 1] == str((tmp_path / "ablations").resolve())
        assert "--resume" not in argv
    assert "--model.norm none" in lines[1]
    assert (tmp_path / "ablations" / "_data").is_dir()  # data prepared once, before any point


def test_printed_lrs_are_the_round_values(tmp_path, capsys, tiny):
    """min_lr = lr/10 is 2.9999999999999997e-05 in floats for lr 3e-4; the command says 3e-05."""
    args = [f"--{k}={v}" for k, v in tiny.items()]
    assert main(["lr", "--out", str(tmp_path), "--print-commands", *args]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "--run.name lr-3e-4" in x]
    argv = shlex.split(line)
    assert argv[argv.index("--optim.lr") + 1] == "0.0003"
    assert argv[argv.index("--optim.min_lr") + 1] == "3e-05"
    assert "2.99999" not in out and "0000000" not in out
    low = plan_study("ablations", "cpu", tiny).points[2].overrides  # lr/10 and lr/100
    assert (low["optim.lr"], low["optim.min_lr"]) == ("0.0003", "3e-05")


def test_unknown_study_and_point(tmp_path, capsys):
    assert main(["lrr"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err
    assert main(["lr", "--out", str(tmp_path), "--only", "lr-5"]) == 2


def _fake_run(run_dir, losses, wall=1.0, sample="The end."):
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for i, loss in enumerate(losses):
            step = 10 * (i + 1)
            rec = {"step": step, "wallclock": wall * step, "train_loss": loss, "val_loss": loss}
            f.write(json.dumps(rec) + "\n")
    (run_dir / "sample.txt").write_text(sample)


def test_report_from_fake_metrics(tmp_path, tiny):
    plan = plan_study("lr", "cpu", tiny)
    points = plan.points[2:5]  # 1e-3, 3e-3, 1e-2
    plan = type(plan)(**{**plan.__dict__, "points": points})
    _fake_run(tmp_path / points[0].name, [5.0, 4.5, 4.2])
    _fake_run(tmp_path / points[1].name, [4.8, 4.0, 3.7], sample="Best sample.")
    _fake_run(tmp_path / points[2].name, [5.0, 20.0])  # blew up
    states = {points[0].name: PointState("done", 30), points[1].name: PointState("done", 30)}
    states[points[2].name] = PointState("diverged", 20, "loss became nan at step 20")
    report = write_study_report(plan, tmp_path, states).read_text()
    assert "Best lr **0.003** (final val loss 3.7000)" in report
    assert "Largest stable lr: **0.003**" in report
    assert "lr ≥ 0.01 diverged: lr 0.01 at step 20" in report
    assert "| lr-1e-3 | lr 1e-3 | done | 30 | 4.2000 | 4.2000 (30) |" in report
    assert "### lr-3e-3 — best point" in report and "Best sample." in report
    for png in ("curves_step.png", "curves_wallclock.png", "loss_vs_lr.png"):
        assert f"]({png})" in report
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_divergence_is_a_rise_not_a_high_start(tmp_path, tiny):
    """A no-norm model starts at 12+ nats and trains: not diverged. A run whose loss rose more
    than 1 nat above its lowest value blew up, even if it finished ('done') lower again."""
    plan = plan_study("lr", "cpu", tiny)
    points = plan.points[2:4]
    plan = type(plan)(**{**plan.__dict__, "points": points})
    _fake_run(tmp_path / points[0].name, [12.0, 8.0, 6.0, 5.0])  # high start, falls
    _fake_run(tmp_path / points[1].name, [7.0, 6.0, 7.2, 6.5])  # +1.2 over its best at step 30
    states = {p.name: PointState("done", 40) for p in points}
    results = {r.name: r for r in collect_results(plan, tmp_path, states)}
    assert results[points[0].name].status == "done"
    assert results[points[1].name].status == "diverged"
    assert results[points[1].name].diverged_step == 30
