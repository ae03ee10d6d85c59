"""import-hf / export-hf against damaged, hostile and failing inputs.

Every refusal is one `error:` line naming the file or key, exit status 2, before anything is
allocated from the config or written; a failed write leaves no half directory; written files
get the umask's mode. The oracles: `safetensors` / `transformers` for the files they write,
pickletools-free markers for code that must never run, and `open()` for the umask.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.bpe import Tokenizer, train_bpe
from tinylm.nn import ModelConfig, TransformerLM
from tinylm.train import TrainConfig, export_hf, import_hf, read_checkpoint, save_checkpoint
from tinylm.train.config import DataConfig
from tinylm.train.data.text_files import prepare_text_files
from tinylm.train.hf import cli as hf_cli
from tinylm.train.hf.cli import export_main, import_main
from tinylm.train.hf.convert import llama_weight_shapes, model_config_from_llama
from tinylm.train.hf.files import load_hf_weights, load_safetensors, save_safetensors

EOT = "<|endoftext|>"
FIXTURE_OK = HealthCheck.function_scoped_fixture  # tmp_path is only overwritten per example


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, corpus_text) -> Tokenizer:
    path = tmp_path_factory.mktemp("bpe") / "corpus.txt"
    path.write_text(corpus_text[:20_000], encoding="utf-8")
    vocab, merges = train_bpe(path, 300, [EOT], num_workers=1)
    return Tokenizer(vocab, merges, [EOT])


def make_run(root: Path, tokenizer: Tokenizer) -> Path:
    """A run directory as train-lm leaves it (d_model 32, d_ff 48: no square MLP weights)."""
    model = {"context_length": 32, "d_model": 32, "num_layers": 2, "num_heads": 4, "d_ff": 48}
    cfg = TrainConfig.from_dict(
        {
            "data": {"vocab_size": len(tokenizer), "special_tokens": [EOT]},
            "model": model,
            "run": {"root": str(root), "name": "run"},
        }
    )
    torch.manual_seed(0)
    net = TransformerLM(cfg.model)
    run = cfg.run_dir
    (run / "checkpoints").mkdir(parents=True)
    (run / "tokenizer").mkdir()
    tokenizer.save(run / "tokenizer" / "vocab.json", run / "tokenizer" / "merges.txt")
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    path = run / "checkpoints" / "step_0000007.pt"
    save_checkpoint(net, optimizer, 7, path, config=cfg.to_dict())
    cfg.save(run / "config.toml")
    return run


@pytest.fixture
def hf_dir(tokenizer, tmp_path) -> Path:
    return export_hf(make_run(tmp_path / "src", tokenizer), tmp_path / "hf")


def one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def leftovers(directory: Path) -> list[str]:
    """Temporary names the atomic writers leave behind if they fail to clean up."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


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


# -- config.json: validated, and the weights checked against it, before any allocation -------


