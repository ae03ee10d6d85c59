"""Issue 19, train-lm's run loop: signals, metrics.jsonl, MFU, resume hints and what a user sees.

Runs are tiny (1 layer, d_model 32, a few steps on pre-encoded random ids) and in-process; nothing
depends on a terminal or on timing (isatty and the peak are injected).
"""

import os
import signal

import numpy as np
import pytest

import tinylm.train.loop as loop_module
import tinylm.train.setup as train_setup
from tinylm.train import find_checkpoints, load_config
from tinylm.train.cli import main as train_main

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
