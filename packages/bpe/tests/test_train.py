"""train_bpe: the reference merges, a naive full-recount trainer, workers, bad input.

Every test runs on both paths, the native core and the pure-Python reference (conftest's
`bpe_path` sets TINYLM_BPE_NATIVE).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.bpe import GPT2_PATTERN, bytes_to_unicode, train_bpe

FIXTURES = Path(__file__).parent / "fixtures"
EOT = "<|endoftext|>"


def _from_gpt2_alphabet(text: str) -> bytes:
    byte_of = {char: b for b, char in bytes_to_unicode().items()}
    return bytes(byte_of[c] for c in text)


def test_reproduces_reference_merges_and_vocab():
    vocab, merges = train_bpe(FIXTURES / "corpus.en", 500, [EOT], num_workers=1)
    lines = (FIXTURES / "train-bpe-reference-merges.txt").read_text(encoding="utf-8").splitlines()
    reference_merges = [tuple(_from_gpt2_alphabet(t) for t in line.split(" ")) for line in lines]
    assert merges == reference_merges
    reference_vocab = json.loads((FIXTURES / "train-bpe-reference-vocab.json").read_text("utf-8"))
    # The reference puts the special token at id 0, train_bpe puts it last (README: bytes,
    # then merges, then specials): compare the values.
    assert set(vocab.values()) == {_from_gpt2_alphabet(t) for t in reference_vocab}
    assert len(vocab) == 500
    assert all(vocab[i] == bytes([i]) for i in range(256))
    assert vocab[499] == EOT.encode()


def naive_train(text: str, vocab_size: int, special_tokens: list[str]):
    """Textbook BPE: recount every pair after every merge; tokens are byte strings."""
    if special_tokens:
        alternation = "|".join(regex.escape(t) for t in sorted(special_tokens, key=len)[::-1])
        segments = regex.split(alternation, text)
    else:
        segments = [text]
    words = Counter(
        tuple(bytes([b]) for b in piece.encode())
        for segment in segments
        for piece in regex.findall(GPT2_PATTERN, segment)
    )
    tokens = {bytes([i]) for i in range(256)}
    merges = []
    while len(tokens) < vocab_size - len(special_tokens):
        pairs = Counter()
        for word, count in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        tokens.add(best[0] + best[1])
        merged_words = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged_words[tuple(out)] += count
        words = merged_words
    return tokens | {t.encode() for t in special_tokens}, merges


corpus_pieces = st.sampled_from(
    ["the", " the", " cat", "cat", " sat", "aaa", "ab", "ba", " ", "  ", "\n", "\n\n", "don't",
     "'s", "é", " éé", "日本", "語", "😀", "12", " 345", "!", "?!", EOT, "\r\n", "zzz", "ab ab"]
)  # fmt: skip
small_corpus = st.lists(st.one_of(corpus_pieces, st.text(max_size=4)), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=small_corpus, extra=st.integers(0, 60), specials=st.sampled_from([[], [EOT]]))
def test_matches_naive_trainer(tmp_path_factory, pieces, extra, specials):
    text = "".join(pieces)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_bytes(text.encode())
    vocab_size = 256 + len(specials) + extra
    vocab, merges = train_bpe(path, vocab_size, specials, num_workers=1)
    expected_tokens, expected_merges = naive_train(text, vocab_size, specials)
    assert merges == expected_merges
    assert set(vocab.values()) == expected_tokens
    assert len(vocab) == len(expected_tokens) <= vocab_size
    assert list(vocab) == list(range(len(vocab)))


def test_ties_go_to_the_greatest_pair_with_nul_bytes(tmp_path):
    """Byte strings order a prefix first ("!" < "!\x00"), so a tie between ("!", x) and
    ("!\x00", y) goes to the latter. The reference's heap key once ranked "!" higher."""
    text = "\x00!!\x00!\x00?"
    path = tmp_path / "nul.txt"
    path.write_bytes(text.encode())
    vocab, merges = train_bpe(path, 300, [], num_workers=1)
    expected_tokens, expected_merges = naive_train(text, 300, [])
    assert merges == expected_merges
    assert set(vocab.values()) == expected_tokens


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pieces=st.lists(corpus_pieces, min_size=50, max_size=400))
def test_workers_give_identical_results(tmp_path_factory, pieces):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_bytes("".join(pieces).encode())
    one = train_bpe(path, 300, [EOT], num_workers=1)
    assert train_bpe(path, 300, [EOT], num_workers=3) == one


def test_workers_on_reference_corpus():
    assert train_bpe(FIXTURES / "corpus.en", 400, [EOT], num_workers=2) == train_bpe(
        FIXTURES / "corpus.en", 400, [EOT], num_workers=1
    )


def test_special_tokens_never_merge(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(f"ab{EOT}ab{EOT}ab{EOT}" * 20)
    vocab, merges = train_bpe(path, 400, [EOT], num_workers=1)
    assert merges == [(b"a", b"b")]  # "<|" etc. never pair up across or inside the special
    assert vocab[257] == EOT.encode() and len(vocab) == 258


def test_missing_input_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="input file not found"):
        train_bpe(tmp_path / "nope.txt", 300, [EOT])


def test_non_utf8_input_names_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"hello world " * 10 + "caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"not valid UTF-8 at byte 123"):
        train_bpe(path, 300, [EOT], num_workers=1)
    with pytest.raises(ValueError, match=r"not valid UTF-8"):
        train_bpe(path, 300, [EOT], num_workers=2)


def test_vocab_size_too_small(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("hello")
    with pytest.raises(ValueError, match=r"vocab_size 256 is too small.*257"):
        train_bpe(path, 256, [EOT])