@pytest.fixture
def no_model_allocation(monkeypatch):
    """import-hf must refuse before it builds a model sized by config.json."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built before config.json was checked")

    monkeypatch.setattr(hf_cli, "build_model_and_optimizer", refuse)


def _edit_config(hf_dir: Path, **change) -> None:
    config = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**config, **change}))


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"vocab_size": 2**31}, ["model.embed_tokens.weight", "vocab_size x hidden_size"]),
        ({"intermediate_size": 2**40}, ["mlp.gate_proj.weight", "intermediate_size"]),
        ({"num_hidden_layers": 3}, ["the weights lack 'model.layers.2."]),
        ({"hidden_size": 2**40, "head_dim": None}, ["embed_tokens", "[300, 32]"]),
        ({"hidden_size": 2**40}, ["head_dim is 8 but hidden_size / num_attention_heads"]),
        ({"hidden_size": -64}, ["hidden_size is -64; it must be a positive integer"]),
        ({"hidden_size": 0}, ["hidden_size is 0; it must be a positive integer"]),
        ({"hidden_size": "32"}, ["hidden_size is '32'; it must be a positive integer"]),
        ({"num_attention_heads": True}, ["num_attention_heads is True"]),
        ({"hidden_size": 30, "head_dim": None}, ["not a multiple of num_attention_heads"]),
        ({"vocab_size": None}, ["vocab_size is None"]),
        ({"max_position_embeddings": 2**40}, ["max_position_embeddings", "at most"]),
        ({"rms_norm_eps": "1e-5"}, ["rms_norm_eps is '1e-5'"]),
        ({"rope_scaling": [1]}, ["rope_scaling is [1]"]),
    ],
)
def test_bad_sizes_are_one_line_before_any_allocation(
    change, needles, hf_dir, tmp_path, capsys, no_model_allocation
):
    _edit_config(hf_dir, **change)
    assert import_main([str(hf_dir), "--out", str(tmp_path / "imp")]) == 2
    one_error_line(capsys, *needles)
    assert not (tmp_path / "imp").exists() and leftovers(tmp_path) == []


def test_missing_config_key_is_one_line(hf_dir, tmp_path, capsys):
    config = json.loads((hf_dir / "config.json").read_text())
    del config["num_attention_heads"]
    (hf_dir / "config.json").write_text(json.dumps(config))
    assert import_main([str(hf_dir), "--out", str(tmp_path / "imp")]) == 2
    one_error_line(capsys, "config.json: num_attention_heads is missing")


def test_a_permuted_tensor_is_named_in_full_and_nothing_is_left(
    hf_dir, tmp_path, capsys, no_model_allocation
):
    """The line once stopped before the reason and checkpoints/ data/ tokenizer/ stayed."""
    tensors = load_safetensors(hf_dir / "model.safetensors")
    key = "model.layers.1.mlp.gate_proj.weight"
    tensors[key] = tensors[key].t().contiguous()  # [48, 32] -> [32, 48]
    save_safetensors(tensors, hf_dir / "model.safetensors")
    out = tmp_path / "runs" / "imp"
    out.parent.mkdir()
    assert import_main([str(hf_dir), "--out", str(out)]) == 2
    one_error_line(capsys, key, "[32, 48]", "intermediate_size x hidden_size is [48, 32]")
    assert not out.exists() and leftovers(tmp_path / "runs") == []


def test_permuted_kv_heads_under_gqa_are_refused(hf_dir, tmp_path, capsys):
    """A k_proj of the wrong height (e.g. num_key_value_heads changed) fails before einops does."""
    _edit_config(hf_dir, num_key_value_heads=2)  # the weights have 4 kv heads
    assert import_main([str(hf_dir), "--out", str(tmp_path / "imp")]) == 2
    one_error_line(capsys, "self_attn.k_proj.weight", "num_key_value_heads*head_dim")


@pytest.mark.parametrize(("heads", "kv_heads", "tie"), [(4, 4, False), (4, 2, True), (6, 1, False)])
def test_weight_shapes_match_transformers(heads, kv_heads, tie):
    """The arithmetic that validates weights is what LlamaForCausalLM itself allocates."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=301,
        hidden_size=heads * 6,
        intermediate_size=50,
        num_hidden_layers=3,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tie,
    )
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    fields, kv = model_config_from_llama(config.to_dict(), rms_norm_eps=1e-5)
    expected = llama_weight_shapes(ModelConfig.from_dict(fields), kv)
    theirs = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if tie:
        theirs.setdefault("lm_head.weight", theirs["model.embed_tokens.weight"])
    assert theirs == {k: shape for k, (shape, _) in expected.items()}


# -- writes: atomic, naming the path, with the umask's modes ---------------------------------


def test_import_checkpoint_write_failure_names_the_path(hf_dir, tmp_path, capsys, monkeypatch):
    """A full disk during the checkpoint write once printed `[enforce fail at inline_container.cc]`
    and left a half run directory behind."""
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "runs" / "imp"
    assert import_main([str(hf_dir), "--out", str(out)]) == 1
    one_error_line(capsys, f"could not write {out / 'checkpoints' / 'step_0000000.pt'}")
    assert not out.exists() and leftovers(tmp_path / "runs") == []
    monkeypatch.setattr(torch, "save", real_save)
    assert import_main([str(hf_dir), "--out", str(out)]) == 0  # the rerun works


