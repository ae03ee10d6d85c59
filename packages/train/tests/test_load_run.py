"""`load_run`: which checkpoint it picks, the older formats it migrates, and its one-line errors.

Runs are copies of fixtures/legacy_run (see test_legacy_run.py), with checkpoints added beside
its step 6. `generate` and `export-hf` load through `load_run`, so their error lines are
checked here too: the same lines these commands printed before they shared it.
"""

from __future__ import annotations

import pickle
import re
import shutil
import tomllib
from pathlib import Path

import pytest
import torch

from tinylm.train import LoadedRun, load_run
from tinylm.train.cli.generate import main as generate_main
from tinylm.train.hf.cli import export_main
from tinylm.train.run.migrate import migrate_checkpoint, migrate_config

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_run"
STEP6 = "step_0000006.pt"


@pytest.fixture
def run(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "legacy"))


def _payload(run: Path) -> dict:
    return torch.load(run / "checkpoints" / STEP6, weights_only=True)


def _write(run: Path, name: str, payload: dict) -> Path:
    path = run / "checkpoints" / name
    torch.save(payload, path)
    return path


def _cli_errors(capsys, run: Path, tmp_path: Path) -> list[str]:
    """stderr of `generate` and of `export-hf` on `run`; each must exit 2."""
    commands = [
        (generate_main, ["--run", str(run), "--device", "cpu"]),
        (export_main, ["--run", str(run), "--out", str(tmp_path / "hf")]),
    ]
    errors = []
    for main, args in commands:
        status = main(args)
        errors.append(capsys.readouterr().err)
        assert status == 2, errors[-1]
    return errors


def test_picks_the_newest_checkpoint_or_the_given_one(run):
    newer = _payload(run)
    newer["model"] = {k: v + 1 for k, v in newer["model"].items()}
    newer["iteration"] = 9
    _write(run, "step_0000009.pt", newer)

    latest = load_run(run)
    assert isinstance(latest, LoadedRun) and latest.step == 9
    assert latest.checkpoint.name == "step_0000009.pt"
    weights = latest.model.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in newer["model"].items())

    chosen = load_run(run, checkpoint=run / "checkpoints" / STEP6)
    assert chosen.step == 6 and chosen.checkpoint == run / "checkpoints" / STEP6
    weights = chosen.model.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in _payload(run)["model"].items())


def test_a_torn_newest_checkpoint_is_skipped_and_said(run):
    (run / "checkpoints" / "step_0000009.pt").write_bytes(b"half a checkpoint")
    said = []
    loaded = load_run(run, log=said.append)
    assert loaded.step == 6
    assert len(said) == 1 and said[0].startswith("warning: skipped unreadable step_0000009.pt")


class _Payload:
    """Unpickling this would create the marker file: it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_refused_for_safety_stops_the_load(run, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    evil = run / "checkpoints" / "step_0000009.pt"
    evil.write_bytes(pickle.dumps({"model": _Payload(marker), "iteration": 9}, protocol=4))
    with pytest.raises(ValueError, match="refused for safety"):
        load_run(run)  # never skipped over to step 6: that is tampering, not a crash
    for err in _cli_errors(capsys, run, tmp_path):
        assert err.startswith(f"error: checkpoint {evil} holds Python objects other than tensors")
        assert "refused for safety" in err and err.count("\n") == 1
    assert not marker.exists()


def test_errors_for_no_run_and_no_checkpoint_are_the_commands_lines(tmp_path, capsys):
    missing = tmp_path / "none"
    with pytest.raises(
        FileNotFoundError, match=rf"^run directory not found: {re.escape(str(missing))}$"
    ):
        load_run(missing)
    for err in _cli_errors(capsys, missing, tmp_path):
        assert err == f"error: run directory not found: {missing}\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        FileNotFoundError, match=rf"^no checkpoint in {re.escape(str(empty))}/checkpoints$"
    ):
        load_run(empty)
    for err in _cli_errors(capsys, empty, tmp_path):
        assert err == f"error: no checkpoint in {empty / 'checkpoints'}\n"


def test_weights_that_do_not_fit_the_config_name_the_checkpoint(run):
    payload = _payload(run)
    payload["config"]["model"]["d_ff"] = 96
    path = _write(run, "step_0000009.pt", payload)
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(path))}: weights do not fit its config: size mismatch"
    ):
        load_run(run)


def test_older_formats_load(run):
    """Kernel keys under [model]/[train] (before [compute]) and compiled-model key prefixes."""
    payload = _payload(run)
    config = payload["config"]
    compute = config.pop("compute")
    config["model"].update(attention="naive", fused_qkv=compute["fused_qkv"])
    config["train"].update(compile=compute["compile"], dtype=compute["dtype"])
    payload["model"] = {f"_orig_mod.{k}": v for k, v in payload["model"].items()}
    _write(run, "step_0000009.pt", payload)
    loaded = load_run(run)
    assert loaded.config.compute.attention == "naive"
    expected = _payload(run)["model"]
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in expected.items())


def test_a_checkpoint_without_config_uses_config_toml(run):
    payload = _payload(run)
    del payload["config"]
    path = _write(run, "step_0000009.pt", payload)
    saved = tomllib.loads((run / "config.toml").read_text())
    assert load_run(run).config.model.to_dict() == saved["model"]
    (run / "config.toml").unlink()
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(path))} carries no config and .*config\.toml does not"
    ):
        load_run(run)


def test_no_tokenizer_is_one_line(run):
    shutil.rmtree(run / "tokenizer")
    with pytest.raises(FileNotFoundError, match=r"^no tokenizer "):
        load_run(run)


def test_migrate_config_moves_old_keys_and_an_explicit_compute_value_wins():
    old = {
        "model": {"d_model": 8, "attention": "naive", "fused_qkv": True},
        "train": {"max_steps": 3, "compile": True, "dtype": "float32"},
        "compute": {"attention": "sdpa"},
    }
    frozen = {section: dict(values) for section, values in old.items()}
    new = migrate_config(old)
    assert new == {
        "model": {"d_model": 8},
        "train": {"max_steps": 3},
        "compute": {"attention": "sdpa", "fused_qkv": True, "compile": True, "dtype": "float32"},
    }
    assert old == frozen  # the caller's dict is left as it was
    assert migrate_config(new) == new


def test_migrate_checkpoint_renames_the_cosine_length_and_drops_wrapper_prefixes():
    weight = torch.ones(2)
    payload = {
        "model": {"_orig_mod.module.w": weight, "b": weight},
        "iteration": 3,
        "scheduler": {"t": 3, "cosine_cycle_iters": 30, "warmup_iters": 2},
    }
    new = migrate_checkpoint(payload)
    assert new["model"].keys() == {"w", "b"}
    assert new["scheduler"] == {
        "t": 3,
        "cosine_cycle_iters": 30,
        "warmup_iters": 2,
        "total_iters": 30,
    }
    today = {"model": {}, "iteration": 0, "scheduler": {"t": 0, "total_iters": 9}}
    assert migrate_checkpoint(today) == today
