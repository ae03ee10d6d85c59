"""Issue 19, train-lm's run loop as a user sees it: progress lines or bar, the start summary,
the loss plot, --help, and a terminal that goes away.

Runs are tiny (1 layer, d_model 32, a few steps on pre-encoded random ids) and in-process; nothing
depends on a terminal or on timing (isatty and the clock are injected).
"""

import os
import re
import signal
import sys

import pytest

import tinylm.train.trainer.progress as progress
import tinylm.train.trainer.trainer as loop_module
from packages.train.tests.run_cases import _config, _quiet
from tinylm.train import find_checkpoints, train
from tinylm.train.cli.train_lm import main as train_main

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
