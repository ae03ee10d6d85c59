"""bpe-train and bpe-encode, called through their main functions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

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


def _tokenizer_files(tmp_path) -> list[str]:
    tokenizer = Tokenizer.from_files(
        FIXTURES / "train-bpe-reference-vocab.json", FIXTURES / "train-bpe-reference-merges.txt"
    )
    tokenizer.save(tmp_path / "vocab.json", tmp_path / "merges.txt")
    return ["--vocab", str(tmp_path / "vocab.json"), "--merges", str(tmp_path / "merges.txt")]


@pytest.mark.parametrize("link", ["same path", "symlink", "hard link", "vocab"])
def test_encode_refuses_to_overwrite_an_input(link, tmp_path, capsys):
    """`bpe-encode ... train.txt train.txt` once replaced the text with the .npy."""
    vocab_args = _tokenizer_files(tmp_path)
    text = tmp_path / "train.txt"
    text.write_text("Once upon a time.\n", encoding="utf-8")
    output = {
        "same path": text,
        "symlink": tmp_path / "link.npy",
        "hard link": tmp_path / "hard.npy",
        "vocab": tmp_path / "vocab.json",
    }[link]
    if link == "symlink":
        output.symlink_to(text)
    elif link == "hard link":
        os.link(text, output)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    assert encode_main([*vocab_args, str(text), str(output), "--no-progress"]) == 2
    _assert_one_line_error(capsys, str(output), "choose another output")
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_train_refuses_an_input_as_output(tmp_path, capsys):
    out = tmp_path / "tok"
    out.mkdir()
    text = out / "merges.txt"
    text.write_text((FIXTURES / "corpus.en").read_text(encoding="utf-8"), encoding="utf-8")
    argv = [str(text), "--vocab-size", "300", "--out-dir", str(out), "--no-progress"]
    assert train_main(argv) == 2
    _assert_one_line_error(capsys, "merges.txt", "choose another output")
    assert sorted(p.name for p in out.iterdir()) == ["merges.txt"]


@pytest.mark.parametrize("where", ["out-dir", "parent"])
def test_train_out_dir_that_is_a_file(where, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a directory")
    out = tmp_path / "taken" if where == "out-dir" else tmp_path / "taken" / "tok"
    argv = [str(FIXTURES / "corpus.en"), "--vocab-size", "300", "--out-dir", str(out)]
    assert train_main([*argv, "--no-progress"]) == 2
    _assert_one_line_error(capsys, f"--out-dir {out}", "is a file, not a directory")
    assert "Errno" not in capsys.readouterr().err


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_honour_the_umask(umask, tmp_path, capsys):
    """Written files get the mode open() would give them (they were 0600 whatever the umask)."""
    out = tmp_path / "tok"
    old = os.umask(umask)
    try:
        argv = [str(FIXTURES / "corpus.en"), "--vocab-size", "300", "--out-dir", str(out)]
        assert train_main([*argv, "--num-workers", "1", "--no-progress"]) == 0
        vocab_args = ["--vocab", str(out / "vocab.json"), "--merges", str(out / "merges.txt")]
        text, npy = FIXTURES / "tinystories_sample.txt", tmp_path / "ids.npy"
        assert encode_main([*vocab_args, str(text), str(npy), "--no-progress"]) == 0
        Tokenizer.from_files(out / "vocab.json", out / "merges.txt").save_hf(tmp_path / "t.json")
        (tmp_path / "plain").write_text("oracle")  # what an ordinary open() gives
    finally:
        os.umask(old)
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert expected == 0o666 & ~umask
    for path in (out / "vocab.json", out / "merges.txt", npy, tmp_path / "t.json"):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


@pytest.mark.parametrize("main", [train_main, encode_main])
def test_help_shows_defaults(main, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "(default: ['<|endoftext|>'])" in text and "(default: all cores)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    if main is train_main:
        assert "(default: strict)" in text
