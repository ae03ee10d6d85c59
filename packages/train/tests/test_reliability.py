"""Issue 7's defects, one test each: what a user did, and the one line + status they must get.

Runs are tiny (1 layer, d_model 32, a few steps on pre-encoded random ids) and in-process.
"""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tinylm.train.trainer.setup as train_setup
import tinylm.train.trainer.trainer as loop_module
from packages.train.tests.run_cases import _argv, _config, _quiet
from tinylm.bpe import Tokenizer, train_bpe
from tinylm.nn import LOSS_KERNELS
from tinylm.train import (
    TrainingDiverged,
    find_checkpoints,
    prepare_data,
    read_checkpoint,
    train,
)
from tinylm.train.cli.generate import main as generate_main
from tinylm.train.cli.train_lm import main as train_main
from tinylm.train.config import DataConfig
from tinylm.train.errors import RunInterrupted


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: ")
    return err


# 1 ---------------------------------------------------------------------------------------------
def test_failed_resume_keeps_the_previous_config(tokens, tmp_path, capsys):
    assert train_main(_argv(tokens, tmp_path, "n2", 4)) == 0
    saved = (tmp_path / "n2" / "config.toml").read_text()
    argv = [*_argv(tokens, tmp_path, "n2", 40), "--resume", "--optim.lr", "1e6"]
    argv += ["--train.log_interval", "1", "--run.checkpoint_interval", "100"]
    assert train_main(argv) == 1
    err = _one_error_line(capsys)
    assert ("diverged" in err or "became nan" in err) and "step_0000004.pt is untouched" in err
    assert (tmp_path / "n2" / "config.toml").read_text() == saved  # lr = 1e6 was not kept
    assert "lr = 1000000.0" not in saved


# 3, 9, 11 --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--eval.batch_size", "-1", "'eval.batch_size' must be a finite number >= 0, got -1"),
        ("--train.max_steps", "inf", "'train.max_steps' must be a finite number, got 'inf'"),
        ("--data.dtype", "foo", "'data.dtype' must be one of"),
        ("--sample.temperature", "-1", "'sample.temperature' must be a finite number >= 0"),
        ("--sample.top_p", "1.5", "'sample.top_p' must be a finite number > 0 and <= 1"),
        ("--optim.lr", "nan", "'optim.lr' must be a finite number"),
        ("--train.device", "tpu", "'train.device' must be auto, cpu, cuda, cuda:N or mps"),
        ("--data.text_errors", "ignore", "'data.text_errors' must be one of 'strict', 'replace'"),
    ],
)
def test_bad_values_fail_before_any_work(tokens, tmp_path, capsys, flag, value, message):
    assert train_main([*_argv(tokens, tmp_path), flag, value]) == 2
    assert message in _one_error_line(capsys)
    assert not (tmp_path / "r").exists()  # nothing was created, let alone trained


def test_generate_validates_its_options(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert generate_main(["--run", str(run), "--num-samples", "-1"]) == 2
    assert "--num-samples must be >= 1" in _one_error_line(capsys)
    assert generate_main(["--run", str(run), "--device", "tpu"]) == 2
    err = _one_error_line(capsys)
    assert "--device must be auto, cpu" in err and "train.device" not in err
    assert generate_main(["--run", str(run), "--top-p", "0"]) == 2
    assert "--top-p" in _one_error_line(capsys)
    assert generate_main(["--run", str(run), "--dtype", "float16"]) == 2
    assert "--dtype must be float32 | bfloat16, got 'float16'" in _one_error_line(capsys)
    assert generate_main(["--run", str(run), "--compile", "yes"]) == 2
    assert "--compile must be auto | on | off, got 'yes'" in _one_error_line(capsys)


def _bpe(command: str, *args: str) -> subprocess.CompletedProcess:
    """A bpe console script as a user runs it: `bpe-train ...` / `bpe-encode ...`."""
    script = Path(sys.executable).parent / command
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=600)


