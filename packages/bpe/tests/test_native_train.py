"""The native training core against the reference: train_bpe end to end and merge_pairs alone.

The reference (TINYLM_BPE_NATIVE=0: pure-Python counting and merge loop) is the oracle; the
native path must give the same merges, in the same order, and the same vocab.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.bpe import GPT2_PATTERN, native, train_bpe
from tinylm.bpe import train as train_module
from tinylm.bpe.pretokenize import count_pretokens
from tinylm.bpe.train import merge_pairs

core = native.load("_train_core")
pytestmark = pytest.mark.skipif(core is None, reason="native training core not built")

FIXTURES = Path(__file__).parent / "fixtures"
# The bundled corpus of the train package (in the repository; bpe's tests read it by path and do
# not import train). Skipped where bpe is tested without the rest of the repository.
OPENPROSE = Path(__file__).parents[3] / "packages/train/src/tinylm/train/data/openprose_4M.txt"
EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def bpe_path() -> str:
    """Overrides conftest's run-on-both-paths fixture: these tests pick the path per call."""
    return "both"


def train_both(monkeypatch, *args, num_workers=1, **kwargs):
    """(native, reference) results; the reference counts in-process (its workers are tested
    in test_train), the native path in `num_workers` threads."""
    monkeypatch.setenv("TINYLM_BPE_NATIVE", "0")
    reference = train_bpe(*args, num_workers=1, **kwargs)
    monkeypatch.setenv("TINYLM_BPE_NATIVE", "1")
    return train_bpe(*args, num_workers=num_workers, **kwargs), reference


