"""merge: the per-piece encoder and the numpy batch merger equal a naive rank-ordered BPE."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.bpe import Tokenizer
from tinylm.bpe.merge import BatchMerger, piece_encoder

FIXTURES = Path(__file__).parent / "fixtures"
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

words = st.one_of(
    st.sampled_from(
        ["a", "ab", "the", " the", "  ", "é", "日本語", "😀", "aaaaaaaa", "abcabc", "'ll"]
    ),
    st.text(max_size=12),
    st.text("abc ", max_size=20),
).filter(bool)


def naive_bpe(piece: str, byte_ids, ranks, merged_id_by_rank) -> list[int]:
    """Textbook: recompute every pair's rank, merge the leftmost lowest one, repeat."""
    ids = [byte_ids[b] for b in piece.encode("utf-8")]
    while True:
        pairs = enumerate(itertools.pairwise(ids))
        candidates = [(ranks[pair], i) for i, pair in pairs if pair in ranks]
        if not candidates:
            return ids
        rank, i = min(candidates)
        ids[i : i + 2] = [merged_id_by_rank[rank]]


def tables(tokenizer: Tokenizer):
    return tokenizer._byte_ids, tokenizer._ranks, tokenizer._merged_id_by_rank


@pytest.fixture(scope="module")
def odd_tokenizer() -> Tokenizer:
    """Merges in an unnatural order: a merge may use a token that a later merge creates, a byte
    string is made twice (a+bc, ab+c), a pair repeats, and byte ids are shuffled."""
    vocab = {(i * 7 + 3) % 256: bytes([i]) for i in range(256)}
    merges = [(b"ab", b"a"), (b"a", b"b"), (b"b", b"c"), (b"a", b"bc"), (b"ab", b"c"), (b"a", b"b")]
    merges += [(b"c", b"c"), (b"cc", b"cc"), (b" ", b"a"), (b"\xc3", b"\xa9"), (b"aba", b"b")]
    for a, b in merges:
        for token in (a, b, a + b):
            if token not in vocab.values():
                vocab[len(vocab)] = token
    return Tokenizer(vocab, merges)


@pytest.fixture(scope="module")
def trained_tokenizer() -> Tokenizer:
    from tinylm.bpe import train_bpe

    vocab, merges = train_bpe(FIXTURES / "corpus.en", 400, ["<|endoftext|>"], num_workers=1)
    return Tokenizer(vocab, merges, ["<|endoftext|>"])


@pytest.mark.parametrize("which", ["gpt2_tokenizer", "odd_tokenizer", "trained_tokenizer"])
@SETTINGS
@given(pieces=st.lists(words, max_size=40))
def test_piece_encoder_and_batch_equal_naive(request, which, pieces):
    tokenizer = request.getfixturevalue(which)
    encode_piece = piece_encoder(*tables(tokenizer))
    expected = [naive_bpe(piece, *tables(tokenizer)) for piece in pieces]
    assert [encode_piece(piece) for piece in pieces] == expected
    assert BatchMerger(*tables(tokenizer))(pieces) == expected


def test_odd_merges_are_order_sensitive(odd_tokenizer):
    """The leftmost-lowest rule, one merge at a time: "abab" -> ab, a, b -> aba, b -> abab."""
    ids = piece_encoder(*tables(odd_tokenizer))("abab")
    assert [odd_tokenizer.vocab[i] for i in ids] == [b"abab"]
    assert BatchMerger(*tables(odd_tokenizer))(["abab", "c", "ccccc"]) == [
        ids,
        *(naive_bpe(p, *tables(odd_tokenizer)) for p in ["c", "ccccc"]),
    ]


def test_batch_on_a_corpus(gpt2_tokenizer):
    """Thousands of distinct pre-tokens of very different lengths in one batch."""
    from tinylm.bpe.pretokenize import split_pretokens

    text = (FIXTURES / "corpus.en").read_text(encoding="utf-8")
    pieces = [*sorted(set(split_pretokens(text))), "=" * 300, " " * 77, "😀" * 9]
    encode_piece = piece_encoder(*tables(gpt2_tokenizer))
    assert BatchMerger(*tables(gpt2_tokenizer))(pieces) == [encode_piece(p) for p in pieces]
    assert BatchMerger(*tables(gpt2_tokenizer))([]) == []
