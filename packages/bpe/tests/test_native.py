"""The native core against its oracles: `regex.findall` for the scanner, the reference encoder
and tiktoken for encoding (all entry points), and the switch between the two paths.

These tests build a native and a reference tokenizer side by side, so they run once (in the
"native" half of the suite) and are skipped when the extension is not built.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.bpe import GPT2_PATTERN, Tokenizer, encode_file, native, native_available

FIXTURES = Path(__file__).parent / "fixtures"
BUNDLED_CORPUS = Path(__file__).parents[3] / "packages/train/src/tinylm/train/data/openprose_4M.txt"
EOT = "<|endoftext|>"
PATTERN = regex.compile(GPT2_PATTERN)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters of every class and the pattern's edge cases: contractions (any case), each kind of
# whitespace regex's \s knows (and \x1c-\x1f, which it does not), combining marks, digits of
# several scripts, letters outside the BMP, unassigned and private-use code points.
EDGE_CHARS = [
    *"'sdmtlvreSLD aZ09!?.-_\t\n\r\x0b\x0c\x1c\x1f",
    "\u00a0", "\u0085", "\u1680", "\u2000", "\u2028", "\u2029", "\u202f", "\u3000", "\ufeff",
    "\u0301", "\u0308", "\u20dd", "é", "ß", "日", "٣", "½", "Ⅻ", "\U0001d7d8", "😀", "\u200d",
    "\U00010940", "\U0010ffff", "\ue000", "\u0378", "ǅ", "ʰ", "\x00",
]  # fmt: skip
edge_text = st.text(st.sampled_from(EDGE_CHARS), max_size=40)
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
combining = st.text(st.characters(categories=("Mn", "Mc", "Me")), min_size=1, max_size=5)
runs = st.builds(
    lambda char, n, tail: char * n + tail,
    st.sampled_from(["a", "é", "7", "٣", " ", "\n", "\u3000", "!", "'", "😀", "\u0301"]),
    st.integers(0, 3000),
    st.text(st.sampled_from(EDGE_CHARS), max_size=3),
)
texts = st.one_of(edge_text, any_text, runs, st.lists(combining, max_size=4).map("".join))


@pytest.fixture(scope="module", autouse=True)
def _native_half_only(bpe_path):
    if bpe_path != "native":
        pytest.skip("compares both paths: runs once, in the native half")


def _build(native_on: bool, *args) -> Tokenizer:
    """A tokenizer built with the native core on or off."""
    old = os.environ.get("TINYLM_BPE_NATIVE")
    os.environ["TINYLM_BPE_NATIVE"] = "1" if native_on else "0"
    try:
        return Tokenizer(*args)
    finally:
        os.environ["TINYLM_BPE_NATIVE"] = old if old is not None else "1"


@pytest.fixture(scope="module")
def pair(gpt2_tokenizer):
    """(native, reference) GPT-2 tokenizers with <|endoftext|> and two overlapping specials."""
    args = (gpt2_tokenizer.vocab, gpt2_tokenizer.merges, [EOT, "<|end", "<|endoftext|>!!"])
    nat, ref = _build(True, *args), _build(False, *args)
    assert nat.is_native and not ref.is_native
    return nat, ref


@pytest.fixture(scope="module")
def core():
    return native.load("_core")


# -- scanner -----------------------------------------------------------------------------------


@SETTINGS
@given(texts)
def test_pretokens_equal_regex(core, text):
    assert core.pretokenize(text) == PATTERN.findall(text)
    expected = Counter(piece.encode("utf-8") for piece in PATTERN.findall(text))
    assert core.count_pretokens(text) == expected


def test_pretokens_equal_regex_on_every_code_point(core):
    """Every code point but surrogates, in contexts that expose its class (L, N, \\s, other):
    the pinned tables must agree with the installed `regex` everywhere."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    for context in ("a{} ", " {}", "{}{}"):
        text = "".join(context.format(c, c) for c in chars)
        assert core.pretokenize(text) == PATTERN.findall(text), context


def test_scanner_edge_cases(core):
    cases = ["", " ", "  ", "a  b", "a \n b", "x\u00a0 y", "'s'S'll'LL'd", "''s", " 's", "'", "\n"]
    for text in cases:
        assert core.pretokenize(text) == PATTERN.findall(text), text
    assert core.count_pretokens("") == {}


