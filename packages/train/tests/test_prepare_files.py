"""prepare_text_files: train + validation text files, streamed; data.text + data.val_text."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinylm.train.data.text_files as prepare_files_module
from tinylm.train import (
    DataConfig,
    file_fingerprint,
    load_tokenizer,
    prepare_data,
    prepare_text_files,
)
from tinylm.train.data.text_files import _write_head, utf8_prefix

EOT = "<|endoftext|>"


def _quiet(*args, **kwargs):
    pass


@settings(deadline=None)  # no per-example time limit: a loaded CI box must not fail it
@given(st.text(), st.integers(0, 400))
def test_utf8_prefix_drops_only_a_cut_character(text, cut):
    data = text.encode("utf-8")[:cut]
    keep = utf8_prefix(data)
    assert len(data) - 3 <= keep <= len(data)
    prefix = data[:keep].decode("utf-8")  # valid UTF-8 ...
    # ... and the longest such prefix: the dropped bytes are the start of one character.
    assert text.startswith(prefix) and len(prefix.encode()) == keep
    assert keep == len(data) or keep + len(text[len(prefix)].encode()) > len(data)


def test_write_head_cuts_at_the_last_whole_document(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text(f"one{EOT}two two{EOT}three", encoding="utf-8")
    dst = tmp_path / "head.txt"
    _write_head(src, dst, 30, EOT)
    assert dst.read_text() == f"one{EOT}"
    _write_head(src, dst, 1000, EOT)
    assert dst.read_text() == f"one{EOT}two two{EOT}"
    src.write_text("line one\nline twö", encoding="utf-8")
    _write_head(src, dst, 15, EOT)
    assert dst.read_text() == "line one\n"
    src.write_text("añb", encoding="utf-8")  # ñ is 2 bytes: a 2-byte head cuts it
    _write_head(src, dst, 2, EOT)
    assert dst.read_bytes() == b"a"


def test_fingerprint_sees_size_and_edges(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"x" * 3_000_000)
    before = file_fingerprint(path)
    path.write_bytes(b"x" * 2_999_999 + b"y")  # same size, last byte changed
    assert file_fingerprint(path) != before
    path.write_bytes(b"x" * 3_000_000)
    assert file_fingerprint(path) == before


def _two_files(tmp_path, corpus_text):
    docs = corpus_text.split(EOT)
    train_file, val_file = tmp_path / "train.txt", tmp_path / "valid.txt"
    train_file.write_text(EOT.join(docs[:-20]) + EOT, encoding="utf-8")
    val_file.write_text(EOT.join(docs[-20:]), encoding="utf-8")
    return train_file, val_file


def test_prepare_hands_back_the_tokenizer_it_trained_or_loaded(tmp_path, monkeypatch):
    """`PreparedData.tokenizer` is the BPE just trained (no save-and-reload), or the cached one
    loaded once; both encode like the files on disk."""
    train_file, val_file = tmp_path / "train.txt", tmp_path / "val.txt"
    train_file.write_text(f"the cat sat{EOT}on the mat{EOT}" * 20, encoding="utf-8")
    val_file.write_text(f"the cat{EOT}", encoding="utf-8")
    data = DataConfig(vocab_size=270)
    loads = []
    real = prepare_files_module.load_tokenizer
    monkeypatch.setattr(
        prepare_files_module, "load_tokenizer", lambda *a: loads.append(a) or real(*a)
    )
    fresh = prepare_text_files(train_file, val_file, data, tmp_path / "data", log=_quiet)
    assert loads == []  # trained in memory, not reloaded from its own files
    assert not fresh.steps["tokenizer"]["cached"] and not fresh.steps["val"]["cached"]
    cached = prepare_text_files(train_file, val_file, data, tmp_path / "data", log=_quiet)
    assert len(loads) == 1 and all(step["cached"] for step in cached.steps.values())
    on_disk = load_tokenizer(fresh.tokenizer_dir, data.special_tokens)
    text = f"the mat sat on the cat{EOT}"
    assert fresh.tokenizer.encode(text) == cached.tokenizer.encode(text) == on_disk.encode(text)
    assert cached == fresh  # the same files (steps and tokenizer are not compared)


def test_prepare_data_with_val_text_encodes_each_file_whole(tmp_path, corpus_text, monkeypatch):
    train_file, val_file = _two_files(tmp_path, corpus_text)
    # text_bytes and val_fraction are for a single text: here both files are used whole.
    cfg = DataConfig(
        text=str(train_file), val_text=str(val_file), vocab_size=300, text_bytes=1000, num_workers=1
    )
    data = prepare_data(cfg, tmp_path / "cache", log=_quiet)
    assert data.tokenizer_dir.parent.parent == tmp_path / "cache"
    assert data.tokenizer_dir.parent.name.startswith("train+valid-v300-")
    tok = load_tokenizer(data.tokenizer_dir)
    for path, text_file in ((data.train_path, train_file), (data.val_path, val_file)):
        assert tok.decode(np.load(path).tolist()) == text_file.read_text(encoding="utf-8")

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt despite the cache")

    monkeypatch.setattr(prepare_files_module, "train_bpe", fail)
    assert prepare_data(cfg, tmp_path / "cache", log=_quiet) == data
    with pytest.raises(ValueError, match=r"needs data\.text"):
        prepare_data(DataConfig(val_text=str(val_file)), tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match=r"text file not found: .*\(data.val_text\)"):
        prepare_data(
            DataConfig(text=str(train_file), val_text=str(tmp_path / "no.txt")), tmp_path / "c"
        )


def test_train_lm_trains_from_two_files(tmp_path, tiny_config, corpus_text, capsys):
    """`train-lm --data.text train.txt --data.val_text valid.txt`: the validation loss is on
    the second file's tokens, and the run's tokenizer is the one trained on the first."""
    from tinylm.train.cli.train_lm import main as train_main

    train_file, val_file = _two_files(tmp_path, corpus_text)
    config_file = tmp_path / "tiny.toml"
    tiny_config.replace(
        train={"max_steps": 4}, eval={"interval": 2}, sample={"max_new_tokens": 0}
    ).save(config_file)
    argv = ["--config", str(config_file), "--no-progress", "--data.text", str(train_file)]
    assert train_main([*argv, "--data.val_text", str(val_file)]) == 0
    assert "done: step 4" in capsys.readouterr().out
    run_tok = load_tokenizer(tiny_config.run_dir / "tokenizer")
    (entry,) = (tmp_path / "runs" / "_data").iterdir()
    assert entry.name.startswith("train+valid-")
    val_ids = np.load(entry / "val.npy")
    assert run_tok.decode(val_ids.tolist()) == val_file.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match=r"data\.val_text needs data\.text"):
        tiny_config.replace(data={"text": "", "val_text": str(val_file)})