def test_bpe_encode_into_a_directory_is_one_line(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello world " * 200, encoding="utf-8")
    vocab, merges = train_bpe(text, 260, ["<|endoftext|>"])
    tokenizer = Tokenizer(vocab, merges, ["<|endoftext|>"])
    tokenizer.save(tmp_path / "vocab.json", tmp_path / "merges.txt")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["--vocab", str(tmp_path / "vocab.json"), "--merges", str(tmp_path / "merges.txt")]
    proc = _bpe("bpe-encode", *argv, str(text), str(out_dir), "--no-progress")
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert "is a directory" in err and "Errno" not in err
    assert not list(out_dir.iterdir()) and not list(tmp_path.glob(".*.tmp"))


# 3 (disk full) lives in tests/test_faults.py; 4, 6, 7 too.


# 5 ---------------------------------------------------------------------------------------------
def test_rotation_and_listing_ignore_user_files(tokens, tmp_path, capsys):
    cfg = _config(tokens, tmp_path, steps=4)
    ckpts = cfg.run_dir / "checkpoints"
    ckpts.mkdir(parents=True)
    user = [ckpts / "step_best.pt", ckpts / "step_0000020_backup.pt", ckpts / "step_12.pt"]
    for path in user:
        path.write_bytes(b"the user's")
    train(cfg.replace(run={"keep_checkpoints": 1, "checkpoint_interval": 1}), log=_quiet)
    assert all(p.read_bytes() == b"the user's" for p in user)
    assert [p.name for p in find_checkpoints(cfg.run_dir)] == ["step_0000004.pt"]
    result = train(cfg.replace(train={"max_steps": 6}), resume=True, progress=False, log=_quiet)
    assert result.step == 6
    (cfg.run_dir / "tokenizer").mkdir(exist_ok=True)
    assert generate_main(["--run", str(cfg.run_dir), "--device", "cpu"]) == 2  # no tokenizer
    assert "invalid literal" not in capsys.readouterr().err


# 8 ---------------------------------------------------------------------------------------------
def test_sigterm_during_setup_is_one_line_and_143(tokens, tmp_path, capsys, monkeypatch):
    real = train_setup.prepare_data

    def prepare_then_sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_setup, "prepare_data", prepare_then_sigterm)
    assert train_main(_argv(tokens, tmp_path)) == 143
    err = _one_error_line(capsys)
    assert "interrupted by SIGTERM during setup" in err and "nothing saved" in err
    monkeypatch.setattr(train_setup, "prepare_data", real)
    assert train_main(_argv(tokens, tmp_path)) == 0  # the lock went with the aborted run


def test_sigint_during_setup_is_130(tokens, tmp_path, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("not reached")

    monkeypatch.setattr(train_setup, "prepare_data", interrupt)
    assert train_main(_argv(tokens, tmp_path)) == 130
    err = _one_error_line(capsys)
    assert "SIGINT during setup" in err and "second interrupt" not in err


def test_signals_during_training(tokens, tmp_path, capsys, monkeypatch):
    real = loop_module.get_batch
    calls = {"n": 0}

    def batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # step 6: one SIGTERM -> checkpoint at 6, status 143
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "get_batch", batch)
    assert train_main(_argv(tokens, tmp_path, "a")) == 143
    assert "interrupted by SIGTERM at step 6" in capsys.readouterr().out
    assert find_checkpoints(tmp_path / "a")[-1].name == "step_0000006.pt"

    calls["n"] = 0

    def batch_twice(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # a second signal before the step ends: abort at once
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "get_batch", batch_twice)
    assert train_main(_argv(tokens, tmp_path, "b")) == 143
    err = _one_error_line(capsys)
    assert "aborted by a second SIGTERM" in err and "step_0000004.pt" in err
    with pytest.raises(RunInterrupted):  # the Python API raises it too
        calls["n"] = 0
        train(_config(tokens, tmp_path, "c"), progress=False, log=_quiet)


# 9 ---------------------------------------------------------------------------------------------
def test_checkpoint_without_scheduler_is_a_clear_error(tokens, tmp_path, capsys):
    cfg = _config(tokens, tmp_path, steps=4)
    train(cfg, progress=False, log=_quiet)
    path = find_checkpoints(cfg.run_dir)[-1]
    payload = read_checkpoint(path)
    del payload["scheduler"]
    torch.save(payload, path)
    assert train_main([*_argv(tokens, tmp_path, "r", 8), "--resume"]) == 2
    assert "has no 'scheduler' entry" in _one_error_line(capsys)


# 10 --------------------------------------------------------------------------------------------
def test_non_utf8_text_is_one_policy(tmp_path):
    text = tmp_path / "bad.txt"
    text.write_bytes(("hello world. " * 300).encode() + b"\xff\xfe" + b" more text" * 100)
    config = DataConfig(text=str(text), text_bytes=0, vocab_size=300, tokenizer_bytes=0)
    with pytest.raises(ValueError, match=r"bad.txt: not valid UTF-8 at byte 3900 \(0xff\)"):
        prepare_data(config, tmp_path / "cache", log=_quiet)
    argv = [str(text), "--vocab-size", "300", "--out-dir", str(tmp_path), "--no-progress"]
    proc = _bpe("bpe-train", *argv)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "not valid UTF-8 at byte 3900 (0xff)" in proc.stderr
    # The opt-in: invalid bytes read as U+FFFD, in both tools; no bar without progress.
    replaced = DataConfig(**{**config.__dict__, "text_errors": "replace"})
    data = prepare_data(replaced, tmp_path / "cache", log=_quiet, progress=False)
    assert np.load(data.train_path).size > 0
    proc = _bpe("bpe-train", *argv, "--errors", "replace")
    assert proc.returncode == 0, proc.stderr
    assert "pre-tokenize" not in proc.stderr and "merges" not in proc.stderr  # no bars


