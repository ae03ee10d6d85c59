"""import-hf / export-hf against a hostile config.json and failing writes.

Every refusal is one `error:` line naming the file or key, exit status 2, before anything is
allocated from the config or written; a failed write leaves no half directory; written files
get the umask's mode. The oracles: `transformers` for the weight shapes a config means, and
`open()` for the umask. (Damaged weight files: test_hf_files_inputs.py.)
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from packages.train.tests.hf_cases import leftovers, make_run, one_error_line
from tinylm.nn import ModelConfig
from tinylm.train import export_hf, import_hf
from tinylm.train.config import DataConfig
from tinylm.train.data.text_files import prepare_text_files
from tinylm.train.hf import cli as hf_cli
from tinylm.train.hf.cli import export_main, import_main
from tinylm.train.hf.convert import llama_weight_shapes, model_config_from_llama
from tinylm.train.hf.files import load_safetensors, save_safetensors

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
