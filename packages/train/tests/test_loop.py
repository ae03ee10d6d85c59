"""The training loop: learning, bit-exact resume, divergence, bad input."""

import json
import math
import os
import signal

import numpy as np
import pytest
import torch

import tinylm.train.trainer.trainer as loop_module
from tinylm.nn import LOSS_KERNELS
from tinylm.train import TrainingDiverged, find_checkpoints, read_checkpoint, train


def _quiet(*args, **kwargs):
    pass


def test_tiny_run_learns_and_writes_everything(tiny_config):
    result = train(tiny_config, progress=False, log=_quiet)
    run = tiny_config.run_dir
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    assert set(records[0]) == {
        "step",
        "tokens",
        "wallclock",
        "train_loss",
        "val_loss",
        "lr",
        "lr_matrix",
        "lr_embedding",
        "lr_head",
        "lr_scalar",
        "grad_norm",
        "tokens_per_s",
        "flops_per_s",
        "mfu",
    }
    assert records[-1]["tokens"] == 30 * 8 * 32
    assert records[-1]["train_loss"] < records[0]["train_loss"] - 0.5  # it learns
    assert result.val_loss is not None and result.val_loss < math.log(300)
    assert result.step == 30 and result.stopped == "finished"
    assert [p.name for p in find_checkpoints(run)] == ["step_0000020.pt", "step_0000030.pt"]
    assert result.checkpoint == run / "checkpoints" / "step_0000030.pt"
    assert (run / "loss.png").stat().st_size > 0
    assert (run / "config.toml").read_text() == tiny_config.to_toml()
    assert (run / "tokenizer" / "vocab.json").is_file()
    assert (run / "sample.txt").read_text().startswith("The")
    assert result.unigram_entropy > 0
    assert set(result.timings) >= {"data", "eval", "checkpoint", "total"}


def test_resume_is_bit_exact(tiny_config):
    full = train(tiny_config.replace(run={"name": "full"}), progress=False, log=_quiet)

    parts_cfg = tiny_config.replace(run={"name": "parts", "checkpoint_interval": 100})
    first = train(parts_cfg, stop_at=13, progress=False, log=_quiet)
    assert first.stopped == "stop_at" and first.step == 13
    torch.manual_seed(999)  # scramble global RNG state: the checkpoint must carry what matters
    np.random.seed(999)
    second = train(parts_cfg, resume=True, progress=False, log=_quiet)
    assert second.step == 30

    a = full.model.state_dict()
    b = second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert second.tokens == full.tokens

    # The resumed run's log reads like the uninterrupted one, plus the line of the stop at 13;
    # only the train-loss mean of the interval cut by the stop (11..15) differs.
    def losses(run):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: (r["train_loss"], r["val_loss"]) for r in map(json.loads, lines)}

    resumed_log, full_log = losses(parts_cfg.run_dir), losses(full.run_dir)
    assert sorted(resumed_log) == sorted([*full_log, 13])
    for step, (train_loss, val_loss) in full_log.items():
        assert resumed_log[step][1] == val_loss
        if step != 15:
            assert resumed_log[step][0] == train_loss


def test_grad_accum_equals_bigger_batch_data_order(tiny_config):
    """1 process × 2 micro-batches sees the same data as 2 processes × 1 (see test_ddp)."""
    cfg = tiny_config.replace(train={"grad_accum": 2, "max_steps": 6}, eval={"interval": 3})
    result = train(cfg, progress=False, log=_quiet)
    assert result.tokens == 6 * 2 * 8 * 32


