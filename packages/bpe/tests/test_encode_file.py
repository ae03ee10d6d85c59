"""encode_file: equals encode of the whole file, in parallel, with the right dtype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinylm.bpe import Tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
EOT = "<|endoftext|>"


def _write_corpus(path: Path, with_specials: bool) -> str:
    story = (FIXTURES / "tinystories_sample.txt").read_text(encoding="utf-8").replace(EOT, "")
    german = (FIXTURES / "german.txt").read_text(encoding="utf-8")
    separator = EOT if with_specials else "\n\n"
    text = separator.join([story, german, "  \n\t x'll  ", story] * 6)
    path.write_bytes(text.encode())
    return text


@pytest.mark.parametrize("with_specials", [True, False])
@pytest.mark.parametrize("num_workers", [1, 2])
def test_encode_file_equals_encode(tmp_path, gpt2_tokenizer, with_specials, num_workers):
    text = _write_corpus(tmp_path / "in.txt", with_specials)
    ids = gpt2_tokenizer.encode_file(
        tmp_path / "in.txt", tmp_path / "out.npy", num_workers=num_workers
    )
    assert ids.dtype == np.uint16
    assert ids.tolist() == gpt2_tokenizer.encode(text)
    on_disk = np.load(tmp_path / "out.npy", mmap_mode="r")
    assert isinstance(on_disk, np.memmap) and on_disk.tolist() == ids.tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.npy"]  # no leftovers


def test_large_vocab_uses_uint32(tmp_path, gpt2_tokenizer):
    vocab = dict(gpt2_tokenizer.vocab)
    vocab.update({i: f"<extra{i}>".encode() for i in range(len(vocab), 70_000)})
    big = Tokenizer(vocab, gpt2_tokenizer.merges, [EOT, "<|last|>"])
    text = f"hi there<|last|>{EOT}"
    (tmp_path / "in.txt").write_text(text)
    ids = big.encode_file(tmp_path / "in.txt", tmp_path / "out.npy", num_workers=1)
    assert ids.dtype == np.uint32
    assert ids.tolist() == big.encode(text) == [5303, 612, 70_000, 50256]
    small = gpt2_tokenizer.encode_file(tmp_path / "in.txt", tmp_path / "small.npy")
    assert small.dtype == np.uint16


def test_empty_file(tmp_path, gpt2_tokenizer):
    (tmp_path / "in.txt").write_bytes(b"")
    ids = gpt2_tokenizer.encode_file(tmp_path / "in.txt", tmp_path / "out.npy")
    assert ids.shape == (0,) and ids.dtype == np.uint16


def test_errors_leave_no_output(tmp_path, gpt2_tokenizer):
    with pytest.raises(FileNotFoundError, match="input file not found"):
        gpt2_tokenizer.encode_file(tmp_path / "missing.txt", tmp_path / "out.npy")
    (tmp_path / "bad.txt").write_bytes(b"fine text " * 1000 + b"\xff\xfe" + b" more" * 1000)
    with pytest.raises(ValueError, match="not valid UTF-8 at byte 10000"):
        gpt2_tokenizer.encode_file(tmp_path / "bad.txt", tmp_path / "out.npy", num_workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]


def test_workers_without_fork_get_a_pickled_tokenizer(tmp_path, gpt2_tokenizer, monkeypatch):
    """Where workers are not forked (other platforms, threaded parents) the tokenizer is sent
    pickled and rebuilt; the ids must be the same."""
    from tinylm.bpe import file_encoding as encode_file_module

    monkeypatch.setattr(encode_file_module, "_start_method", lambda: "spawn")
    text = _write_corpus(tmp_path / "in.txt", with_specials=True)
    ids = gpt2_tokenizer.encode_file(tmp_path / "in.txt", tmp_path / "out.npy", num_workers=2)
    assert ids.tolist() == gpt2_tokenizer.encode(text)


def test_progress_bar_is_shown_when_asked(tmp_path, gpt2_tokenizer, capsys):
    text = _write_corpus(tmp_path / "in.txt", with_specials=False)
    ids = gpt2_tokenizer.encode_file(
        tmp_path / "in.txt", tmp_path / "out.npy", num_workers=2, progress=True
    )
    assert ids.tolist() == gpt2_tokenizer.encode(text)
    assert "encode" in capsys.readouterr().err


def test_threaded_parent_starts_workers_with_forkserver(tmp_path, gpt2_tokenizer):
    """Forking a multi-threaded parent can deadlock the child (seen with torch's thread pool
    loaded), so with a second thread alive the pool must not fork, and the ids stay the same."""
    import threading

    from tinylm.bpe import file_encoding as encode_file_module

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert encode_file_module._start_method() == "forkserver"
        text = _write_corpus(tmp_path / "in.txt", with_specials=True)
        ids = gpt2_tokenizer.encode_file(tmp_path / "in.txt", tmp_path / "out.npy", num_workers=2)
        assert ids.tolist() == gpt2_tokenizer.encode(text)
    finally:
        stop.set()
        thread.join()
