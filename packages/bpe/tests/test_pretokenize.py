"""Pre-tokenization and file chunking: chunks must never change the pre-tokens."""

from __future__ import annotations

import itertools
import os

import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.bpe.pretokenize import (
    GPT2_PATTERN,
    count_pretokens,
    find_chunk_boundaries,
    iter_pretokens,
    split_pretokens,
)

EOT = "<|endoftext|>"
SPECIAL_SETS = [[], [EOT], [EOT, EOT + EOT], ["ab", "xaby"]]


def pieces_with_specials(text: str, special_tokens: list[str]) -> list[str]:
    """Independent oracle: special tokens (longest first) and pre-tokens, in order."""
    if not special_tokens:
        return regex.findall(GPT2_PATTERN, text)
    alternation = "|".join(regex.escape(t) for t in sorted(special_tokens, key=len)[::-1])
    out = []
    for i, part in enumerate(regex.split(f"({alternation})", text)):
        out.extend([part] if i % 2 else regex.findall(GPT2_PATTERN, part))
    return out


fragments = st.sampled_from(
    [EOT, "<|endo", "ftext|>", "ab", "xaby", "xa", "by", " ", "  ", "\n", "\r\n", "\t", "word",
     " word", "don't", "'ll", "é", "日本", "😀", "1", "!", "a", "x"]
)  # fmt: skip
texts = st.lists(st.one_of(fragments, st.text(max_size=3)), max_size=80).map("".join)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, specials=st.sampled_from(SPECIAL_SETS), num_chunks=st.integers(1, 300))
def test_chunks_preserve_pretokens(tmp_path_factory, text, specials, num_chunks):
    path = tmp_path_factory.mktemp("chunks") / "t.txt"
    data = text.encode()
    path.write_bytes(data)
    bounds = find_chunk_boundaries(path, num_chunks, specials)
    assert bounds[0] == 0 and bounds[-1] == len(data)
    assert bounds == sorted(set(bounds)) or len(data) == 0
    chunked = []
    for start, end in itertools.pairwise(bounds):
        chunked += pieces_with_specials(data[start:end].decode(), specials)
    assert chunked == pieces_with_specials(text, specials)


def test_chunks_are_cut_when_possible(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(f"some words here{EOT}" * 500)
    bounds = find_chunk_boundaries(path, 8, [EOT])
    assert len(bounds) == 9
    data = path.read_bytes()
    assert all(data.startswith(EOT.encode(), b) for b in bounds[1:-1])  # special tokens first
    no_specials = tmp_path / "plain.txt"
    no_specials.write_text("word " * 2000)
    assert len(find_chunk_boundaries(no_specials, 4, [EOT])) == 5


def test_iter_pretokens_drops_special_tokens():
    assert list(iter_pretokens(f"a b{EOT}c", (EOT,))) == ["a", " b", "c"]
    assert list(iter_pretokens("I'm  here\n", ())) == ["I", "'m", " ", " here", "\n"]


def test_count_pretokens_parallel_equals_serial(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(f"the cat sat{EOT} on the mat\n\n" * 300)
    serial = count_pretokens(path, [EOT], num_workers=1)
    assert count_pretokens(path, [EOT], num_workers=2) == serial
    assert serial["the"] == 300 and serial[" the"] == 300 and EOT not in serial


# Mostly ASCII, with the characters where an ASCII shortcut could go wrong: non-ASCII letters,
# digits, spaces and punctuation; \x1c-\x1f and \x85 (whitespace to str.isspace, not to \s);
# contractions cut short; whitespace runs before non-ASCII.
mixed = st.lists(
    st.one_of(
        st.sampled_from(
            ["é", "ß", "日本", "٣", "½", "\u00a0", "\u3000", "\u2028", "\x85", "\x1c", "\x1f",
             "“", "”", "—", "😀", "e\u0301", "'", "'l", "'ll", "'S", " ", "  ", "\n", "\r\n",
             "\t", "\x0b", "\x0c", "word", " word", "1", " 23", "!", " ?!", "a.", "x", "Ab"]
        ),
        st.text(max_size=4),
        st.text(st.characters(max_codepoint=127), max_size=6),
    ),
    max_size=60,
).map("".join)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=mixed)
def test_split_pretokens_equals_regex(text):
    assert split_pretokens(text) == regex.findall(GPT2_PATTERN, text)


def test_split_pretokens_on_every_ascii_context():
    """Every ASCII character next to every kind of neighbour, and far-apart non-ASCII runs."""
    ascii_chars = [chr(i) for i in range(128)]
    neighbours = ["a", "1", " ", "\n", "'", "é", "\u00a0", "!"]
    text = "".join(f"{a}{b}{c}" for a in ascii_chars for b in neighbours for c in ascii_chars)
    assert split_pretokens(text) == regex.findall(GPT2_PATTERN, text)
    far = "é" + "x " * 500 + "y" * 300 + "\u00a0 z" + " " * 200 + "ü"
    assert split_pretokens(far) == regex.findall(GPT2_PATTERN, far)


def test_default_worker_count_keeps_small_inputs_in_process(monkeypatch):
    from tinylm.bpe import chunking as pretokenize

    assert pretokenize.resolve_num_workers(3, 10) == 3  # an explicit count always wins
    monkeypatch.setattr(pretokenize, "pool_start_method", lambda: "fork")
    assert pretokenize.resolve_num_workers(None, 1000) == 1
    assert pretokenize.resolve_num_workers(None, 8 << 20) == (os.cpu_count() or 1)
    # A forkserver pool re-imports the main script (seconds): only worth it for large inputs.
    monkeypatch.setattr(pretokenize, "pool_start_method", lambda: "forkserver")
    assert pretokenize.resolve_num_workers(None, 8 << 20) == 1
    assert pretokenize.resolve_num_workers(None, 256 << 20) == (os.cpu_count() or 1)
