"""The one atomic writer (tinylm.train.atomic_write / atomic_open)."""

from __future__ import annotations

import os
import stat

import pytest

from tinylm.train import atomic_open, atomic_write
from tinylm.train.files import atomic_directory


def test_atomic_write_str_and_bytes(tmp_path):
    path = tmp_path / "a.txt"
    assert atomic_write(path, "héllo\n") == path
    assert path.read_bytes() == "héllo\n".encode()
    atomic_write(path, b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temporary left


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_open(path, "w") as f:
        f.write("half of the new")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_unencodable_data_leaves_the_old_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write(path, 3)  # neither str nor bytes
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_a_directory_as_target_is_one_clear_error(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        atomic_write(tmp_path, "x")
    assert list(tmp_path.iterdir()) == []


def test_text_mode_writes_utf8_and_files_are_readable(tmp_path):
    path = tmp_path / "s.txt"
    with atomic_open(path, "w") as f:
        f.write("ü")
    assert path.read_bytes() == "ü".encode()
    assert path.stat().st_mode & 0o644 == 0o644


def test_save_run_files_when_the_tokenizer_is_the_runs_own(tmp_path):
    """data.tokenizer_dir = <run>/tokenizer (e.g. a resume pointed at it): no SameFileError."""
    from tinylm.nn import ModelConfig
    from tinylm.train import TrainConfig
    from tinylm.train.trainer.setup import save_run_files

    cfg = TrainConfig(model=ModelConfig(64, 8, 16, 1, 2, 32)).replace(
        run={"root": str(tmp_path), "name": "r"}
    )
    tok = cfg.run_dir / "tokenizer"
    tok.mkdir(parents=True)
    (tok / "vocab.json").write_text("{}")
    (tok / "merges.txt").write_text("#v\n")
    save_run_files(cfg.run_dir, tok, cfg.to_toml())
    assert (tok / "vocab.json").read_text() == "{}"
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "vocab.json").write_text('{"a": 0}')
    (other / "merges.txt").write_text("#v2\n")
    save_run_files(cfg.run_dir, other, cfg.to_toml())
    assert (tok / "vocab.json").read_text() == '{"a": 0}'
    assert (cfg.run_dir / "config.toml").is_file()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_get_the_umask_mode_like_open(umask, tmp_path):
    """Was 0644 whatever the umask: too open under 077, too closed under 002."""
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.txt", "x")
        (tmp_path / "plain.txt").write_text("x")  # the oracle: an ordinary open()
    finally:
        os.umask(old)
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == expected == 0o666 & ~umask


def test_atomic_directory_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "out" / "hf"
    with pytest.raises(OSError, match="disk full"), atomic_directory(target) as tmp:
        atomic_write(tmp / "config.json", "{}")
        raise OSError("disk full")
    assert not target.exists() and list((tmp_path / "out").iterdir()) == []
    with atomic_directory(target) as tmp:
        atomic_write(tmp / "config.json", "{}")
        assert not target.exists()  # nothing visible until the block ends
    assert [p.name for p in target.iterdir()] == ["config.json"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["hf"]


def test_atomic_directory_replace_files_keeps_the_others(tmp_path):
    target = tmp_path / "hf"
    target.mkdir()
    (target / "README.md").write_text("mine")
    (target / "config.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target, replace_files=True) as tmp:
        atomic_write(tmp / "config.json", "new")
        raise RuntimeError("killed")
    assert (target / "config.json").read_text() == "old"
    with atomic_directory(target, replace_files=True) as tmp:
        atomic_write(tmp / "config.json", "new")
    assert (target / "config.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "config.json"]


def test_atomic_directory_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_directory(tmp_path / "d"):
            pass
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "d").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o750


def test_atomic_directory_through_a_symlink_fills_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with atomic_directory(tmp_path / "link") as tmp:
        atomic_write(tmp / "a.txt", "x")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "a.txt").read_text() == "x"