def test_nan_loss_stops_and_keeps_last_checkpoint(tiny_config, monkeypatch):
    real = LOSS_KERNELS["full"]
    calls = {"n": 0}

    def poisoned(hidden, weight, targets, **kwargs):
        calls["n"] += 1
        loss = real(hidden, weight, targets, **kwargs)
        return loss * float("nan") if calls["n"] > 12 + 2 else loss  # 12 steps + 1 eval (2 iters)

    # train and evaluate both take the loss from model(x, targets=y): the compute.loss kernel.
    monkeypatch.setitem(LOSS_KERNELS, "full", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 13"):
        train(tiny_config, progress=False, log=_quiet)
    ckpts = find_checkpoints(tiny_config.run_dir)
    assert [p.name for p in ckpts] == ["step_0000010.pt"]
    weights = read_checkpoint(ckpts[0])["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_time_budget_stops_with_checkpoint(tiny_config):
    result = train(tiny_config.replace(train={"max_seconds": 1e-9}), progress=False, log=_quiet)
    assert result.stopped == "time budget" and result.step == 1
    assert find_checkpoints(tiny_config.run_dir)[-1].name == "step_0000001.pt"
    # A spent budget is a planned end: the run evaluates and samples, like a finished one.
    assert result.val_loss is not None
    written = (tiny_config.run_dir / "sample.txt").read_text()
    assert result.sample and written.startswith(result.sample)


def test_refuses_to_clobber_and_to_resume_nothing(tiny_config):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config, resume=True, progress=False, log=_quiet)
    train(tiny_config.replace(train={"max_steps": 2}), progress=False, log=_quiet)
    with pytest.raises(ValueError, match="already holds checkpoints; pass --resume"):
        train(tiny_config, progress=False, log=_quiet)


def test_resume_with_other_model_config_is_refused(tiny_config):
    train(tiny_config.replace(train={"max_steps": 2}), progress=False, log=_quiet)
    with pytest.raises(ValueError, match="different \\[model\\] config"):
        train(tiny_config.replace(model={"d_model": 64}), resume=True, progress=False, log=_quiet)


def _pre_encoded(tmp_path, tiny_config, train_ids, val_ids, **data):
    np.save(tmp_path / "t.npy", train_ids)
    np.save(tmp_path / "v.npy", val_ids)
    return tiny_config.replace(
        data={
            "train_tokens": str(tmp_path / "t.npy"),
            "val_tokens": str(tmp_path / "v.npy"),
            **data,
        }
    )


def test_bad_input_messages(tmp_path, tiny_config):
    ids = (np.arange(5000) % 300).astype(np.uint16)
    cases = [
        (
            lambda: tiny_config.replace(data={"text": str(tmp_path / "nope.txt")}),
            FileNotFoundError,
            "text file not found",
        ),
        (
            lambda: tiny_config.replace(
                data={
                    "train_tokens": str(tmp_path / "no.npy"),
                    "val_tokens": str(tmp_path / "no.npy"),
                }
            ),
            FileNotFoundError,
            "token file not found",
        ),
        (
            lambda: _pre_encoded(tmp_path, tiny_config, ids.astype(np.float32), ids),
            ValueError,
            "token ids must be a 1-d array of unsigned ints",
        ),
        (
            lambda: _pre_encoded(tmp_path, tiny_config, ids, ids, dtype="uint32"),
            ValueError,
            "holds uint16 ids, but data.dtype says uint32",
        ),
        (
            lambda: _pre_encoded(tmp_path, tiny_config, ids + 1000, ids),
            ValueError,
            "token id 1000 >= model.vocab_size 300 at offset 0",
        ),
        (
            lambda: _pre_encoded(tmp_path, tiny_config, ids, ids[:20]),
            ValueError,
            "fewer than model.context_length",
        ),
        (
            lambda: tiny_config.replace(run={"root": str(tmp_path / "t.npy" / "sub")}),
            PermissionError,
            "cannot write to run directory",
        ),
        (
            lambda: tiny_config.replace(train={"batch_size": 0}),
            ValueError,
            "'train.batch_size' must be a finite number >= 1, got 0",
        ),
    ]
    for make_config, kind, message in cases:
        with pytest.raises(kind, match=message):
            train(make_config(), progress=False, log=_quiet)
    assert not find_checkpoints(tiny_config.run_dir)


def test_sigterm_saves_a_checkpoint_and_stops(tiny_config, monkeypatch):
    real = loop_module.get_batch
    calls = {"n": 0}

    def batch_then_sigterm(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # during step 7: the step completes, then the run stops
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "get_batch", batch_then_sigterm)
    previous = signal.getsignal(signal.SIGTERM)
    result = train(tiny_config, progress=False, log=_quiet)
    assert result.stopped == "interrupted" and result.step == 7
    assert find_checkpoints(tiny_config.run_dir)[-1].name == "step_0000007.pt"
    assert read_checkpoint(result.checkpoint)["iteration"] == 7
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers are restored
