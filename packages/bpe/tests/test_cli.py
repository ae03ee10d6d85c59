"""bpe-train and bpe-encode, called through their main functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinylm.bpe import Tokenizer
from tinylm.bpe.cli import encode_main, train_main

FIXTURES = Path(__file__).parent / "fixtures"
EOT = "<|endoftext|>"


def test_train_then_encode(tmp_path, capsys, bpe_path):
    out = tmp_path / "tok"
    argv = [str(FIXTURES / "corpus.en"), "--vocab-size", "300", "--out-dir", str(out)]
    assert train_main([*argv, "--num-workers", "2"]) == 0
    report = capsys.readouterr().out
    assert "elapsed" in report and "peak memory" in report and "MiB" in report
    assert "longest" in report
    assert f"path         {bpe_path}" in report
    tokenizer = Tokenizer.from_files(out / "vocab.json", out / "merges.txt", [EOT])
    assert len(tokenizer.vocab) == 300 and tokenizer.vocab[299] == EOT.encode()

    text = FIXTURES / "tinystories_sample.txt"
    npy = tmp_path / "ids.npy"
    vocab_args = ["--vocab", str(out / "vocab.json"), "--merges", str(out / "merges.txt")]
    assert encode_main([*vocab_args, str(text), str(npy), "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert "MB/s" in report and f"path         {bpe_path}" in report
    ids = np.load(npy, mmap_mode="r")
    assert ids.tolist() == tokenizer.encode(text.read_text(encoding="utf-8"))
    for flag in ("--num-threads", "--num-workers"):
        assert encode_main([*vocab_args, str(text), str(npy), "--no-progress", flag, "2"]) == 0
        assert np.load(npy).tolist() == ids.tolist()


def _assert_one_line_error(capsys, *needles):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    for needle in needles:
        assert needle in lines[0]


def test_train_errors_exit_2(tmp_path, capsys):
    out = tmp_path / "tok"
    options = ["--out-dir", str(out), "--no-progress"]
    assert train_main([str(tmp_path / "none.txt"), "--vocab-size", "300", *options]) == 2
    _assert_one_line_error(capsys, "input file not found", "none.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xff")
    assert train_main([str(bad), "--vocab-size", "300", *options]) == 2
    _assert_one_line_error(capsys, "not valid UTF-8")
    assert train_main([str(FIXTURES / "german.txt"), "--vocab-size", "10", *options]) == 2
    _assert_one_line_error(capsys, "too small")
    assert not out.exists()  # nothing half-written


def test_encode_errors_exit_2(tmp_path, capsys):
    (tmp_path / "merges.txt").write_text("a b c\n")
    (tmp_path / "vocab.json").write_text('{"a": 0}')
    argv = ["--vocab", str(tmp_path / "vocab.json"), "--merges", str(tmp_path / "merges.txt")]
    files = [str(FIXTURES / "german.txt"), str(tmp_path / "o.npy"), "--no-progress"]
    assert encode_main([*argv, *files]) == 2
    _assert_one_line_error(capsys, "malformed merge")
    assert not (tmp_path / "o.npy").exists()
