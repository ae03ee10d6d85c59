"""Tokenizer: parity with tiktoken's GPT-2, streaming, special tokens, decoding."""

from __future__ import annotations

import itertools
import random
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.bpe import Tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
EOT = "<|endoftext|>"
FIXTURE_TEXTS = ["corpus.en", "tinystories_sample.txt", "german.txt", "address.txt"]

# Fragments that stress the GPT-2 pattern: contractions in any case, whitespace runs, CRLF,
# digits, several scripts, emoji (incl. ZWJ sequences), combining marks, pieces of special tokens.
FRAGMENTS = [
    "DON'T", "we'LL", "don't", "I'm", "they've", "'s", "'ll", "'LL", "'ve", "'re", "'d", "'",
    " ", "  ", "   ", "\n", "\r\n", "\t", "\n\n", "  \n ", " \t\n", "\u00a0", "\u3000",
    "123", "4567", " 89", "٣٤", "½", "héllo", " naïve", "日本語", " Привет", "مرحبا", "ελληνικά",
    "😀", "👩‍👩‍👧", "🇩🇪", "e\u0301", "a\u0308\u0323", "!!", "...", " ?!", "--",
    EOT, "<|endo", "ftext|>", "<|", "|>", "<|endoftext|", "a",
]  # fmt: skip
unicode_text = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
    ),
    max_size=25,
).map("".join)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", FIXTURE_TEXTS)
def test_fixture_texts_match_tiktoken(name, gpt2_tokenizer, tiktoken_gpt2):
    text = (FIXTURES / name).read_text(encoding="utf-8")
    ids = gpt2_tokenizer.encode(text)
    assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2_tokenizer.decode(ids) == text


@SETTINGS
@given(text=unicode_text)
def test_random_unicode_matches_tiktoken(text, gpt2_tokenizer, tiktoken_gpt2):
    ids = gpt2_tokenizer.encode(text)
    assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2_tokenizer.decode(ids) == text


def test_special_token_is_one_id(gpt2_tokenizer):
    assert gpt2_tokenizer.encode(f"a{EOT}b") == [64, 50256, 65]
    assert gpt2_tokenizer.decode([50256]) == EOT


@st.composite
def text_and_chunking(draw):
    text = draw(unicode_text)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.fixture(scope="module")
def overlapping_tokenizer(gpt2_tokenizer) -> Tokenizer:
    return Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges, [EOT, EOT + EOT])


@pytest.fixture(scope="module")
def tokenizers(gpt2_tokenizer, overlapping_tokenizer) -> list[Tokenizer]:
    """No special tokens (nothing held back for them), one, and two overlapping ones."""
    plain = Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges)
    return [plain, gpt2_tokenizer, overlapping_tokenizer]


@SETTINGS
@given(case=text_and_chunking())
def test_encode_iterable_equals_encode(case, tokenizers):
    text, chunks = case
    for tokenizer in tokenizers:
        assert list(tokenizer.encode_iterable(iter(chunks))) == tokenizer.encode(text)


@pytest.mark.parametrize(
    "text",
    [
        "x'll", "x'l", "don'", "a  b", "a \t\nb", "  \n  word", f"{EOT}{EOT}{EOT}", "ab" + EOT[:5],
        f"a{EOT}", "word" * 50, "",
    ],
)  # fmt: skip
def test_encode_iterable_one_char_chunks(text, tokenizers):
    for tokenizer in tokenizers:
        assert list(tokenizer.encode_iterable(iter(text))) == tokenizer.encode(text)


def _generated_lines(total_bytes: int, seed: int = 0):
    """About `total_bytes` of text, produced line by line (never held whole)."""
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "Don't", "4096", "naïve", "日本", "—", "!"]
    produced = 0
    while produced < total_bytes:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(0, 14)))
        line += rng.choice(["\n", "\n\n", "  \n", EOT + "\n"])
        produced += len(line)
        yield line


