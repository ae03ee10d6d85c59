"""prepare_data: split, tokenizer training, encoding, caching."""

import errno
import json
import os

import numpy as np
import pytest

import tinylm.train.data.prepare as prepare_module
from tinylm.bpe import Tokenizer
from tinylm.train import DataConfig, load_tokenizer, prepare_data, run_cli


def _config(text, **kw):
    return DataConfig(text=str(text), text_bytes=0, vocab_size=300, tokenizer_bytes=0, **kw)


def test_prepare_builds_consistent_files(tmp_path, corpus_file, corpus_text):
    data = prepare_data(_config(corpus_file), tmp_path / "cache", log=lambda *a: None)
    train_ids, val_ids = np.load(data.train_path), np.load(data.val_path)
    assert train_ids.dtype == np.uint16 and len(val_ids) > 0
    assert len(val_ids) < 0.2 * len(train_ids)  # about val_fraction of the documents
    tok = load_tokenizer(data.tokenizer_dir)
    assert len(tok.encode("hello")) >= 1
    train_text = (data.tokenizer_dir / "train.txt").read_text()
    val_text = (data.tokenizer_dir / "val.txt").read_text()
    assert train_text + val_text == corpus_text  # a split, nothing lost or duplicated
    assert tok.decode(train_ids.tolist()) == train_text
    assert max(train_ids.max(), val_ids.max()) < 300
    meta = json.loads((data.tokenizer_dir / "meta.json").read_text())
    assert meta["train_tokens"] == len(train_ids)


def test_second_call_is_a_cache_hit(tmp_path, corpus_file, monkeypatch):
    cfg = _config(corpus_file)
    first = prepare_data(cfg, tmp_path, log=lambda *a: None)

    def fail(*args, **kwargs):
        raise AssertionError("tokenizer retrained despite the cache")

    monkeypatch.setattr(prepare_module, "train_bpe", fail)
    assert prepare_data(cfg, tmp_path, log=lambda *a: None) == first
    # A different vocabulary is a different cache entry.
    with pytest.raises(AssertionError, match="retrained"):
        prepare_data(_config(corpus_file, val_fraction=0.1), tmp_path, log=lambda *a: None)


def test_text_bytes_limits_the_slice(tmp_path, corpus_file):
    cfg = DataConfig(text=str(corpus_file), text_bytes=10_000, vocab_size=300, tokenizer_bytes=5000)
    data = prepare_data(cfg, tmp_path, log=lambda *a: None)
    total = len((data.tokenizer_dir / "train.txt").read_bytes()) + len(
        (data.tokenizer_dir / "val.txt").read_bytes()
    )
    assert total <= 10_000


def test_pre_encoded_files(tmp_path):
    np.save(tmp_path / "t.npy", np.arange(100, dtype=np.uint16))
    np.save(tmp_path / "v.npy", np.arange(50, dtype=np.uint16))
    cfg = DataConfig(train_tokens=str(tmp_path / "t.npy"), val_tokens=str(tmp_path / "v.npy"))
    data = prepare_data(cfg, tmp_path / "cache")
    assert data.train_path == tmp_path / "t.npy" and data.tokenizer_dir is None
    with pytest.raises(ValueError, match="set both"):
        prepare_data(DataConfig(train_tokens=str(tmp_path / "t.npy")), tmp_path)
    with pytest.raises(FileNotFoundError, match="token file not found"):
        prepare_data(DataConfig(train_tokens="x.npy", val_tokens=str(tmp_path / "v.npy")), tmp_path)


def test_missing_text_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="text file not found"):
        prepare_data(_config(tmp_path / "missing.txt"), tmp_path)


def test_tokenizer_is_the_bpe_one(tmp_path, corpus_file):
    data = prepare_data(_config(corpus_file), tmp_path, log=lambda *a: None)
    assert isinstance(load_tokenizer(data.tokenizer_dir), Tokenizer)
    with pytest.raises(FileNotFoundError, match=r"tokenizer file not found"):
        load_tokenizer(tmp_path / "nowhere")


def test_run_setup_uses_the_tokenizer_prepare_data_trained(tiny_config, monkeypatch):
    """The tokenizer trained by prepare_data reaches the run in memory; only a cache hit (no
    tokenizer built in that call) loads it from disk."""
    import tinylm.train.trainer.setup as setup_module
    from tinylm.train.runtime import Distributed

    loads = []
    real = setup_module.load_tokenizer
    monkeypatch.setattr(setup_module, "load_tokenizer", lambda *a: loads.append(a) or real(*a))
    m = tiny_config.model
    sizes = dict(vocab_size=m.vocab_size, context_length=m.context_length)
    root = tiny_config.run.root
    fresh = setup_module.load_run_data(
        tiny_config.data, run_root=root, **sizes, dist=Distributed(), log=lambda *a: None
    )
    assert loads == [] and isinstance(fresh.tokenizer, Tokenizer)
    cached = setup_module.load_run_data(
        tiny_config.data, run_root=root, **sizes, dist=Distributed(), log=lambda *a: None
    )
    assert len(loads) == 1
    text = "Once upon a time<|endoftext|>"
    assert fresh.tokenizer.encode(text) == cached.tokenizer.encode(text)


def _two_files(tmp_path, corpus_text):
    train, val = tmp_path / "train.txt", tmp_path / "valid.txt"
    train.write_text(corpus_text[:30_000], encoding="utf-8")
    val.write_text(corpus_text[30_000:], encoding="utf-8")
    return DataConfig(
        text=str(train), val_text=str(val), vocab_size=300, tokenizer_bytes=0, num_workers=1
    )


@pytest.fixture(params=["one file", "two files"])
def text_config(request, tmp_path, corpus_file, corpus_text):
    if request.param == "one file":
        return _config(corpus_file, num_workers=1)
    return _two_files(tmp_path, corpus_text)


def _cli(body, capsys):
    status = run_cli(body)
    err = capsys.readouterr().err
    return status, err


@pytest.mark.parametrize("blocked", ["cache_dir", "a parent"])
def test_cache_dir_that_is_a_file_is_bad_input_naming_it(tmp_path, text_config, capsys, blocked):
    """data.cache_dir naming a file raised NotADirectoryError/FileExistsError (exit 1)."""
    blocker = tmp_path / "cache_is_a_file"
    blocker.write_text("x")
    root = blocker if blocked == "cache_dir" else blocker / "deeper"
    status, err = _cli(lambda: prepare_data(text_config, root, log=lambda *a: None), capsys)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert f"{blocker} is a file, not a directory" in err and "data.cache_dir" in err


def test_full_disk_while_building_the_cache_names_it(tmp_path, text_config, capsys, monkeypatch):
    """A full disk (`[Errno 28]`, which names no file) names the cache directory: exit 1."""

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Tokenizer, "encode_file", disk_full)
    root = tmp_path / "cache"
    status, err = _cli(lambda: prepare_data(text_config, root, log=lambda *a: None), capsys)
    assert status == 1
    assert err.count("\n") == 1 and err.startswith(f"error: building the data cache {root}/")
    assert "No space left on device" in err and "data.cache_dir" in err
    # the tokens have no completion mark, so the next run encodes them again
    assert not [p for p in root.rglob("*meta.json") if p.parent.name != "tokenizer"]
