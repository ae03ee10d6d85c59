"""Checkpoint round trips, atomic writes, corrupt files, RNG states."""

import io
import random

import numpy as np
import pytest
import torch

from tinylm.optim import AdamW, CosineSchedule
from tinylm.train import (
    capture_rng_state,
    load_checkpoint,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = AdamW(model.parameters(), lr=1e-2)
    sched = CosineSchedule(opt, 1e-2, 1e-3, 3, 20)
    return model, opt, sched


def _steps(model, opt, sched, n, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        loss = model(torch.randn(5, 4, generator=gen)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("as_file", [False, True])
def test_round_trip_continues_identically(tmp_path, as_file):
    model, opt, sched = _setup()
    _steps(model, opt, sched, 7, seed=1)
    target = io.BytesIO() if as_file else tmp_path / "ckpt.pt"
    save_checkpoint(model, opt, 7, target, scheduler=sched, config={"a": 1}, data={"tokens": 70})
    if as_file:
        target.seek(0)

    model2, opt2, sched2 = _setup(seed=99)
    assert load_checkpoint(target, model2, opt2, scheduler=sched2) == 7
    assert sched2.t == 7 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    _steps(model, opt, sched, 5, seed=2)
    _steps(model2, opt2, sched2, 5, seed=2)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_payload_is_weights_only_and_plain(tmp_path):
    model, opt, sched = _setup()
    _steps(model, opt, sched, 2, seed=1)
    path = tmp_path / "c.pt"
    save_checkpoint(model, opt, 2, path, scheduler=sched, config={"model": {"d": 4}})
    payload = torch.load(path, weights_only=True)  # the oracle: no arbitrary unpickling needed
    assert payload["iteration"] == 2
    assert payload["config"] == {"model": {"d": 4}}
    assert set(payload["rng"]) >= {"python", "numpy", "torch"}
    assert payload["scheduler"]["t"] == 2
    assert read_checkpoint(path)["iteration"] == 2


def test_compiled_and_ddp_prefixes_are_stripped(tmp_path):
    model, opt, _ = _setup()

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    save_checkpoint(Wrapper(model), opt, 0, tmp_path / "c.pt")
    keys = set(torch.load(tmp_path / "c.pt", weights_only=True)["model"])
    assert keys == set(model.state_dict())
    fresh, _, _ = _setup(seed=5)
    load_checkpoint(tmp_path / "c.pt", Wrapper(fresh))  # loads into the wrapped module too
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True)
    )


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    model, opt, _ = _setup()
    path = tmp_path / "c.pt"
    save_checkpoint(model, opt, 1, path)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, opt, 2, path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_truncated_or_corrupt_checkpoint_raises_clear_error(tmp_path):
    model, opt, _ = _setup()
    path = tmp_path / "c.pt"
    save_checkpoint(model, opt, 1, path)
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    for name in ("trunc.pt", "junk.pt"):
        with pytest.raises(ValueError, match="corrupt or truncated"):
            load_checkpoint(tmp_path / name, model, opt)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt", model, opt)
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a tinylm checkpoint"):
        load_checkpoint(tmp_path / "other.pt", model, opt)


def test_mismatched_model_raises(tmp_path):
    model, opt, _ = _setup()
    save_checkpoint(model, opt, 1, tmp_path / "c.pt")
    other = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="do not fit"):
        load_checkpoint(tmp_path / "c.pt", other)


def test_rng_states_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = capture_rng_state()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_load_restores_rng_when_asked(tmp_path):
    model, opt, _ = _setup()
    torch.manual_seed(11)
    save_checkpoint(model, opt, 1, tmp_path / "c.pt")
    expected = torch.rand(3)
    torch.manual_seed(12345)
    load_checkpoint(tmp_path / "c.pt", model, opt, restore_rng=True)
    assert torch.equal(torch.rand(3), expected)


def test_extra_name_collision_rejected(tmp_path):
    model, opt, _ = _setup()
    with pytest.raises(ValueError, match="collides"):
        save_checkpoint(model, opt, 1, tmp_path / "c.pt", rng=1)