def test_encode_iterable_memory_is_bounded(gpt2_tokenizer):
    total_bytes = 2_000_000
    expected_prefix = gpt2_tokenizer.encode("".join(_generated_lines(20_000)))
    tracemalloc.start()
    try:
        count, first = 0, []
        for token_id in gpt2_tokenizer.encode_iterable(_generated_lines(total_bytes)):
            if count < 1000:
                first.append(token_id)
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count > total_bytes // 10
    assert first == expected_prefix[:1000]
    assert peak < total_bytes / 4, f"peak {peak} bytes while streaming {total_bytes} bytes"


def test_overlapping_special_tokens_longest_wins(overlapping_tokenizer):
    double_id = overlapping_tokenizer._special_ids[EOT + EOT]
    assert (
        double_id not in (50256,) and overlapping_tokenizer.vocab[double_id] == (EOT * 2).encode()
    )
    ids = overlapping_tokenizer.encode(f"a{EOT}{EOT}{EOT}b")
    assert ids == [64, double_id, 50256, 65]
    assert overlapping_tokenizer.decode(ids) == f"a{EOT}{EOT}{EOT}b"


def test_unregistered_special_looking_text_is_ordinary(gpt2_tokenizer, tiktoken_gpt2):
    plain = Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges)  # no special tokens
    text = f"hello{EOT}world"
    ids = plain.encode(text)
    assert 50256 not in ids
    assert ids == tiktoken_gpt2.encode_ordinary(text)
    other = Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges, ["<|other|>"])
    assert other.encode(text) == ids


def test_decode_invalid_utf8_gives_replacement_char(gpt2_tokenizer):
    invalid = [i for i, token in gpt2_tokenizer.vocab.items() if token == b"\xff"]
    assert gpt2_tokenizer.decode([*gpt2_tokenizer.encode("ok "), *invalid]) == "ok \ufffd"
    # A lone half of a multi-byte character is malformed too.
    first_half = [gpt2_tokenizer._byte_ids["é".encode()[0]]]
    assert gpt2_tokenizer.decode(first_half) == "\ufffd"


@pytest.mark.parametrize("bad_id", [50257 + 7, -1])
def test_decode_unknown_id_names_it(gpt2_tokenizer, bad_id):
    with pytest.raises(ValueError, match=rf"unknown token id {bad_id}\b"):
        gpt2_tokenizer.decode([1, 2, bad_id])
    with pytest.raises(ValueError, match=str(bad_id)):
        gpt2_tokenizer.decode(iter([bad_id]))


def test_vocab_without_all_bytes_is_rejected():
    vocab = {i: bytes([i]) for i in range(255)}
    with pytest.raises(ValueError, match="single-byte"):
        Tokenizer(vocab, [])


def test_merge_of_unknown_token_is_rejected():
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(ValueError, match="not in vocab"):
        Tokenizer(vocab, [(b"a", b"b")])


def test_encode_cache_stays_bounded(gpt2_tokenizer, monkeypatch):
    monkeypatch.setattr(Tokenizer, "cache_entries", 16)
    small = Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges, [EOT])
    text = " ".join(f"w{i}x" for i in range(200))
    assert small.encode(text) == gpt2_tokenizer.encode(text)
    cached = small._native.cache_len() if small.is_native else len(small._cache)
    assert 0 < cached <= 16


@pytest.mark.parametrize("cache_entries", [1 << 16, 64])
def test_cold_long_text_takes_the_batch_path(
    gpt2_tokenizer, tiktoken_gpt2, monkeypatch, cache_entries
):
    """A fresh tokenizer on a long text merges its new pre-tokens in one numpy batch (also when
    they overflow the cache); the ids must not change."""
    monkeypatch.setattr(Tokenizer, "cache_entries", cache_entries)
    fresh = Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges, [EOT])
    text = (FIXTURES / "corpus.en").read_text(encoding="utf-8")
    text = f"{text}{EOT}{text[::-1]}{EOT}ünïcödé “quoted” {text.upper()}"
    ids = fresh.encode(text)
    assert fresh.is_native or fresh._batch_merger is not None  # native: no batch path, same ids
    assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
    assert len(fresh._cache) <= cache_entries
    assert fresh.encode(text) == ids  # warm now
