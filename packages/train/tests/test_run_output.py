"""Issue 19, train-lm's run loop: signals, metrics.jsonl, MFU and resume hints.

Runs are tiny (1 layer, d_model 32, a few steps on pre-encoded random ids) and in-process; nothing
depends on timing. (What a user sees, progress and summary: test_run_progress.py.)
"""

import json
import os
import re
import signal

import pytest
import torch

import tinylm.train.flops as flops
import tinylm.train.trainer.setup as train_setup
import tinylm.train.trainer.trainer as loop_module
from packages.train.tests.run_cases import _argv, _config, _quiet
from tinylm.train import MetricsLog, find_checkpoints, train
from tinylm.train.cli.train_lm import main as train_main


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: ")
    return err


# 3.5 SIGHUP ------------------------------------------------------------------------------------
def test_sighup_while_training_checkpoints_and_exits_129(tokens, tmp_path, capsys, monkeypatch):
    real = loop_module.get_batch
    calls = {"n": 0}

    def batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # during step 6: the step completes, a checkpoint, then the stop
            os.kill(os.getpid(), signal.SIGHUP)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "get_batch", batch)
    previous = signal.getsignal(signal.SIGHUP)
    assert train_main(_argv(tokens, tmp_path, "hup")) == 129
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if "SIGHUP" in line]
    assert len(lines) == 1 and "interrupted by SIGHUP at step 6" in lines[0], captured.out
    assert captured.err == ""
    assert find_checkpoints(tmp_path / "hup")[-1].name == "step_0000006.pt"
    assert signal.getsignal(signal.SIGHUP) is previous  # handlers are restored
    monkeypatch.setattr(loop_module, "get_batch", real)
    assert train_main([*_argv(tokens, tmp_path, "hup"), "--resume"]) == 0  # and it resumes


def test_sighup_during_setup_is_one_line_and_129(tokens, tmp_path, capsys, monkeypatch):
    real = train_setup.prepare_data

    def prepare_then_sighup(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGHUP)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_setup, "prepare_data", prepare_then_sighup)
    assert train_main(_argv(tokens, tmp_path)) == 129
    assert "interrupted by SIGHUP during setup" in _one_error_line(capsys)


# 3.7 train loss at eval steps, strict JSON -----------------------------------------------------
def _strict_records(path):
    """metrics.jsonl through a strict parser: NaN/Infinity are not JSON (RFC 8259)."""

    def refuse(name):
        raise AssertionError(f"{path} holds a bare {name}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def test_eval_steps_off_the_log_interval_report_the_mean_since_the_last_report(
    tokens, tmp_path, capsys
):
    # The oracle: the same run logged at every step (logging does not change the training).
    every = [*_argv(tokens, tmp_path, "every", 10), "--train.log_interval", "1"]
    assert train_main(every) == 0
    per_step = {
        r["step"]: r["train_loss"] for r in _strict_records(tmp_path / "every" / "metrics.jsonl")
    }
    # Eval every 3 steps, log every 4: the eval at step 3 comes before any log step (it printed
    # `train loss nan`), those at 6 and 9 between two.
    capsys.readouterr()
    argv = [*_argv(tokens, tmp_path, "ev", 10), "--eval.interval", "3", "--train.log_interval", "4"]
    assert train_main(argv) == 0
    out = capsys.readouterr().out
    assert "nan" not in out, out
    assert re.search(r"step 3: train loss \d+\.\d+, val loss \d+\.\d+", out), out
    records = _strict_records(tmp_path / "ev" / "metrics.jsonl")
    assert [r["step"] for r in records] == [3, 4, 6, 8, 9, 10]
    previous = 0
    for record in records:
        step = record["step"]
        expected = sum(per_step[s] for s in range(previous + 1, step + 1)) / (step - previous)
        assert record["train_loss"] == pytest.approx(expected, rel=1e-5), step
        previous = step


