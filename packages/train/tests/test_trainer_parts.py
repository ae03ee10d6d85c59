"""The parts around the training step, each on its own: clock, guard, checkpointer, meters, sink,
and the Trainer's step against the whole run."""

import json
import math

import pytest
import torch

import tinylm.train.trainer.checkpointer as checkpointer_module
import tinylm.train.trainer.clock as clock_module
from tinylm.train import RunFailed, TrainingDiverged, find_checkpoints, train
from tinylm.train.runtime import Distributed, determinism
from tinylm.train.trainer import (
    Checkpointer,
    DivergenceGuard,
    LossMean,
    MetricsSink,
    RunClock,
    Throughput,
    Trainer,
)


class _Ticks:
    """A stand-in for the time module: perf_counter returns what the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def perf_counter(self) -> float:
        return self.now


def test_clock_counts_the_loop_from_the_resumed_wallclock(monkeypatch):
    ticks = _Ticks(100.0)
    monkeypatch.setattr(clock_module, "time", ticks)
    clock = RunClock(offset=30.0, setup_start=90.0)
    ticks.now = 105.0  # setup (data, model) took 15 s: not wall-clock
    clock.start()
    ticks.now = 112.5
    assert clock.wallclock() == 37.5
    timings = clock.timings()
    assert timings["train"] == 7.5 and timings["total"] == 22.5


def test_guard_stops_on_non_finite_values_naming_the_step():
    guard = DivergenceGuard(256, 5.0, 3, kept=lambda: "no checkpoint was written")
    guard.check_finite(3.0, 7)
    with pytest.raises(TrainingDiverged, match=r"grad norm became inf at step 7; stopped \(no"):
        guard.check_finite(math.inf, 7, "grad norm")
    with pytest.raises(TrainingDiverged, match="loss became nan at step 8"):
        guard.check_finite(math.nan, 8)


def test_guard_stops_a_blow_up_only_after_patience_checks_in_a_row():
    line = math.log(256) + 5.0
    guard = DivergenceGuard(256, 5.0, 3, kept=lambda: "kept")
    for step, loss in enumerate([line + 1, line + 1, line - 1, line + 1, line + 1], start=1):
        guard.check_blowup(loss, step)  # the dip at step 3 restarts the count
    with pytest.raises(TrainingDiverged, match=r"above 10\.55 .* for 3 log steps; stopped \(kept"):
        guard.check_blowup(line + 1, 6)
    off = DivergenceGuard(256, 0.0, 1, kept=lambda: "kept")  # margin 0: no blow-up check
    off.check_blowup(1e30, 1)


def _tiny_model():
    model = torch.nn.Linear(2, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def test_checkpointer_keeps_the_newest_and_writes_a_pending_config_once(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(
        checkpointer_module,
        "save_checkpoint",
        lambda model, opt, step, path, **kw: saved.append(kw) or path.write_bytes(b"x"),
    )
    clock = RunClock(offset=0.0, setup_start=0.0)
    ckpt = Checkpointer(
        tmp_path,
        keep=2,
        clock=clock,
        settings={"train": {"seed": 1}},
        position={"seed": 1, "world_size": 1, "grad_accum": 2},
        pending_config="[train]\n",
    )
    assert ckpt.kept() == "no checkpoint was written"
    model, opt = _tiny_model()
    for step in (10, 20, 30):
        ckpt.save(step, step * 64, model, opt, None)
        (tmp_path / "config.toml").write_text("changed by hand")  # not rewritten after the 1st
    assert [p.name for p in find_checkpoints(tmp_path)] == ["step_0000020.pt", "step_0000030.pt"]
    assert (tmp_path / "config.toml").read_text() == "changed by hand"
    assert saved[-1]["data"] == {
        "tokens": 30 * 64,
        "step": 30,
        "seed": 1,
        "world_size": 1,
        "grad_accum": 2,
    }
    newest = tmp_path / "checkpoints" / "step_0000030.pt"
    assert ckpt.kept() == f"last good checkpoint {newest} is untouched"
    assert "checkpoint" in clock.timer.totals


def test_checkpointer_of_another_rank_writes_nothing(tmp_path):
    clock = RunClock(setup_start=0.0)
    ckpt = Checkpointer(tmp_path, keep=1, clock=clock, settings={}, position={}, enabled=False)
    ckpt.save(1, 1, *_tiny_model(), None)
    assert not (tmp_path / "checkpoints").exists() and ckpt.last is None


def test_a_failed_checkpoint_write_names_the_last_good_one(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpointer_module, "save_checkpoint", full_disk)
    last = tmp_path / "checkpoints" / "step_0000010.pt"
    clock = RunClock(setup_start=0.0)
    ckpt = Checkpointer(tmp_path, keep=1, clock=clock, settings={}, position={}, last=last)
    with pytest.raises(RunFailed, match=f"No space left on device; last good checkpoint {last}"):
        ckpt.save(20, 1, *_tiny_model(), None)
    assert ckpt.last == last


def test_loss_mean_and_throughput():
    mean = LossMean(torch.device("cpu"))
    for value in (1.0, 2.0, 6.0):
        mean.add(torch.tensor(value))
    assert mean.read(Distributed()) == 3.0
    mean.reset()
    mean.add(torch.tensor(5.0))
    assert mean.read(Distributed()) == 5.0
    meter = Throughput(flops_per_token=6e6, peak_total=1e12)
    meter.add(1000, 0.5)
    meter.add(1000, 1.5)
    assert meter.tokens_per_s == 1000.0
    assert meter.record() == {"tokens_per_s": 1000.0, "flops_per_s": 6e9, "mfu": 0.006}
    meter.reset()
    assert meter.tokens_per_s == 0.0


def test_sink_writes_records_and_a_failure_line_and_cuts_a_resumed_log(tmp_path):
    clock = RunClock(setup_start=0.0)
    sink = MetricsSink(tmp_path, timer=clock.timer, title="t", baseline=2.0)
    sink.open()
    for step in (5, 10, 15):
        sink.write({"step": step, "train_loss": 4.0 / step})
    sink.failed(TrainingDiverged("loss became nan\nmore"), {"step": 16, "tokens": 9})
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1] == {"event": "diverged", "step": 16, "tokens": 9, "reason": "loss became nan"}
    assert (tmp_path / "loss.png").stat().st_size > 0
    again = MetricsSink(tmp_path, timer=clock.timer)
    again.resume_at(10)
    again.open()
    assert [r["step"] for r in again.records] == [5, 10]
    other_rank = MetricsSink(tmp_path / "x", timer=clock.timer, enabled=False)
    other_rank.open()
    other_rank.write({"step": 1})
    other_rank.plot()
    assert not (tmp_path / "x").exists()


def test_train_step_is_the_step_of_a_whole_run(tiny_config):
    """Three train_step calls on a bare Trainer leave the weights a 3-step train() leaves."""
    cfg = tiny_config.replace(eval={"interval": 100}, sample={"max_new_tokens": 0})
    whole = train(cfg.replace(run={"name": "whole"}), stop_at=3, progress=False, log=lambda *a: 0)
    with determinism(torch.device("cpu"), True):
        trainer = Trainer(cfg.replace(run={"name": "steps"}), log=lambda *a: 0)
        losses = [trainer.train_step()[0] for _ in range(3)]
    assert trainer.step == 3 and trainer.tokens == whole.tokens
    expected = whole.model.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in trainer.model.state_dict().items())
    records = [json.loads(x) for x in (whole.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] == pytest.approx(sum(float(x) for x in losses) / 3)
    assert whole.checkpoint.name == "step_0000003.pt"


def test_an_io_error_in_the_loop_is_recorded_and_becomes_run_failed(tmp_path):
    sink = MetricsSink(tmp_path, timer=RunClock(setup_start=0.0).timer)
    sink.open()
    position = {"step": 4, "tokens": 128, "wallclock": 0.5}
    expected = r"I/O error at step 4: No space left on device \(f\); kept"
    recording = sink.recording_failure(lambda: position, kept=lambda: "kept")
    with pytest.raises(RunFailed, match=expected), recording:
        raise OSError(28, "No space left on device", "f")
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last == {
        **position,
        "event": "failed",
        "reason": "[Errno 28] No space left on device: 'f'",
    }


def test_a_bare_trainer_fits_like_train(tiny_config):
    """Trainer(config).fit() without train()'s lock and handlers: the same losses and files."""
    cfg = tiny_config.replace(train={"max_steps": 6}, eval={"interval": 3})
    via_train = train(cfg.replace(run={"name": "a"}), progress=False, log=lambda *a: 0)
    with determinism(torch.device("cpu"), True):
        bare = Trainer(cfg.replace(run={"name": "b"}), progress=False, log=lambda *a: 0).fit()

    def losses(run_dir):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["train_loss"], r["val_loss"]) for r in map(json.loads, lines)]

    assert losses(bare.run_dir) == losses(via_train.run_dir)
    assert bare.stopped == "finished" and [p.name for p in find_checkpoints(bare.run_dir)] == [
        "step_0000006.pt"
    ]
    assert (bare.run_dir / "config.toml").is_file() and (bare.run_dir / "sample.txt").is_file()