def test_import_checkpoint_write_cut_short_by_the_os(hf_dir, tmp_path):
    """The real failure, not a mock: a file size limit (EFBIG, as a full disk gives ENOSPC) cuts
    the checkpoint write, which torch reports as `[enforce fail at inline_container.cc]`."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))  # tokenizer fits, weights not

    out = tmp_path / "runs" / "imp"
    code = "import sys; from tinylm.train.hf.cli import import_main; sys.exit(import_main())"
    argv = [sys.executable, "-c", code, str(hf_dir), "--out", str(out)]
    proc = subprocess.run(
        argv, preexec_fn=limit_file_size, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not write "), proc.stderr
    assert str(out / "checkpoints" / "step_0000000.pt") in lines[0]
    assert not out.exists() and leftovers(tmp_path / "runs") == []


def test_import_into_a_non_empty_directory_is_refused(hf_dir, tmp_path, capsys):
    out = tmp_path / "imp"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert import_main([str(hf_dir), "--out", str(out)]) == 2
    one_error_line(capsys, "not an empty directory")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (out / "notes.txt").unlink()
    assert import_main([str(hf_dir), "--out", str(out)]) == 0  # an empty one is fine
    assert (out / "config.toml").is_file()


@pytest.mark.parametrize("force", [False, True])
def test_failed_export_leaves_nothing_and_the_rerun_works(
    force, tokenizer, tmp_path, capsys, monkeypatch
):
    run = make_run(tmp_path / "src", tokenizer)
    out = tmp_path / "hf"
    if force:
        out.mkdir()
        (out / "README.md").write_text("mine")
        (out / "config.json").write_text("{}")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hf_cli, "save_safetensors", full_disk)
    argv = ["--run", str(run), "--out", str(out)] + (["--force"] if force else [])
    assert export_main(argv) == 1
    one_error_line(capsys, f"could not write {out}", "No space left on device")
    if force:
        assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json"]
        assert (out / "config.json").read_text() == "{}"
    else:
        assert not out.exists()
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    assert export_main(argv) == 0  # no --force needed after a failure
    assert (out / "model.safetensors").is_file()
    assert (out / "README.md").exists() == force


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_exported_and_imported_files_honour_the_umask(umask, tokenizer, tmp_path):
    """A served HF directory must be readable by others: files were 0600 whatever the umask."""
    run = make_run(tmp_path / "src", tokenizer)
    old = os.umask(umask)
    try:
        out = export_hf(run, tmp_path / "hf")
        import_hf(out, tmp_path / "imported")
        (tmp_path / "plain").write_text("oracle")
        (tmp_path / "plain_dir").mkdir()
    finally:
        os.umask(old)
    file_mode = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    dir_mode = stat.S_IMODE((tmp_path / "plain_dir").stat().st_mode)
    assert file_mode == 0o666 & ~umask and dir_mode == 0o777 & ~umask
    for root in (out, tmp_path / "imported"):
        modes = _modes(root)
        assert modes == {k: dir_mode if (root / k).is_dir() else file_mode for k in modes}
        assert stat.S_IMODE(root.stat().st_mode) == dir_mode
    assert "tokenizer.json" in _modes(out)
    assert "checkpoints/step_0000000.pt" in _modes(tmp_path / "imported")


def test_the_data_cache_honours_the_umask(tmp_path, corpus_text):
    """train-lm's token cache goes through bpe's writers (tokenizer files, encoded .npy)."""
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text(corpus_text[:12_000], encoding="utf-8")
    val.write_text(corpus_text[12_000:14_000], encoding="utf-8")
    old = os.umask(0o022)
    try:
        data = DataConfig(vocab_size=270, num_workers=1)
        prepare_text_files(train, val, data, tmp_path / "cache", log=lambda *a: None)
    finally:
        os.umask(old)
    modes = _modes(tmp_path / "cache")
    assert {"train.npy", "val.npy", "tokenizer/vocab.json", "tokenizer/merges.txt"} <= set(modes)
    assert modes == {k: 0o755 if (tmp_path / "cache" / k).is_dir() else 0o644 for k in modes}


@pytest.mark.parametrize("main", [export_main, import_main])
def test_help_shows_defaults(main, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    if main is export_main:
        assert "(default: the run's newest)" in text