def test_metrics_lines_are_strict_json(tmp_path):
    log = MetricsLog(tmp_path / "m.jsonl")
    log.write({"step": 1, "train_loss": float("nan"), "val_loss": None, "mfu": float("inf")})
    (record,) = _strict_records(tmp_path / "m.jsonl")
    assert record == {"step": 1, "train_loss": None, "val_loss": None, "mfu": None}


# 3.9 a lock that is a directory, a damaged metrics.jsonl ---------------------------------------
def test_lock_that_is_a_directory_is_bad_input(tokens, tmp_path, capsys):
    (tmp_path / "locked" / ".lock").mkdir(parents=True)
    assert train_main(_argv(tokens, tmp_path, "locked")) == 2
    err = _one_error_line(capsys)
    assert f"{tmp_path / 'locked' / '.lock'} is a directory" in err
    assert "IsADirectoryError" not in err and "Errno" not in err


DAMAGE = {
    "list": b"[1, 2, 3]\n",
    "string loss": b'{"step": 5, "train_loss": "4.2"}\n',
    "non-utf8": b'{"step": 5, "train_loss": 4.2\xff}\n',
    "string step": b'{"step": "5", "train_loss": 4.2}\n',
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_metrics_line_is_skipped_with_a_warning(tokens, tmp_path, capsys, damage):
    assert train_main(_argv(tokens, tmp_path, "dm", 4)) == 0
    metrics = tmp_path / "dm" / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(lines[0] + DAMAGE[damage] + b"".join(lines[1:]))
    capsys.readouterr()
    assert train_main([*_argv(tokens, tmp_path, "dm", 8), "--resume"]) == 0  # resume still works
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"warning: {metrics} line 2: "), err
    assert err[0].endswith("; skipped")
    steps = [r["step"] for r in _strict_records(metrics)]
    assert steps == [2, 4, 6, 8]  # the damaged line is gone, the rest continues


def test_damaged_metrics_line_in_the_reader(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"step": 1, "train_loss": 3.0}\n' + b"".join(DAMAGE.values()))
    warnings = []
    assert MetricsLog(path, warn=warnings.append).read() == [{"step": 1, "train_loss": 3.0}]
    assert [w.split(":")[1].strip() for w in warnings] == [f"{path} line {n}" for n in (2, 3, 4, 5)]


# 3.8 MFU against a bound, not a per-run measurement --------------------------------------------
ZEN4 = "cpu MHz\t\t: 2596.096\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16\n"


def test_cpu_peak_is_threads_times_clock_times_flops_per_cycle():
    peak, source = flops.cpu_peak_flops(False, threads=2, cpuinfo=ZEN4, clock_hz=0)
    assert peak == 2 * 2596.096e6 * 64  # 2 FMA pipes × 16 fp32 lanes × 2 FLOPs
    assert "2 thread(s) × 2.60 GHz × 64 fp32 FLOP/cycle (avx512f)" in source
    peak, source = flops.cpu_peak_flops(True, threads=3, cpuinfo=ZEN4, clock_hz=3e9)
    assert peak == 3 * 3e9 * 128 and "avx512_bf16" in source
    amx = ZEN4.replace("avx512_bf16", "avx512_bf16 amx_bf16")
    assert flops.cpu_peak_flops(True, threads=1, cpuinfo=amx, clock_hz=1e9)[0] == 1024e9
    assert flops.cpu_peak_flops(False, threads=1, cpuinfo=amx, clock_hz=1e9)[0] == 64e9
    assert flops.cpu_peak_flops(False, threads=1, cpuinfo="flags: fpu\n", clock_hz=1e9) is None


def test_cpu_peak_is_not_measured_per_run(monkeypatch):
    if flops.cpu_peak_flops(False) is None:
        pytest.skip("this CPU's clock or vector unit cannot be read; the peak is measured")

    def no_measuring(*args, **kwargs):
        raise AssertionError("the CPU peak must not depend on a matmul timed in this run")

    monkeypatch.setattr(flops, "measure_matmul_flops", no_measuring)
    first = flops.peak_flops(torch.device("cpu"), bf16=False)
    assert first == flops.peak_flops(torch.device("cpu"), bf16=False)
    assert first[1].startswith("CPU bound: ")


