"""Fault injection at CI size (`python -m bench.faults` runs the long version): a run killed at
random and resumed ends bit-identical; a checkpoint killed mid-write still loads; a malicious pickle
is refused without running; a full disk during a save keeps the previous checkpoint; a second run in
the same directory is refused; a corrupt newest checkpoint falls back to an older one.
"""

import errno
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import faults
from tinylm.train import RunLock, find_checkpoints, load_config, read_checkpoint, run_cli, train

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tokens")
    faults.make_tokens(directory)
    return directory


def _config(data: Path, root: Path, name: str = "run", steps: int = 8, interval: int = 4):
    argv = faults.train_argv(data, root, name, steps, interval)
    keys = dict(zip(argv[0:-1:2], argv[1::2], strict=False))
    overrides = {k[2:]: v for k, v in keys.items() if k.startswith("--") and "." in k}
    return load_config(overrides=overrides)


def _quiet(*args, **kwargs):
    pass


def test_sigkill_then_resume_is_bit_identical(data, tmp_path):
    identical, total = faults.kill_and_resume(
        data, tmp_path / "runs", kills=2, steps=12, interval=3, in_process=True
    )
    assert (identical, total) == (2, 2)


def test_kill_during_checkpoint_writes_leaves_a_loadable_target(tmp_path):
    unloadable, total = faults.kill_mid_write(tmp_path, kills=3)
    assert (unloadable, total) == (0, 3)


class _Payload:
    """Unpickling this would create the marker file: it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("protocol", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, protocol, capsys):
    marker = tmp_path / "PWNED"
    run = tmp_path / "runs" / "evil"
    (run / "checkpoints").mkdir(parents=True)
    path = run / "checkpoints" / "step_0000010.pt"
    payload = {"model": _Payload(marker), "iteration": 10}
    if protocol == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(ValueError, match="holds Python objects other than tensors") as info:
        read_checkpoint(path)
    message = str(info.value)
    assert "refused for safety" in message and "weights_only" not in message
    assert "\x1b" not in message
    # Through generate, as a user meets it: one plain line, status 2, the payload never ran.
    cmd = [sys.executable, "-m", "tinylm.train.cli.generate", "--run", str(run), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    err = proc.stderr
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "weights_only" not in err and "\x1b" not in err
    assert not marker.exists()


def test_disk_full_during_save_keeps_previous_checkpoint(data, tmp_path, monkeypatch, capsys):
    cfg = _config(data, tmp_path / "runs", steps=8, interval=4)
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        if obj.get("iteration") == 8:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)  # what save_checkpoint calls
    assert run_cli(lambda: train(cfg, progress=False, log=_quiet)) == 1  # what train-lm runs
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "No space left on device" in err and "step_0000004.pt is untouched" in err
    ckpts = find_checkpoints(cfg.run_dir)
    assert [p.name for p in ckpts] == ["step_0000004.pt"]
    assert read_checkpoint(ckpts[0])["iteration"] == 4
    assert not list((cfg.run_dir / "checkpoints").glob("*.tmp"))
    assert '"event": "failed"' in (cfg.run_dir / "metrics.jsonl").read_text()


def test_concurrent_run_is_refused(data, tmp_path, capsys):
    cfg = _config(data, tmp_path / "runs")
    cfg.run_dir.mkdir(parents=True)
    holder = RunLock(cfg.run_dir).acquire()  # another run holds the directory
    try:
        assert run_cli(lambda: train(cfg, progress=False, log=_quiet)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: run directory") and "is in use by pid" in err
        assert len(err.splitlines()) == 1
        assert not find_checkpoints(cfg.run_dir)
    finally:
        holder.release()
    # Released (or its process died): the directory is free again.
    assert train(cfg, progress=False, log=_quiet).step == 8


def test_corrupt_newest_checkpoint_falls_back(data, tmp_path):
    cfg = _config(data, tmp_path / "runs", steps=8, interval=4)
    train(cfg.replace(run={"keep_checkpoints": 5}), progress=False, log=_quiet)
    newest = find_checkpoints(cfg.run_dir)[-1]
    assert newest.name == "step_0000008.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a failing disk
    stale = cfg.run_dir / "checkpoints" / "step_0000012.pt.tmp"
    stale.write_bytes(b"half a checkpoint")  # what a kill mid-write leaves
    lines = []
    result = train(
        cfg.replace(train={"max_steps": 12}), resume=True, progress=False, log=lines.append
    )
    assert any("skipped unreadable step_0000008.pt" in line for line in lines)
    assert any("resuming from" in line and "step_0000004.pt" in line for line in lines)
    assert result.step == 12 and not stale.exists()
    assert read_checkpoint(find_checkpoints(cfg.run_dir)[-1])["iteration"] == 12
