"""Issue 19, train-lm's run loop: signals, metrics.jsonl, MFU, resume hints and what a user sees.

Runs are tiny (1 layer, d_model 32, a few steps on pre-encoded random ids) and in-process; nothing
depends on a terminal or on timing (isatty and the peak are injected).
"""

import json
import os
import re
import signal
import sys

import numpy as np
import pytest
import torch

import tinylm.train.flops as flops
import tinylm.train.trainer.progress as progress
import tinylm.train.trainer.setup as train_setup
import tinylm.train.trainer.trainer as loop_module
from tinylm.train import MetricsLog, find_checkpoints, load_config, train
from tinylm.train.cli.train_lm import main as train_main

VOCAB = 512


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ids")
    rng = np.random.default_rng(0)
    for name, n in (("train", 50_000), ("val", 5_000)):
        np.save(directory / f"{name}.npy", (rng.zipf(1.3, n) % VOCAB).astype(np.uint16))
    return directory


def _argv(tokens, root, name="r", steps=8, *extra):
    return [
        "--model.d_model", "32", "--model.num_layers", "1", "--model.num_heads", "2",
        "--model.d_ff", "64", "--model.context_length", "32", "--train.max_steps", str(steps),
        "--train.batch_size", "4", "--train.log_interval", "2", "--run.checkpoint_interval", "4",
        "--eval.interval", "4", "--eval.iters", "1", "--train.device", "cpu",
        "--data.vocab_size", str(VOCAB), "--data.train_tokens", str(tokens / "train.npy"),
        "--data.val_tokens", str(tokens / "val.npy"), "--run.root", str(root),
        "--run.name", name, "--sample.max_new_tokens", "0", "--no-progress", *extra,
    ]  # fmt: skip


def _config(tokens, root, name="r", steps=8, **overrides):
    argv = _argv(tokens, root, name, steps)[:-1]
    pairs = dict(zip(argv[0::2], argv[1::2], strict=True))
    values = {k[2:]: v for k, v in pairs.items()}
    values.update(overrides)
    return load_config(overrides=values)


def _quiet(*args, **kwargs):
    pass


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


# 4. what a person sees: plain lines when redirected, a short start, a readable plot -----------
LINE = re.compile(
    r"^step (\d+)/(\d+) \| loss \d+\.\d{3} \| lr \d\.\de[-+]\d\d \| [\d.]+[kMG]? tok/s"
    r" \| mfu [\d.]+% \| eta (\d+h)?(\d+m)?\d+[sm]$"
)


def test_progress_line_format_and_eta_from_an_injected_clock():
    line = progress.progress_line(120, 600, 4.1134, 2.9e-3, 14_234.0, 0.51, 65.0)
    assert line == "step 120/600 | loss 4.113 | lr 2.9e-03 | 14.2k tok/s | mfu 51% | eta 1m05s"
    assert LINE.match(line)
    assert progress.format_duration(3720) == "1h02m" and progress.format_rate(812) == "812"
    assert "| mfu 0.04% |" in progress.progress_line(1, 2, 1.0, 1e-3, 10.0, 0.0004, 1.0)
    now = {"t": 100.0}
    lines = []
    shown = progress.Progress(
        10, 0, enabled=True, log=lines.append, tty=False, clock=lambda: now["t"]
    )
    now["t"] = 104.0  # 2 steps in 4 s: 2 s a step, 8 steps to go
    shown.update(1, 5.0, 1e-3, 100.0, 0.01, report=False)  # not a log step: no line
    shown.update(2, 5.0, 1e-3, 100.0, 0.01, report=True)
    shown.close()
    assert lines == ["step 2/10 | loss 5.000 | lr 1.0e-03 | 100 tok/s | mfu 1.0% | eta 16s"]
    assert shown.bar is None


def test_redirected_output_has_one_plain_line_per_log_interval(tokens, tmp_path, capsys):
    lines = []
    cfg = _config(tokens, tmp_path, "plain", 8)
    train(cfg, progress=True, log=lines.append, tty=False)
    err = capsys.readouterr().err
    assert err == ""  # no bar, no carriage returns
    progress_lines = [line for line in lines if LINE.match(line)]
    assert [int(LINE.match(line).group(1)) for line in progress_lines] == [2, 4, 6, 8]
    assert all("\r" not in line for line in lines)
    # With --no-progress: neither bar nor lines.
    lines.clear()
    train(cfg.replace(run={"name": "quiet"}), progress=False, log=lines.append, tty=False)
    assert not [line for line in lines if LINE.match(line)]