def test_the_cpu_bound_bounds_a_matmul():
    """A large fp32 matmul, the fastest thing this CPU does, stays under the bound."""
    bound = flops.cpu_peak_flops(False)
    if bound is None:
        pytest.skip("this CPU's clock or vector unit cannot be read")
    measured = flops.measure_matmul_flops.__wrapped__("cpu", torch.float32, 512)
    assert measured <= bound[0]


def test_mfu_stays_below_one_and_the_source_is_printed_once(tokens, tmp_path):
    lines = []
    cfg = _config(tokens, tmp_path, "mfu", 6)
    train(cfg, progress=False, log=lines.append)
    records = _strict_records(cfg.run_dir / "metrics.jsonl")
    assert all(0 < r["mfu"] <= 1 for r in records)
    peak_lines = [line for line in lines if "FLOP/s" in line and "per device" in line]
    assert len(peak_lines) == 1, lines


# 3.11 a resume with nothing to do; the exact command to continue -------------------------------
def _snapshot(run_dir):
    """Every file of the run directory but the lock: its bytes and modification time."""
    return {
        p.relative_to(run_dir): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.mark.parametrize("max_steps", [None, "2"])
def test_resume_of_a_finished_run_says_so_and_touches_nothing(tokens, tmp_path, capsys, max_steps):
    assert train_main(_argv(tokens, tmp_path, "fin", 4)) == 0
    run = tmp_path / "fin"
    before = _snapshot(run)
    capsys.readouterr()
    # --resume alone reads the run's config.toml (max_steps 4); or a smaller max_steps is given.
    argv = ["--run.root", str(tmp_path), "--run.name", "fin", "--resume", "--no-progress"]
    assert train_main([*argv, *(["--train.max_steps", max_steps] if max_steps else [])]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "done:" not in out
    (line,) = out.strip().splitlines()
    assert f"{run} is already at step 4" in line and "nothing to do" in line
    command = f"train-lm --run.root {tmp_path} --run.name fin --resume --train.max_steps 8"
    assert line.endswith(command)
    assert _snapshot(run) == before  # nothing rewritten, not even sample.txt or metrics.jsonl
    # The command it prints extends the run.
    assert train_main([*command.split()[1:], "--no-progress"]) == 0
    assert find_checkpoints(run)[-1].name == "step_0000008.pt"


def test_train_api_resume_of_a_finished_run_writes_nothing(tokens, tmp_path):
    cfg = _config(tokens, tmp_path, "api", 4)
    first = train(cfg, progress=False, log=_quiet)
    before = _snapshot(cfg.run_dir)
    lines = []
    result = train(cfg, resume=True, progress=False, log=lines.append)
    assert result.stopped == "already done" and result.step == 4
    assert result.train_loss == pytest.approx(first.train_loss)
    assert result.val_loss == pytest.approx(first.val_loss)
    assert any("is already at step 4" in line for line in lines)
    assert not any("done:" in line for line in lines)
    assert _snapshot(cfg.run_dir) == before


def test_interrupted_run_prints_the_exact_command_to_continue(
    tokens, tmp_path, capsys, monkeypatch
):
    real = loop_module.get_batch
    calls = {"n": 0}

    def batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "get_batch", batch)
    assert train_main(_argv(tokens, tmp_path, "ctrl-c", 8)) == 130
    out = capsys.readouterr().out
    command = f"train-lm --run.root {tmp_path} --run.name ctrl-c --resume"
    assert f"interrupted by SIGINT at step 3; checkpoint {tmp_path}" in out
    assert f"continue with: {command}\n" in out
    monkeypatch.setattr(loop_module, "get_batch", real)
    assert train_main([*command.split()[1:], "--no-progress"]) == 0  # the command works
    assert find_checkpoints(tmp_path / "ctrl-c")[-1].name == "step_0000008.pt"
