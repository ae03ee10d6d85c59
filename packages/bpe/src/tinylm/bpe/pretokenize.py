"""Pre-tokenization: special-token splitting, the GPT-2 regex, and safe file chunking.

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
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKEN_RE = regex.compile(GPT2_PATTERN)

# The same pattern for ASCII-only text, for the stdlib `re` engine (about twice as fast as `regex`
# here). On ASCII, regex's \p{L} is [A-Za-z], \p{N} is [0-9] and \s is [\t\n\v\f\r ] (not
# str.isspace, which adds \x1c-\x1f: hence the explicit class instead of \s).
_WS = r"\t\n\x0b\x0c\r "
_ASCII_PRETOKEN_RE = re.compile(
    rf"'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^{_WS}A-Za-z0-9]+|[{_WS}]+(?![^{_WS}])|[{_WS}]+"
)
_NON_ASCII_RE = regex.compile(r"[^\x00-\x7f]+")  # regex scans a charset 7x faster than re
_NEXT_CUT_RE = re.compile(rf"(?<=[\x21-\x7e])[{_WS}]")
_LAST_CUT_RE = re.compile(rf"[\s\S]*[\x21-\x7e](?=[{_WS}])")  # match().end(): the last cut

MAX_CHUNK_BYTES = 8 << 20  # bounds each worker's memory, whatever the file size
_SEARCH_WINDOW = 1 << 18  # how far past a guessed offset we look for a cut
# Bytes that regex's \s matches, after bytes that \S surely matches (printable ASCII, no space).
_WHITESPACE_CUT_RE = re.compile(rb"(?<=[\x21-\x7e])[ \t\n\x0b\x0c\r]")


def unique_special_tokens(special_tokens: Iterable[str] | None) -> list[str]:
    """Drop duplicates and empty strings, keeping the first occurrence's order."""
    return list(dict.fromkeys(t for t in (special_tokens or ()) if t))


@functools.lru_cache(maxsize=64)
def special_token_regex(special_tokens: tuple[str, ...]) -> regex.Pattern | None:
    """Alternation of the special tokens, longest first so that the longest match wins."""
    if not special_tokens:
        return None
    ordered = sorted(special_tokens, key=len, reverse=True)
    return regex.compile("|".join(regex.escape(t) for t in ordered))


def split_on_special_tokens(text: str, special_tokens: tuple[str, ...]) -> list[str]:
    """The text between special tokens (the special tokens themselves are dropped)."""
    pattern = special_token_regex(special_tokens)
    return [text] if pattern is None else pattern.split(text)


def _last_cut(text: str, lo: int, hi: int) -> int:
    """The last safe cut in (lo, hi), else `lo`; looks back a little first (cuts are frequent)."""
    window = 64
    while True:
        start = max(lo, hi - window)
        match = _LAST_CUT_RE.match(text, start, hi)
        if match or start == lo:
            return match.end() if match else lo
        window *= 8


def split_pretokens(text: str) -> list[str]:
    """`PRETOKEN_RE.findall(text)`, faster: ASCII stretches go to the stdlib engine.

    Each run of non-ASCII characters is widened to the safe cuts around it (whitespace after
    printable ASCII, see the module docstring) and that region goes to `regex`; the ASCII text
    between regions is cut at safe cuts too, so every piece splits as it does in the whole text.
    """
    if text.isascii():
        return _ASCII_PRETOKEN_RE.findall(text)
    pieces: list[str] = []
    done = 0  # text[:done] is split; `done` is 0 or a safe cut
    for run in _NON_ASCII_RE.finditer(text):
        if run.start() < done:  # inside the last region (no run crosses a cut: cuts are ASCII)
            continue
        start = _last_cut(text, done, run.start())
        next_cut = _NEXT_CUT_RE.search(text, run.end())
        end = next_cut.start() if next_cut else len(text)
        pieces += _ASCII_PRETOKEN_RE.findall(text, done, start)
        pieces += PRETOKEN_RE.findall(text[start:end])
        done = end
    pieces += _ASCII_PRETOKEN_RE.findall(text, done)
    return pieces


def iter_pretokens(text: str, special_tokens: tuple[str, ...] = ()) -> Iterator[str]:
    """Pre-tokens of `text`; none spans across a special token."""
    for segment in split_on_special_tokens(text, special_tokens):
        yield from split_pretokens(segment)


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


def _count_chunk(
    task: tuple[str, int, int, tuple[str, ...], str],
) -> tuple[dict[str, int], int]:
    path, start, end, special_tokens, errors = task
    counts: Counter[str] = Counter()
    text = read_text(path, start, end, errors)
    for segment in split_on_special_tokens(text, special_tokens):
        counts.update(split_pretokens(segment))
    return counts, end - start


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


def count_pretokens(
    path: str | os.PathLike,
    special_tokens: Iterable[str] | None,
    *,
    num_workers: int | None = None,
    progress: bool = False,
    errors: str = "strict",
) -> Counter[str]:
    """Count the pre-tokens of a file in parallel; the parent never holds the whole file.

    `errors` is the invalid-UTF-8 policy of `read_text` ("strict" or "replace")."""
    path = check_input_file(path)
    specials = tuple(unique_special_tokens(special_tokens))
    num_workers = resolve_num_workers(num_workers, os.path.getsize(path))
    chunks = plan_chunks(path, num_workers, specials)
    tasks = [(str(path), s, e, specials, errors) for s, e in chunks]
    total: Counter[str] = Counter()
    bar = progress_bar(
        progress, total=os.path.getsize(path), unit="B", unit_scale=True, desc="pre-tokenize"
    )
    with bar:
        if num_workers == 1 or len(tasks) <= 1:
            results = map(_count_chunk, tasks)
            for counts, nbytes in results:
                total.update(counts)
                bar.update(nbytes)
        else:
            with multiprocessing.get_context(pool_start_method()).Pool(
                min(num_workers, len(tasks))
            ) as pool:
                for counts, nbytes in pool.imap_unordered(_count_chunk, tasks):
                    total.update(counts)
                    bar.update(nbytes)
    return total