def test_a_terminal_gets_the_bar_and_no_plain_lines(tokens, tmp_path, capsys):
    lines = []
    train(_config(tokens, tmp_path, "bar", 8), progress=True, log=lines.append, tty=True)
    err = capsys.readouterr().err
    assert "8/8" in err  # the tqdm bar, on stderr
    assert not [line for line in lines if LINE.match(line)]


def test_the_start_of_a_run_is_a_short_summary(tokens, tmp_path):
    lines = []
    cfg = _config(tokens, tmp_path, "start", 2)
    train(cfg, progress=False, log=lines.append)
    start = lines[: next(i for i, line in enumerate(lines) if line.startswith("step "))]
    text = "\n".join(start)
    assert len(text.splitlines()) <= 8, text  # was the whole config: ~120 lines
    assert "[optim]" not in text and "wandb_project" not in text
    assert f"run dir: {cfg.run_dir}" in text
    (settings,) = [line for line in start if line.startswith("settings: ")]
    assert "train.max_steps=2" in settings and "model.d_model=32" in settings
    assert "optim.lr=" not in settings  # left at its default: not listed
    assert any(line.startswith("model: ") and "params" in line for line in start)
    assert any(line.startswith("optimizer: adamw") for line in start)


def test_loss_plot_has_baseline_title_integer_steps_labels_and_legend(
    tokens, tmp_path, monkeypatch
):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figures = []
    real = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    cfg = _config(tokens, tmp_path, "plot", 4)
    result = train(cfg, progress=False, log=_quiet)
    fig = figures[-1]
    by_step, by_time = fig.axes
    title = fig._suptitle.get_text()
    assert "plot" not in title  # the settings, not the directory name
    assert "(1 layer, d_model 32, ctx 32" in title and "adamw lr" in title and "4 steps" in title
    for ax in (by_step, by_time):
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == 1
        assert list(dashed[0].get_ydata()) == [pytest.approx(result.unigram_entropy)] * 2
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[:2] == ["train", "validation"] and labels[2].startswith("unigram baseline")
    assert by_step.get_xlabel() == "step" and by_time.get_xlabel() == "wall-clock (s)"
    assert by_step.get_ylabel() == "loss (nats/token)"
    locator = by_step.xaxis.get_major_locator()
    assert isinstance(locator, MaxNLocator) and locator._integer
    ticks = by_step.get_xticks()
    assert all(float(t).is_integer() for t in ticks)


def test_the_final_bar_is_drawn_once_before_the_last_eval_line(capsys):
    def to_stderr(message):
        print(message, file=sys.stderr)

    shown = progress.Progress(3, 0, enabled=True, log=to_stderr, tty=True)
    for step in (1, 2, 3):
        shown.update(step, 4.0, 1e-3, 1000.0, 0.1, report=True)
    shown.write("step 3: train loss 4.0000, val loss 4.1000")
    shown.close()
    err = capsys.readouterr().err
    after = err.split("step 3: train loss")[1]
    assert "3/3" not in after and "|" not in after, repr(err)  # no bar redrawn after it
    assert "3/3" in err


def test_help_shows_the_defaults(capsys):
    assert train_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "default: auto" in out  # --device
    assert "max_steps = 600" in out and "lr = 3e-3" in out  # every key, from default.toml


def test_a_closed_terminal_does_not_stop_the_checkpoint(tokens, tmp_path, monkeypatch):
    """After SIGHUP every write to the gone terminal fails (EIO); the run still checkpoints."""
    real = loop_module.get_batch
    calls = {"n": 0}
    hung_up = {"yes": False}

    def batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # step 4: a log step (plain line) and an eval step (eval line)
            hung_up["yes"] = True
            os.kill(os.getpid(), signal.SIGHUP)
        return real(*args, **kwargs)

    def dead_terminal(*args, **kwargs):
        if hung_up["yes"]:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(loop_module, "get_batch", batch)
    cfg = _config(tokens, tmp_path, "gone", 8)
    result = train(cfg, progress=True, log=dead_terminal, tty=False)
    assert result.stopped == "interrupted" and result.signal == "SIGHUP" and result.step == 4
    assert find_checkpoints(cfg.run_dir)[-1].name == "step_0000004.pt"


def test_the_error_line_to_a_closed_terminal_keeps_the_status(monkeypatch):
    from tinylm.train import RunInterrupted, run_cli

    class Gone:
        def write(self, text):
            raise OSError(5, "Input/output error")

        def flush(self):
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(sys, "stderr", Gone())

    def body():
        raise RunInterrupted(signal.SIGHUP, "aborted by a second SIGHUP")

    assert run_cli(body) == 129