def test_surrogates_raise_like_the_reference(pair, core):
    for tokenizer in pair:
        with pytest.raises(UnicodeEncodeError):
            tokenizer.encode("ok \udc80")
    with pytest.raises(UnicodeEncodeError):
        core.count_pretokens("\ud800")
    with pytest.raises(TypeError):
        core.count_pretokens(b"bytes")


# -- encoding ----------------------------------------------------------------------------------

specials_spliced = st.lists(
    st.one_of(texts, st.sampled_from([EOT, "<|end", "<|endoftext|>!!", "<|endoftext", "|>"])),
    max_size=6,
).map("".join)


@SETTINGS
@given(specials_spliced, st.randoms(use_true_random=False))
def test_encode_entry_points_equal_reference_and_tiktoken(pair, tiktoken_gpt2, text, rng):
    nat, ref = pair
    ids = nat.encode(text)
    assert ids == ref.encode(text)
    if "<|end" not in text:  # tiktoken knows only <|endoftext|>
        assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
    cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 6))))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert list(nat.encode_iterable(chunks)) == ids
    assert nat.encode_batch([text, "", text[::-1]], num_threads=2) == [
        ids,
        [],
        ref.encode(text[::-1]),
    ]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(specials_spliced, max_size=40).map("\n".join))
def test_encode_file_equals_reference_on_hypothesis_text(pair, text):
    """Chunk cuts fall at specials and at whitespace after ASCII: many per file here."""
    import tempfile

    nat, ref = pair
    expected = ref.encode(text)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.txt"
        src.write_bytes(text.encode("utf-8"))
        for workers in (1, 2):
            ids = encode_file(nat, src, Path(tmp) / "out.npy", num_workers=workers)
            assert ids.tolist() == expected


def _odd_tables():
    """Merges in an unnatural order (a merge uses a token a later one makes, a string made twice,
    a repeated pair), shuffled byte ids, and ids above 2**16."""
    vocab = {(i * 7 + 3) % 256 + 70_000: bytes([i]) for i in range(256)}
    merges = [(b"ab", b"a"), (b"a", b"b"), (b"b", b"c"), (b"a", b"bc"), (b"ab", b"c"), (b"a", b"b")]
    merges += [(b"c", b"c"), (b"cc", b"cc"), (b" ", b"a"), (b"\xc3", b"\xa9"), (b"aba", b"b")]
    for a, b in merges:
        for token in (a, b, a + b):
            if token not in vocab.values():
                vocab[max(vocab) + 1] = token
    return vocab, merges


@SETTINGS
@given(st.text("abcé ", max_size=300))
def test_odd_merge_tables_equal_reference(text):
    """Short pieces (linear merge) and pieces over 64 bytes (heap merge) alike."""
    vocab, merges = _odd_tables()
    nat, ref = _build(True, vocab, merges, ["ab c"]), _build(False, vocab, merges, ["ab c"])
    assert nat.encode(text) == ref.encode(text)
    assert nat.encode(text.replace(" ", "")) == ref.encode(text.replace(" ", ""))


def test_long_pieces_equal_reference(pair):
    """The heap merge on long runs of one class, and the cache skipping very long pieces."""
    nat, ref = pair
    rng = random.Random(0)
    for n in (63, 64, 65, 257, 1500):
        for alphabet in ("a", "ab", "abcdefghijklmnopqrstuvwxyz", "é日", "!?."):
            text = "".join(rng.choice(alphabet) for _ in range(n))
            for t in (text, " " + text, text + " x"):
                assert nat.encode(t) == ref.encode(t)


def test_fixtures_and_bundled_corpus_equal_reference_and_tiktoken(pair, tiktoken_gpt2):
    nat, ref = pair
    texts = [(FIXTURES / n).read_text(encoding="utf-8") for n in ("corpus.en", "german.txt")]
    if BUNDLED_CORPUS.exists():
        texts.append(BUNDLED_CORPUS.read_text(encoding="utf-8"))
    for text in texts:
        ids = nat.encode(text)
        assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
        assert ids == ref.encode(text)