def test_native_path_runs_by_default(monkeypatch, tmp_path):
    """train_bpe dispatches to the native core unless TINYLM_BPE_NATIVE=0."""
    path = tmp_path / "c.txt"
    path.write_text("low lower lowest " * 20)
    calls = []
    real = train_module.train_merges_native
    monkeypatch.setattr(
        train_module, "train_merges_native", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    monkeypatch.delenv("TINYLM_BPE_NATIVE", raising=False)
    native_result = train_bpe(path, 270, [EOT])
    assert calls == [1]
    monkeypatch.setenv("TINYLM_BPE_NATIVE", "0")
    assert train_bpe(path, 270, [EOT]) == native_result
    assert calls == [1]


def test_corpus_en_500(monkeypatch):
    ours, reference = train_both(monkeypatch, FIXTURES / "corpus.en", 500, [EOT])
    assert ours == reference
    assert len(ours[0]) == 500


def test_invalid_utf8_replaced_like_the_reference(monkeypatch, tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes((b"caf\xe9 ol\xff\xfe\xc3 " + EOT.encode() + b" hello world\n") * 3000)
    ours, reference = train_both(monkeypatch, path, 320, [EOT], num_workers=2, errors="replace")
    assert ours == reference
    assert any("\ufffd".encode() in token for token in ours[0].values())


@pytest.fixture(scope="module")
def openprose_reference_10k():
    """The reference on the 4 MB corpus (~3-5 s on the 2-core dev machine), once per module."""
    if not OPENPROSE.exists():
        pytest.skip("bundled corpus not in this checkout")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TINYLM_BPE_NATIVE", "0")
        return train_bpe(OPENPROSE, 10_000, [EOT])


def test_bundled_corpus_2000(monkeypatch, openprose_reference_10k):
    monkeypatch.setenv("TINYLM_BPE_NATIVE", "1")
    vocab, merges = train_bpe(OPENPROSE, 2_000, [EOT], num_workers=2)
    # Greedy BPE: the first merges of a larger vocab are the merges of a smaller one.
    ref_vocab, ref_merges = openprose_reference_10k
    assert merges == ref_merges[: len(merges)]
    assert len(vocab) == 2_000
    assert [vocab[i] for i in range(1_999)] == [ref_vocab[i] for i in range(1_999)]
    assert vocab[1_999] == EOT.encode()


def test_bundled_corpus_10000(monkeypatch, openprose_reference_10k):
    monkeypatch.setenv("TINYLM_BPE_NATIVE", "1")
    assert train_bpe(OPENPROSE, 10_000, [EOT]) == openprose_reference_10k


def test_native_counts_equal_reference_counts(monkeypatch):
    """The threaded native counter sees the same pre-tokens as the reference's processes."""
    from tinylm.bpe.train_native import count_pretokens_native

    path = FIXTURES / "corpus.en"
    expected = count_pretokens(path, [EOT], num_workers=1)
    for threads in (1, 2, 3):
        table = count_pretokens_native(
            core, path, (EOT,), num_workers=threads, progress=False, errors="strict"
        )
        assert core.counts_to_dict(table) == {word.encode(): n for word, n in expected.items()}


def test_counting_memory_is_bounded(monkeypatch, tmp_path):
    """Whatever the file size, each thread reads small chunks and only a few are in flight."""
    from tinylm.bpe import train_native

    path = tmp_path / "big.txt"
    path.write_bytes(b"the quick brown fox " * 300_000 + EOT.encode() + b" jumps" * 1000)
    reads, in_flight, most = [], [0], [0]
    real_read, real_pool = train_native.read_text, train_native.ThreadPoolExecutor

    def read_text(p, start, end, errors):
        reads.append(end - start)
        return real_read(p, start, end, errors)

    class Pool(real_pool):
        def submit(self, fn, *args):
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
            future = super().submit(fn, *args)
            future.add_done_callback(lambda _: in_flight.__setitem__(0, in_flight[0] - 1))
            return future

    monkeypatch.setattr(train_native, "read_text", read_text)
    monkeypatch.setattr(train_native, "ThreadPoolExecutor", Pool)
    table = train_native.count_pretokens_native(
        core, path, (EOT,), num_workers=2, progress=False, errors="strict"
    )
    expected = count_pretokens(path, [EOT], num_workers=1)
    assert core.counts_to_dict(table) == {word.encode(): n for word, n in expected.items()}
    assert sum(reads) == path.stat().st_size and len(reads) >= 6
    assert max(reads) <= 2 * train_native.CHUNK_BYTES
    assert most[0] <= 2 * 2


# ---- hypothesis: arbitrary Unicode with special tokens spliced in ----------------------------

SPECIALS = ["<|endoftext|>", "<|end|>", "<|endoftext|><|end|>", "é\x00", " sp"]
text_pieces = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=8),
    st.text("ab \x00\n!é", max_size=12),
    st.sampled_from(SPECIALS),
    st.sampled_from(["aaaa", "abab", " the", "\u0301", "日本語", "  \n", "😀😀"]),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    pieces=st.lists(text_pieces, max_size=50),
    extra=st.integers(0, 80),
    specials=st.lists(st.sampled_from(SPECIALS), max_size=3, unique=True),
    workers=st.sampled_from([1, 2, 3]),
)
def test_random_corpora_native_equals_reference(
    monkeypatch, tmp_path_factory, pieces, extra, specials, workers
):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_bytes("".join(pieces).encode())
    vocab_size = 256 + len(specials) + extra
    ours, reference = train_both(monkeypatch, path, vocab_size, specials, num_workers=workers)
    assert ours == reference


