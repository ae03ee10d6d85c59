"""Running studies for real (tiny train-lm subprocesses): skip finished, resume, divergence."""

import dataclasses
import json

import pytest

from tinylm.apps.study import Point, plan_study
from tinylm.apps.study_run import point_config, point_state, prepare_study_data, run_study
from tinylm.train import MetricsLog, load_config, train


@pytest.fixture
def tiny(tiny):
    """conftest's tiny study model, run for 6 steps with every interval at 1-2 steps."""
    return tiny | {
        "train.max_steps": "6",
        "train.log_interval": "1",
        "optim.warmup_steps": "1",
        "eval.interval": "2",
        "eval.iters": "1",
        "run.checkpoint_interval": "2",
        "sample.max_new_tokens": "4",
    }


def tiny_plan(tiny, *points):
    plan = plan_study("lr", "cpu", tiny)
    return dataclasses.replace(plan, points=tuple(points))


def never(cmd, log_path, env):
    raise AssertionError(f"should have been skipped: {cmd}")


def test_diverged_point_is_a_result_and_finished_points_are_skipped(tmp_path, tiny):
    ok = Point("ok", {"optim.lr": "1e-3"}, "lr 1e-3", 1e-3)
    boom = Point("boom", {"optim.lr": "1e30", "optim.grad_clip": "0"}, "lr 1e30", 1e30)
    plan = tiny_plan(tiny, ok, boom)
    data = prepare_study_data(plan, tmp_path, log=lambda *a: None)
    states = run_study(plan, tmp_path, data, log=lambda *a: None)
    assert states["ok"].status == "done" and states["ok"].step == 6
    assert states["boom"].status == "diverged"
    assert states["boom"].step is not None and 1 <= states["boom"].step <= 6
    record = json.loads((tmp_path / "boom" / "study.json").read_text())
    assert record["status"] == "diverged" and record["exit_status"] == 1
    # A re-run launches nothing: done and diverged are both final.
    again = run_study(plan, tmp_path, data, log=lambda *a: None, launch=never)
    assert again == states


def test_killed_point_resumes(tmp_path, tiny):
    point = Point("cut", {"optim.lr": "1e-3"}, "lr 1e-3", 1e-3)
    plan = tiny_plan(tiny, point)
    data = prepare_study_data(plan, tmp_path, log=lambda *a: None)
    config = point_config(plan, tmp_path, point, data)
    # What a kill leaves: train-lm checkpoints on SIGINT/SIGTERM; stop_at does the same.
    train(config, stop_at=2, progress=False, log=lambda *a: None)
    assert point_state(config).status == "partial"
    states = run_study(plan, tmp_path, data, log=lambda *a: None)
    assert states["cut"].status == "done" and states["cut"].step == 6
    log = (tmp_path / "cut" / "train.log").read_text()
    assert log.splitlines()[0].endswith("--resume")
    steps = [r["step"] for r in MetricsLog(tmp_path / "cut" / "metrics.jsonl").read()]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # one unbroken log


def test_recipe_needs_train_modern_config(tmp_path, tiny):
    try:
        load_config("modern")
    except (FileNotFoundError, ValueError) as e:
        pytest.skip(f"train-lm does not know --config modern yet ({e})")
    # 2 layers: the modern config's value-embedding table and U-net skip need at least two.
    over = {**tiny, "model.num_layers": "2", "train.max_seconds": "3", "train.max_steps": "100000"}
    plan = plan_study("recipe", "cpu", over)
    data = prepare_study_data(plan, tmp_path, log=lambda *a: None)
    states = run_study(plan, tmp_path, data, log=lambda *a: None)
    assert {s.status for s in states.values()} == {"done"}


def _fake_plan_points(tiny, study, overrides, **kw):
    return plan_study(study, "cpu", {**tiny, **overrides}, **kw)


def test_oom_batch_stops_the_sweep_and_jobs_share_the_cores(tmp_path, monkeypatch, tiny):
    import tinylm.apps.study_run as study_run

    monkeypatch.setattr(study_run, "_devices", lambda: [])  # CPU path, even on a GPU box
    plan = _fake_plan_points(tiny, "batch", {}, max_batch=16)
    launched = []

    def fake(cmd, log_path, env):  # no training: batch >= 4 "runs out of memory"
        batch = int(cmd[cmd.index("--train.batch_size") + 1])
        launched.append((batch, env.get("OMP_NUM_THREADS")))
        log_path.write_text("torch.OutOfMemoryError: CUDA out of memory\n" if batch >= 4 else "")
        return 1 if batch >= 4 else 0

    states = run_study(plan, tmp_path, {}, log=lambda *a: None, launch=fake)
    assert [b for b, _ in launched] == [1, 2, 4]  # 8 and 16 are not tried after 4 failed
    assert [states[p.name].status for p in plan.points] == ["new", "new", "oom", "oom", "oom"]
    assert json.loads((tmp_path / "batch-0004" / "study.json").read_text())["status"] == "oom"

    launched.clear()
    lr_plan = dataclasses.replace(
        _fake_plan_points(tiny, "lr", {}), points=plan_study("lr").points[:2]
    )
    run_study(lr_plan, tmp_path / "lr", {}, jobs=2, log=lambda *a: None, launch=fake)
    assert len(launched) == 2 and all(threads is not None for _, threads in launched)