# 12 --------------------------------------------------------------------------------------------
def test_extending_a_finished_run_trains_on_at_min_lr(tokens, tmp_path):
    cfg = _config(tokens, tmp_path, steps=8, **{"train.log_interval": "1"})
    train(cfg, progress=False, log=_quiet)
    lines = []
    train(cfg.replace(train={"max_steps": 12}), resume=True, progress=False, log=lines.append)
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (cfg.run_dir / "metrics.jsonl").open())}
    assert all(lrs[s] == pytest.approx(cfg.optim.min_lr) for s in range(9, 13))
    assert all(lrs[s] <= lrs[s - 1] + 1e-12 for s in range(2 + cfg.optim.warmup_steps, 13))
    assert any("steps 9..12 train at min_lr" in line for line in lines)
    assert "cosine_steps = 8" in (cfg.run_dir / "config.toml").read_text()
    # An explicit new schedule length stretches the cosine instead (the lr rises again).
    other = _config(tokens, tmp_path, "s", steps=8, **{"train.log_interval": "1"})
    train(other, progress=False, log=_quiet)
    longer = other.replace(train={"max_steps": 12}, optim={"cosine_steps": 12})
    train(longer, resume=True, progress=False, log=_quiet)
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (other.run_dir / "metrics.jsonl").open())}
    assert lrs[9] > other.optim.min_lr * 1.01


# 13 --------------------------------------------------------------------------------------------
def _poison(monkeypatch, from_call: int, factor: float):
    """Scale the training loss from its `from_call`-th computation on (evaluation untouched).

    train and evaluate take the loss from model(x, targets=y), i.e. the compute.loss kernel:
    every kernel of the table is wrapped, whichever the config picks."""
    calls = {"n": 0}

    def poisoned(real):
        def kernel(hidden, weight, targets, **kwargs):
            loss = real(hidden, weight, targets, **kwargs)
            if not torch.is_grad_enabled():  # an evaluation (no_grad)
                return loss
            calls["n"] += 1
            return loss * factor if calls["n"] >= from_call else loss

        return kernel

    for name, real in list(LOSS_KERNELS.items()):
        monkeypatch.setitem(LOSS_KERNELS, name, poisoned(real))


def test_finite_blow_up_is_detected(tokens, tmp_path, monkeypatch, capsys):
    _poison(monkeypatch, from_call=5, factor=1e5)  # loss ~ 6e5 from step 5: finite, diverged
    argv = [*_argv(tokens, tmp_path, "blow", 40), "--train.log_interval", "1"]
    assert train_main(argv) == 1
    err = _one_error_line(capsys)
    assert "training diverged" in err and "step 7" in err and "step_0000004.pt" in err
    run = tmp_path / "blow"
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert records[-1]["event"] == "diverged" and records[-1]["step"] == 7
    assert (run / "loss.png").is_file()
    assert [p.name for p in find_checkpoints(run)] == ["step_0000004.pt"]


def test_nan_at_step_3_keeps_metrics_and_curve(tokens, tmp_path, monkeypatch):
    _poison(monkeypatch, from_call=3, factor=math.nan)
    with pytest.raises(TrainingDiverged, match="loss became nan at step 3"):
        train(_config(tokens, tmp_path, "nan", 8), progress=False, log=_quiet)
    run = tmp_path / "nan"
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert records[-1]["event"] == "diverged" and records[-1]["step"] == 3
    assert (run / "loss.png").is_file() and not find_checkpoints(run)


def test_healthy_loss_is_not_a_divergence(tokens, tmp_path):
    cfg = _config(tokens, tmp_path, steps=8, **{"train.diverge_patience": "1"})
    assert train(cfg, progress=False, log=_quiet).stopped == "finished"


# determinism -----------------------------------------------------------------------------------
def test_two_fresh_runs_are_bit_identical_at_the_default_thread_count(tokens, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        a = train(_config(tokens, tmp_path, "a", 6), progress=False, log=_quiet).model
        b = train(_config(tokens, tmp_path, "b", 6), progress=False, log=_quiet).model
    finally:
        torch.set_num_threads(threads)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
