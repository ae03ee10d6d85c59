"""import-hf against damaged and hostile weight files: pytorch_model.bin, sharded
model.safetensors.index.json, and safetensors headers.

Every refusal is one `error:` line naming the file or key, exit status 2, before anything is
written. The oracles: `safetensors` for the files it writes, and pickletools-free markers for
code that must never run.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packages.train.tests.hf_cases import one_error_line
from tinylm.train import import_hf, read_checkpoint
from tinylm.train.hf.cli import import_main
from tinylm.train.hf.files import load_hf_weights, load_safetensors, save_safetensors

FIXTURE_OK = HealthCheck.function_scoped_fixture  # tmp_path is only overwritten per example


# -- pytorch_model.bin: read with weights_only, hostile pickles refused ----------------------


class _Payload:
    """Unpickling this would create the marker file: it must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _to_bin(hf_dir: Path) -> dict[str, torch.Tensor]:
    """Replace model.safetensors by pytorch_model.bin (the older HF format); returns tensors."""
    tensors = load_safetensors(hf_dir / "model.safetensors")
    (hf_dir / "model.safetensors").unlink()
    return tensors


@pytest.mark.parametrize("protocol", ["torch.save", "pickle"])
def test_malicious_pytorch_model_bin_is_refused_and_never_runs(protocol, hf_dir, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    tensors = _to_bin(hf_dir)
    payload = {**tensors, "model.norm.weight": _Payload(marker)}
    if protocol == "torch.save":
        torch.save(payload, hf_dir / "pytorch_model.bin")
    else:
        (hf_dir / "pytorch_model.bin").write_bytes(pickle.dumps(payload, protocol=4))
    assert import_main([str(hf_dir), "--out", str(tmp_path / "imp")]) == 2
    line = one_error_line(capsys, "pytorch_model.bin", "refused for safety")
    assert "weights_only" not in line and "\x1b" not in line
    assert not marker.exists()
    assert not (tmp_path / "imp").exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage, not a pickle", b"PK\x03\x04 a torn zip", pickle.dumps([1, 2]), b"\x80\x02}q"],
    ids=["empty", "text", "torn zip", "a list", "torn pickle"],
)
def test_garbage_pytorch_model_bin_is_one_line_naming_it(content, hf_dir, tmp_path, capsys):
    _to_bin(hf_dir)
    (hf_dir / "pytorch_model.bin").write_bytes(content)
    assert import_main([str(hf_dir), "--out", str(tmp_path / "imp")]) == 2
    one_error_line(capsys, str(hf_dir / "pytorch_model.bin"))
    assert not (tmp_path / "imp").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[FIXTURE_OK])
