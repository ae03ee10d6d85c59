"""The GPT-2 pre-tokenizer and special-token splitting: the reference, and the native dispatch.

`split_pretokens` is the reference: exactly `regex.findall(GPT2_PATTERN, text)`, with ASCII
stretches sent to the stdlib `re` engine (twice as fast as `regex`). `pretokenize` runs the
compiled scanner (`_core.pretokenize`, no regex engine, same pre-tokens) when the native core is
in use, else the reference. Special tokens are split off first, longest match first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator

import regex

from tinylm.bpe import native

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
    """The last safe cut in (lo, hi), else `lo` (see `chunking`); looks back a little first."""
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
    printable ASCII, see `chunking`) and that region goes to `regex`; the ASCII text
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


def pretokenize(text: str) -> list[str]:
    """The GPT-2 pre-tokens of `text` (no special-token handling): native scanner or reference."""
    core = native.load("_core")
    return core.pretokenize(text) if core is not None else split_pretokens(text)


def iter_pretokens(text: str, special_tokens: tuple[str, ...] = ()) -> Iterator[str]:
    """Pre-tokens of `text`; none spans across a special token."""
    for segment in split_on_special_tokens(text, special_tokens):
        yield from split_pretokens(segment)
