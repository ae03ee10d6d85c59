"""What the data preparation shares: the bundled corpora, the cache entry (`PreparedData`) and
its directory, and loading a tokenizer from one.

Kept apart so that the one-file preparation (`prepare.py`) and the two-file one
(`text_files.py`) both build on it without importing each other.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tinylm.bpe import Tokenizer
from tinylm.train.errors import RunFailed

__all__ = [
    "BUNDLED_CORPORA",
    "DEFAULT_CORPUS",
    "PreparedData",
    "bundled_corpus",
    "cache_writes",
    "load_tokenizer",
    "make_cache_dir",
    "text_source",
]

# Corpora shipped in this package's data/ (licences and attribution in data/LICENSES.md). A
# `data.text` equal to one of these names means that file. DEFAULT_CORPUS is [data]'s default;
# "" means EMPTY_TEXT_CORPUS, the one corpus bundled when older run directories wrote "".
BUNDLED_CORPORA = {"openprose": "openprose_4M.txt", "tinystories": "tinystories_2M.txt"}
DEFAULT_CORPUS = "tinystories"
EMPTY_TEXT_CORPUS = "openprose"

_SPACE_HINT = "; free space there or set data.cache_dir to another disk"


@dataclass(frozen=True)
class PreparedData:
    train_path: Path
    val_path: Path
    tokenizer_dir: Path | None  # holds vocab.json + merges.txt, when known
    # Per step ("tokenizer", "train", "val") what it was built from and what it cost, with
    # "cached": bool; filled by the two-file preparation (`prepare_text_files`), else empty.
    steps: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False, repr=False)
    # The tokenizer in memory when this call built (or had to load) it; None: load it from
    # tokenizer_dir when needed.
    tokenizer: Tokenizer | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, str | None]:
        return {
            "train_path": str(self.train_path),
            "val_path": str(self.val_path),
            "tokenizer_dir": str(self.tokenizer_dir) if self.tokenizer_dir else None,
        }


def bundled_corpus(name: str = DEFAULT_CORPUS) -> Path:
    """A corpus shipped in this package: "tinystories" (2 MB of real TinyStories) or
    "openprose" (4 MB of permissively licensed prose); see data/LICENSES.md."""
    if name not in BUNDLED_CORPORA:
        raise ValueError(f"no bundled corpus '{name}' (bundled: {', '.join(BUNDLED_CORPORA)})")
    return Path(str(resources.files("tinylm.train") / "data" / BUNDLED_CORPORA[name]))


def text_source(text: str) -> Path:
    """The file `data.text` names: a path or a bundled corpus's name. "" is openprose: the one
    bundled corpus when run directories wrote it, so that they resume on the data they began."""
    if not text or text in BUNDLED_CORPORA:
        return bundled_corpus(text or EMPTY_TEXT_CORPUS)
    return Path(text)


def load_tokenizer(
    tokenizer_dir: str | os.PathLike, special_tokens=("<|endoftext|>",)
) -> Tokenizer:
    directory = Path(tokenizer_dir)
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    for path in (vocab, merges):
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
    return Tokenizer.from_files(vocab, merges, list(special_tokens))


def make_cache_dir(directory: Path) -> None:
    """mkdir -p, with a file in the way reported as bad input naming it (not NotADirectoryError)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        parents = (directory, *directory.parents)
        blocker = next((p for p in parents if p.exists() and not p.is_dir()), directory)
        raise ValueError(
            f"data cache {directory}: {blocker} is a file, not a directory (data.cache_dir; "
            "default <run.root>/_data)"
        ) from None


@contextmanager
def cache_writes(directory: Path):
    """Name the cache directory in an I/O error that names no file: a full disk's `[Errno 28]`
    comes from a write, which knows no path. Such a failure is the run's (exit 1); the
    unfinished entry has no meta.json, so the next run rebuilds it."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or isinstance(e, FileNotFoundError | PermissionError):
            raise
        hint = _SPACE_HINT if e.errno == errno.ENOSPC else ""
        raise RunFailed(
            f"building the data cache {directory} failed: {e.strerror or e} (errno {e.errno}){hint}"
        ) from e
