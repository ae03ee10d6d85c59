"""GPT-2 file format: alphabet, round trips, HF `tokenizers` interop, malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinylm.bpe import Tokenizer, bytes_to_unicode, train_bpe
from tinylm.bpe.files import atomic_write, load_merges, load_vocab

FIXTURES = Path(__file__).parent / "fixtures"
EOT = "<|endoftext|>"


def test_alphabet_is_gpt2s():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small tokenizer trained on the reference corpus, saved to disk."""
    vocab, merges = train_bpe(FIXTURES / "corpus.en", 600, [EOT], num_workers=1)
    tokenizer = Tokenizer(vocab, merges, [EOT])
    out = tmp_path_factory.mktemp("trained")
    tokenizer.save(out / "vocab.json", out / "merges.txt")
    return tokenizer, out / "vocab.json", out / "merges.txt"


def test_save_and_load_round_trip(trained):
    tokenizer, vocab_path, merges_path = trained
    loaded = Tokenizer.from_files(vocab_path, merges_path, [EOT])
    assert loaded.vocab == tokenizer.vocab
    assert loaded.merges == tokenizer.merges
    text = (FIXTURES / "tinystories_sample.txt").read_text(encoding="utf-8") + EOT + "Ünïcödé 😀"
    assert loaded.encode(text) == tokenizer.encode(text)
    assert merges_path.read_text(encoding="utf-8").startswith("#version")


def test_hf_tokenizers_loads_our_files_with_same_ids(trained):
    hf = pytest.importorskip("tokenizers")
    tokenizer, vocab_path, merges_path = trained
    hf_tokenizer = hf.Tokenizer(hf.models.BPE.from_file(str(vocab_path), str(merges_path)))
    hf_tokenizer.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf_tokenizer.decoder = hf.decoders.ByteLevel()
    hf_tokenizer.add_special_tokens([EOT])  # already in vocab.json: keeps our id
    for name in ["corpus.en", "tinystories_sample.txt", "german.txt", "address.txt"]:
        text = (FIXTURES / name).read_text(encoding="utf-8")
        ids = tokenizer.encode(text)
        assert hf_tokenizer.encode(text).ids == ids, name
        assert hf_tokenizer.decode(ids, skip_special_tokens=False) == text
    bpe = hf.ByteLevelBPETokenizer(str(vocab_path), str(merges_path))
    text = "Hello  world,\n\nit's 2024 — naïve café 😀"
    assert bpe.encode(text).ids == tokenizer.encode(text)


def test_gpt2_fixture_files_load():
    vocab = load_vocab(FIXTURES / "gpt2_vocab.json")
    merges = load_merges(FIXTURES / "gpt2_merges.txt")
    assert len(vocab) == 50257 and vocab[50256] == EOT.encode() and vocab[220] == b" "
    assert len(merges) == 50000 and merges[0] == (b" ", b"t")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "non-empty JSON object"),
        ('{"a": "x"}', "not an integer"),
        ('{"a": 1, "b": 1}', "more than one token"),
        ('{"\\u0000": 1}', "outside the GPT-2 byte alphabet"),
    ],
)
def test_malformed_vocab(tmp_path, content, message):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_vocab(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("#version: 0.2\na b c\n", r":2: malformed merge"),
        ("a\n", r":1: malformed merge"),
        ("a  b\n", "malformed merge"),
        ("a \x00\n", "outside the GPT-2 byte alphabet"),
    ],
)
def test_malformed_merges(tmp_path, content, message):
    path = tmp_path / "merges.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_merges(path)


def test_merges_skip_version_line_and_accept_crlf(tmp_path):
    path = tmp_path / "merges.txt"
    path.write_bytes("#version: 0.2\r\nĠ t\r\nh e\r\n".encode())
    assert load_merges(path) == [(b" ", b"t"), (b"h", b"e")]


def test_from_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab file not found"):
        Tokenizer.from_files(tmp_path / "v.json", tmp_path / "m.txt")
    vocab = {bytes_to_unicode()[b]: b for b in range(256)}
    (tmp_path / "v.json").write_text(json.dumps(vocab))
    with pytest.raises(FileNotFoundError, match="merges file not found"):
        Tokenizer.from_files(tmp_path / "v.json", tmp_path / "m.txt")
    (tmp_path / "m.txt").write_text("a b\n")  # "ab" is not in the vocab
    with pytest.raises(ValueError, match="not in vocab"):
        Tokenizer.from_files(tmp_path / "v.json", tmp_path / "m.txt")


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as f:
        f.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