@given(content=st.binary(max_size=300))
def test_any_bytes_as_pytorch_model_bin_fail_as_value_errors(content, tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(content)
    with pytest.raises(ValueError, match=r"pytorch_model\.bin"):
        load_hf_weights(tmp_path)


def test_a_tensor_only_pytorch_model_bin_imports_like_safetensors(hf_dir, tmp_path):
    import_hf(hf_dir, tmp_path / "from_safetensors")
    torch.save(_to_bin(hf_dir), hf_dir / "pytorch_model.bin")
    import_hf(hf_dir, tmp_path / "from_bin")
    a, b = (
        read_checkpoint(tmp_path / name / "checkpoints" / "step_0000000.pt")["model"]
        for name in ("from_safetensors", "from_bin")
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- model.safetensors.index.json: shards confined to the directory --------------------------


def _shard(hf_dir: Path, shard_of) -> None:
    """Split model.safetensors into shards named by `shard_of(i)` plus an index naming them."""
    tensors = load_safetensors(hf_dir / "model.safetensors")
    (hf_dir / "model.safetensors").unlink()
    names = sorted(tensors)
    weight_map = {}
    for i, half in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        target = shard_of(i)
        weight_map.update({name: target for name in half})
        path = hf_dir / target
        if not path.exists() and not path.is_symlink():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_safetensors({name: tensors[name] for name in half}, path)
    index = {"metadata": {}, "weight_map": weight_map}
    (hf_dir / "model.safetensors.index.json").write_text(json.dumps(index))


def test_sharded_weights_import_like_one_file(hf_dir, tmp_path):
    """Shards as plain files, in a subfolder, and as symlinks out of the directory (the
    Hugging Face cache links each file of a snapshot into its blobs/)."""
    import_hf(hf_dir, tmp_path / "single")
    tensors = load_safetensors(hf_dir / "model.safetensors")
    names = sorted(tensors)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    save_safetensors({n: tensors[n] for n in names[:5]}, blobs / "abc123")
    (hf_dir / "linked.safetensors").symlink_to(blobs / "abc123")
    (hf_dir / "sub").mkdir()
    save_safetensors({n: tensors[n] for n in names[5:]}, hf_dir / "sub" / "rest.safetensors")
    weight_map = {n: "linked.safetensors" for n in names[:5]}
    weight_map |= {n: "sub/rest.safetensors" for n in names[5:]}
    (hf_dir / "model.safetensors").unlink()
    (hf_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    import_hf(hf_dir, tmp_path / "sharded")
    a, b = (
        read_checkpoint(tmp_path / name / "checkpoints" / "step_0000000.pt")["model"]
        for name in ("single", "sharded")
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "shard_name", ["/dev/zero", "../outside.safetensors", "sub/../../outside.safetensors", ""]
)
def test_shard_names_outside_the_directory_are_refused(shard_name, hf_dir, tmp_path, capsys):
    """`/dev/zero` once read until memory ran out; `../x` read a file outside the directory."""
    outside = tmp_path / "outside.safetensors"
    save_safetensors(load_safetensors(hf_dir / "model.safetensors"), outside)  # would load
    _shard(hf_dir, lambda i: shard_name if i == 0 else "model-2.safetensors")
    assert import_main([str(hf_dir), "--out", str(tmp_path / "imp")]) == 2
    one_error_line(capsys, "model.safetensors.index.json", "inside")
    assert not (tmp_path / "imp").exists()


@pytest.mark.parametrize("kind", ["symlink to /dev/zero", "fifo", "directory"])
def test_shards_must_be_regular_files(kind, hf_dir, tmp_path, capsys):
    shard = hf_dir / "model-1.safetensors"
    if kind == "symlink to /dev/zero":
        shard.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(shard)  # opening it for reading would wait for a writer forever
    else:
        shard.mkdir()
    _shard(hf_dir, lambda i: f"model-{i + 1}.safetensors")
    assert import_main([str(hf_dir), "--out", str(tmp_path / "imp")]) == 2
    one_error_line(capsys, str(shard))


def _safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return len(encoded).to_bytes(8, "little") + encoded + data


def _entry(dtype="F32", shape=(1,), offsets=(0, 4)) -> dict:
    return {"w": {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_safetensors_bytes(_entry(shape=(2**20, 2**20), offsets=(0, 2**42))), "claims bytes"),
        (_safetensors_bytes(_entry(shape=(2, 2), offsets=(0, 8)), bytes(8)), "claims bytes"),
        (_safetensors_bytes(_entry(shape=(-1,)), bytes(4)), "integers >= 0"),
        (_safetensors_bytes(_entry(offsets=(8, 4)), bytes(8)), "claims bytes"),
        (_safetensors_bytes(_entry(dtype="Q7"), bytes(4)), "dtype"),
        ((2**62).to_bytes(8, "little") + b"{}", "header length"),
    ],
    ids=["huge claim", "size mismatch", "negative dim", "reversed range", "dtype", "header len"],
)
def test_safetensors_header_is_checked_against_the_file(raw, reason, tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=reason) as info:
        load_safetensors(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@settings(max_examples=80, deadline=None, suppress_health_check=[FIXTURE_OK])
@given(data=st.data())
def test_damaged_safetensors_load_or_fail_as_value_errors(data, tmp_path):
    """Any byte changed or the file cut anywhere: the tensors, or one ValueError naming it."""
    path = tmp_path / "w.safetensors"
    tensors = {"a": torch.arange(6.0).view(2, 3), "b": torch.ones(4, dtype=torch.int64)}
    save_safetensors(tensors, path)
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(0, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(0, len(raw)))]
    path.write_bytes(bytes(raw))
    try:
        tensors = load_safetensors(path)
    except ValueError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    else:
        assert all(isinstance(t, torch.Tensor) for t in tensors.values())
