"""Cutting a file into chunks that can be processed independently, and running workers on them.


A file is cut into chunks that can be processed independently: the pre-tokens of the whole file
are exactly the concatenation of the pre-tokens of the chunks. A cut at byte `p` is safe when no
occurrence of a special token straddles `p` (starts before it and ends after it) and either

* a special token starts at `p`: then the left-to-right special-token scan of the whole file also
  matches there, so `p` separates two independent segments; or
* `p` is a whitespace byte right after a printable, non-space ASCII byte (e.g. "word|\\n" or
  "word| next"). Every GPT-2 pattern branch that can match the character before `p` consumes only
  non-whitespace, so the pre-token ending at `p - 1` ends at `p` whatever follows, and the next one
  starts at `p` in both cases (the pattern has no look-behind).

In the second case no special token straddles `p` either, so the special-token split is unchanged
and `p` only divides one ordinary-text segment at a pre-token boundary. Cuts at special tokens are
preferred (searched first in a window after each guessed offset); whitespace cuts are the fallback
for files without them. Tests check chunked == unchunked with a cut guessed at every position.

Also here: reading a byte range as text (`read_text`), how many workers to start and how
(`resolve_num_workers`, `pool_start_method`), and the optional progress bar.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from tinylm.bpe.scanner import unique_special_tokens

MAX_CHUNK_BYTES = 8 << 20  # bounds each worker's memory, whatever the file size
_SEARCH_WINDOW = 1 << 18  # how far past a guessed offset we look for a cut
# Bytes that regex's \s matches, after bytes that \S surely matches (printable ASCII, no space).
_WHITESPACE_CUT_RE = re.compile(rb"(?<=[\x21-\x7e])[ \t\n\x0b\x0c\r]")

TEXT_ERRORS = ("strict", "replace")  # the invalid-UTF-8 policy train-lm shares (data.text_errors)


def read_text(
    path: str | os.PathLike, start: int = 0, end: int | None = None, errors: str = "strict"
) -> str:
    """Decode bytes [start, end) of a file as UTF-8.

    `errors="strict"`: an invalid byte is a ValueError naming the file and its offset;
    `errors="replace"`: invalid bytes become U+FFFD (the explicit opt-in).
    """
    if errors not in TEXT_ERRORS:
        raise ValueError(f"errors must be one of {TEXT_ERRORS}, got {errors!r}")
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(-1 if end is None else end - start)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not valid UTF-8 at byte {start + err.start} "
            f"(0x{data[err.start]:02x}); fix the file, or pass errors='replace' (bpe-train "
            "--errors replace, train-lm --data.text_errors replace) to read it as U+FFFD"
        ) from None


def check_input_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    if not path.is_file():
        raise ValueError(f"input path is not a file: {path}")
    return path


def _straddled(data: bytes, pos: int, specials: list[bytes]) -> bool:
    """Does an occurrence of a special token start before `pos` and end after it?"""
    return any(
        data.startswith(s, start)
        for s in specials
        for start in range(max(0, pos - len(s) + 1), pos)
    )


def _find_cut(f, start: int, limit: int, specials: list[bytes], special_re) -> int | None:
    """The first safe cut in [start, limit), or None (see the module docstring)."""
    longest = max((len(s) for s in specials), default=1)
    lo = max(0, start - longest)
    f.seek(lo)
    data = f.read(limit - lo + longest)
    begin, stop = start - lo, limit - lo
    if special_re is not None:
        for match in special_re.finditer(data, begin):
            if match.start() >= stop:
                break
            if not _straddled(data, match.start(), specials):
                return lo + match.start()
    for match in _WHITESPACE_CUT_RE.finditer(data, begin, stop):
        if not _straddled(data, match.start(), specials):
            return lo + match.start()
    return None


def find_chunk_boundaries(
    path: str | os.PathLike, num_chunks: int, special_tokens: Iterable[str] | None = ()
) -> list[int]:
    """Byte offsets [0, ..., size] cutting the file into up to `num_chunks` independent chunks."""
    size = os.path.getsize(path)
    specials = [t.encode("utf-8") for t in unique_special_tokens(special_tokens)]
    special_re = (
        re.compile(b"|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))
        if specials
        else None
    )
    boundaries = [0]
    with open(path, "rb") as f:
        for i in range(1, max(1, num_chunks)):
            guess = max(size * i // num_chunks, boundaries[-1] + 1)
            limit = min(size, max(size * (i + 1) // num_chunks, guess + 1), guess + _SEARCH_WINDOW)
            if guess >= size:
                break
            cut = _find_cut(f, guess, limit, specials, special_re)
            if cut is not None and boundaries[-1] < cut < size:
                boundaries.append(cut)
    boundaries.append(size)
    return boundaries


def plan_chunks(path: str | os.PathLike, num_workers: int, special_tokens) -> list[tuple[int, int]]:
    """Byte ranges for `num_workers` processes: a few per worker (load balance), none huge."""
    size = os.path.getsize(path)
    wanted = -(-size // MAX_CHUNK_BYTES)
    if num_workers > 1:
        wanted = max(wanted, 4 * num_workers)
    bounds = find_chunk_boundaries(path, max(1, wanted), special_tokens)
    return list(itertools.pairwise(bounds))


class _NoProgress:
    """Stands in for a disabled tqdm bar."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


# Loaded runtimes whose native thread pools make fork() unsafe: torch's OpenMP pool can leave a
# forked child deadlocked at start-up (seen in the train tests once a model had run).
_FORK_UNSAFE_MODULES = ("torch",)


def pool_start_method() -> str | None:
    """How to start worker processes. "fork" while it is safe, so workers inherit built state for
    free; "forkserver" on Linux once other Python threads run or a fork-unsafe runtime is loaded
    (forking a multi-threaded process can deadlock the child on a lock another thread held); None
    elsewhere, the platform's default. Like "spawn", "forkserver" re-imports the main script, which
    then needs the usual `if __name__ == "__main__":` guard.
    """
    if sys.platform != "linux":
        return None
    unsafe = threading.active_count() > 1 or any(m in sys.modules for m in _FORK_UNSAFE_MODULES)
    return "forkserver" if unsafe else "fork"


# Below these sizes one process beats starting workers: forking costs ~10 ms, a forkserver pool
# seconds (its workers re-import the main script, e.g. torch for train-lm).
_MIN_PARALLEL_BYTES = {"fork": 1 << 20, "forkserver": 64 << 20}


def resolve_num_workers(num_workers: int | None, nbytes: int) -> int:
    """`num_workers` if given; else all cores, or 1 for inputs too small to repay the start-up."""
    if num_workers:
        return num_workers
    if nbytes < _MIN_PARALLEL_BYTES.get(pool_start_method(), 1 << 20):
        return 1
    return os.cpu_count() or 1


def progress_bar(enabled: bool, **tqdm_kwargs):
    """A tqdm bar, or a no-op stand-in: importing tqdm.auto alone takes ~60 ms."""
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(**tqdm_kwargs)