words = st.dictionaries(
    st.binary(min_size=0, max_size=12) | st.sampled_from([b"ab", b"aaa", b"abab", b"a\x00b"]),
    st.integers(1, 50),  # counted words occur at least once
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(word_counts=words, num_tokens=st.integers(0, 400))
def test_merge_pairs_equals_reference(word_counts, num_tokens):
    """The C merge loop alone on arbitrary bytes (not only UTF-8 pre-tokens)."""
    assert core.merge_pairs(word_counts, num_tokens) == _reference_on_bytes(word_counts, num_tokens)


class _RawWord(str):
    """A str key whose .encode() gives arbitrary bytes: feeds raw bytes to the reference."""

    raw: bytes

    def encode(self, *args, **kwargs) -> bytes:
        return self.raw


def _reference_on_bytes(word_counts: dict[bytes, int], num_tokens: int):
    wrapped = {}
    for word, count in word_counts.items():
        key = _RawWord(word.hex())  # distinct text per word
        key.raw = word
        wrapped[key] = count
    return merge_pairs(wrapped, num_tokens)


def test_merge_pairs_bad_input():
    with pytest.raises(TypeError):
        core.merge_pairs({"str": 1}, 300)
    with pytest.raises(TypeError):
        core.merge_pairs([(b"ab", 1)], 300)
    with pytest.raises(ValueError):
        core.merge_pairs({b"ab": -1}, 300)
    with pytest.raises(OverflowError):
        core.merge_pairs({b"ab": 2**70}, 300)
    with pytest.raises(OverflowError):  # pair counts could not be kept in 64 bits
        core.merge_pairs({b"abc": 2**62, b"abd": 2**62}, 300)
    assert core.merge_pairs({}, 300) == ([bytes([i]) for i in range(256)], [])
    assert core.merge_pairs({b"ab": 5}, 0) == ([bytes([i]) for i in range(256)], [])


def test_merge_pairs_progress_and_its_errors():
    word_counts = {bytes([i, j]): i + j for i in range(40) for j in range(40)}
    seen = []
    tokens, _ = core.merge_pairs(word_counts, 256 + 600, seen.append)
    assert sum(seen) == len(tokens) - 256 == 600

    def fail(n):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        core.merge_pairs(word_counts, 256 + 600, fail)


def test_long_runs_and_many_words():
    """One very long run of one byte, and many distinct words."""
    word_counts = {b"a" * 5000: 3, b"ab" * 2000: 2, **{str(i).encode(): 1 for i in range(3000)}}
    assert core.merge_pairs(word_counts, 600) == _reference_on_bytes(word_counts, 600)


def test_a_run_of_a_million_bytes():
    """Merging every occurrence in a word is one pass (an earlier version shifted the word's
    tail per occurrence: quadratic, hours for this word)."""
    tokens, merges = core.merge_pairs({b"a" * (1 << 20): 1}, 400)
    assert merges == [(b"a" * (1 << k), b"a" * (1 << k)) for k in range(20)]
    assert tokens[256:] == [b"a" * (2 << k) for k in range(20)]


def test_consume_empties_the_dict():
    word_counts = {b"low": 5, b"lower": 2, b"newest": 6}
    expected = core.merge_pairs(dict(word_counts), 270)
    assert core.merge_pairs(word_counts, 270, consume=True) == expected
    assert word_counts == {}


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=40), max_size=6))
def test_count_text_equals_the_regex(texts):
    """The C counter splits as the GPT-2 regex does; merge_counts adds tables up."""
    total = core.new_counts()
    for text in texts:
        table = core.new_counts()
        core.count_text(table, [text, text])
        core.merge_counts(total, table)
    expected = Counter(p.encode() for text in texts for p in regex.findall(GPT2_PATTERN, text))
    assert core.counts_to_dict(total) == {word: 2 * n for word, n in expected.items()}


def test_counts_tables_bad_input():
    table = core.new_counts()
    with pytest.raises(TypeError):
        core.count_text({}, ["a"])
    with pytest.raises(TypeError):
        core.count_text(table, ["a", b"b"])
    with pytest.raises(UnicodeEncodeError):
        core.count_text(table, ["\ud800"])
    with pytest.raises(ValueError):
        core.merge_counts(table, table)
    core.count_text(table, ["", "x y"])
    assert core.counts_to_dict(table) == {b"x": 1, b" y": 1}
    assert core.merge_pairs(table, 300, consume=True)[1] == [(b" ", b"y")]
    assert core.counts_to_dict(table) == {}


_OUT_OF_MEMORY_CHILD = """
import resource
from tinylm.bpe import native
core = native.load("_train_core")
words = {b"ab" * 4_000_000: 1}  # 32 MB of int32 ids in the merge loop's copy
table = core.new_counts()
text = ["x" * 2_000_000]  # one 2 MB pre-token: 2 MB in the table's arena
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
limit = used + (1 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
calls = (lambda: core.merge_pairs(words, 300), lambda: core.count_text(table, text))
"""


def test_allocation_failure_is_a_memory_error(out_of_memory):
    assert out_of_memory(_OUT_OF_MEMORY_CHILD) == ["MemoryError", "MemoryError"]
