"""The one atomic writer for everything a run produces (configs, metrics, plots, samples, reports).

A file is written to a temporary name beside its target, flushed and fsync'ed, then renamed over
the target with `os.replace`: a reader (or a crash) sees the old file or the new one, never half
of one. On any error the temporary is removed and the old file stays as it was. The file gets
the mode an ordinary `open()` would give it under the process's umask (0644 under umask 022),
not the temporary's 0600; `atomic_directory` does the same for a directory of files.

    atomic_write("runs/x/sample.txt", text)       # str (UTF-8) or bytes
    with atomic_open("runs/x/loss.png") as f:     # streaming writers: savefig, json.dump, copies
        fig.savefig(f, format="png")
    with atomic_directory("hf/x") as tmp:         # fill tmp; it becomes hf/x at the end
        write_json(tmp / "config.json", config)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_directory", "atomic_open", "atomic_write", "umask"]


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it in /proc (setting and
    restoring it elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """A file object whose contents replace `path` only when the block ends without error."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name to write to")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; a written file reads like any other
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` (str as UTF-8) to `path` atomically; returns `path`."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, replace_files: bool = False) -> Iterator[Path]:
    """A temporary directory beside `path` that becomes `path` when the block ends without error.

    `path` must not exist or be an empty directory (it is renamed over); with `replace_files`, a
    non-empty `path` gets the written files one by one instead (each `os.replace`d, so each is
    old or new; files of `path` not written here stay). On any error the temporary directory
    is removed and `path` is untouched.
    """
    path = Path(path)
    if path.is_symlink():  # fill the directory it names, do not replace the link
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes 0700
        yield tmp
        if replace_files and path.is_dir() and any(path.iterdir()):
            for item in sorted(tmp.iterdir()):
                os.replace(item, path / item.name)
        else:
            os.replace(tmp, path)  # renames over an empty directory, never a non-empty one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