def test_threads_share_one_tokenizer_safely(pair):
    """Many threads encode with the same tokenizer at once: each gets its own cache."""
    nat, ref = pair
    base = (FIXTURES / "corpus.en").read_text(encoding="utf-8")
    texts = [base[i * 997 :] + f" {i} ünï{EOT}" for i in range(16)]
    expected = [ref.encode(t) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(nat.encode, texts)) == expected
    assert nat.encode_batch(texts, num_threads=4) == expected
    assert nat.encode_batch(texts) == expected
    assert nat.encode_batch([]) == []
    lines = [*base.splitlines(keepends=True), "", EOT, "x" * 10_000]  # many texts, uneven sizes
    for threads in (1, 2, 3):
        assert nat.encode_batch(iter(lines), num_threads=threads) == [ref.encode(t) for t in lines]


def test_cache_is_bounded(gpt2_tokenizer, monkeypatch):
    monkeypatch.setattr(Tokenizer, "cache_entries", 16)
    small = _build(True, gpt2_tokenizer.vocab, gpt2_tokenizer.merges, [EOT])
    text = " ".join(f"w{i}x" for i in range(200))
    assert small.encode(text) == gpt2_tokenizer.encode(text)
    assert 0 < small._native.cache_len() <= 16


@pytest.mark.parametrize("workers", [1, 2])
def test_encode_file_threads_equal_encode(tmp_path, pair, workers):
    nat, ref = pair
    base = (FIXTURES / "corpus.en").read_text(encoding="utf-8")
    text = f"{base}{EOT}ünïcödé\n" * 3 + "tail without newline<|end"
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    ids = encode_file(nat, tmp_path / "in.txt", tmp_path / "out.npy", num_workers=workers)
    assert ids.dtype == np.uint16
    assert ids.tolist() == ref.encode(text)
    ids = nat.encode_file(tmp_path / "in.txt", tmp_path / "out2.npy", num_workers=workers)
    assert ids.tolist() == ref.encode(text)


def test_ids_above_uint16_go_to_uint32_files(tmp_path):
    vocab, merges = _odd_tables()
    nat, ref = _build(True, vocab, merges), _build(False, vocab, merges)
    text = "abc cab é " * 50_000
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    ids = encode_file(nat, tmp_path / "in.txt", tmp_path / "out.npy", num_workers=2)
    assert ids.dtype == np.uint32
    assert ids.tolist() == ref.encode(text)


_OUT_OF_MEMORY_CHILD = """
import resource, sys
from tinylm.bpe import Tokenizer
tok = Tokenizer.from_files(sys.argv[1] + "/gpt2_vocab.json", sys.argv[1] + "/gpt2_merges.txt")
text = "ab " * 5_000_000  # 10M ids: 40 MB of uint32 in the C buffer
assert tok.is_native and tok.encode("ab ab") == [397, 450]
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
limit = used + (16 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
calls = (lambda: tok._native.encode_to_bytes(text, 2), lambda: tok.encode(text))
"""


def test_allocation_failure_is_a_memory_error(out_of_memory):
    assert out_of_memory(_OUT_OF_MEMORY_CHILD, FIXTURES) == ["MemoryError", "MemoryError"]


# -- switching paths ---------------------------------------------------------------------------


def test_env_forces_the_reference_path(gpt2_tokenizer, monkeypatch):
    assert native_available()
    monkeypatch.setenv("TINYLM_BPE_NATIVE", "0")
    assert not native_available()
    assert not Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges).is_native
    assert native.load("_core") is None


def test_missing_build_warns_once(monkeypatch, capsys):
    monkeypatch.setattr(native, "_modules", {})
    monkeypatch.setattr(native, "_warned", False)
    assert native.load("_no_such_core") is None
    assert native.load("_no_such_core") is None
    assert native.load("_another_missing_core") is None
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and err.count("\n") == 1, err
    assert "pure-Python" in err


def test_negative_or_huge_ids_use_the_reference_path():
    vocab = {i - 5: bytes([i]) for i in range(256)}
    tokenizer = _build(True, vocab, [])
    assert not tokenizer.is_native
    assert tokenizer.decode(tokenizer.encode("héllo")) == "héllo"
