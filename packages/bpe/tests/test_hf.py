"""tokenizer.json: HF `tokenizers` reading ours gives our ids; we read ours and HF-written ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.bpe import Tokenizer

tokenizers = pytest.importorskip("tokenizers")

FIXTURES = Path(__file__).parent / "fixtures"
EOT = "<|endoftext|>"
FIXTURE_TEXTS = ["corpus.en", "tinystories_sample.txt", "german.txt", "address.txt"]
# Overlapping specials (longest match wins), one with a space, one outside ASCII.
SPECIALS = [EOT, EOT + EOT, "<|end of text|>", "<|ünï|>", "<pad>"]
FRAGMENTS = [
    "DON'T", "we'LL", "don't", "I'm", "'s", "'ll", "'ve", " ", "   ", "\n", "\r\n", "\t",
    "  \n ", "\u00a0", "123", " 89", "½", "héllo", "日本語", " Привет", "😀", "👩‍👩‍👧",
    "e\u0301", "...", " ?!", "<|endo", "ftext|>", "<|", "|>", "a", *SPECIALS,
]  # fmt: skip
unicode_text = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=6),
    ),
    max_size=25,
).map("".join)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def small_tokenizer() -> Tokenizer:
    """The 500-token reference BPE trained on corpus.en, with extra (overlapping) specials."""
    tok = Tokenizer.from_files(
        FIXTURES / "train-bpe-reference-vocab.json", FIXTURES / "train-bpe-reference-merges.txt"
    )
    return Tokenizer(tok.vocab, tok.merges, SPECIALS)


@pytest.fixture(scope="module", params=["gpt2", "small"])
def pair(request, tmp_path_factory):
    """(our tokenizer, HF tokenizers loading the tokenizer.json we wrote for it)."""
    if request.param == "gpt2":
        vocab, merges = FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt"
        tok = Tokenizer.from_files(vocab, merges, [EOT, "<|end of text|>"])
    else:
        tok = small_tokenizer()
    path = tok.save_hf(tmp_path_factory.mktemp("hf") / "tokenizer.json")
    return tok, tokenizers.Tokenizer.from_file(str(path))


@pytest.mark.parametrize("name", FIXTURE_TEXTS)
def test_hf_gives_our_ids_on_fixtures(name, pair):
    tok, hf = pair
    text = (FIXTURES / name).read_text(encoding="utf-8")
    text = f"{text[:2000]}{EOT}{text[2000:4000]}{EOT}{EOT}<|end of text|>{text[4000:]}"
    ids = tok.encode(text)
    assert hf.encode(text).ids == ids
    assert hf.decode(ids, skip_special_tokens=False) == text


@SETTINGS
@given(text=unicode_text)
def test_hf_gives_our_ids_on_random_text(text, pair):
    tok, hf = pair
    assert hf.encode(text).ids == tok.encode(text)


def test_specials_keep_their_ids(pair):
    tok, hf = pair
    for text, token_id in tok._special_ids.items():
        assert hf.token_to_id(text) == token_id
        assert hf.encode(f"a{text}b").ids == tok.encode(f"a{text}b")


@pytest.mark.parametrize("kind", ["gpt2", "small"])
def test_round_trip(kind, tmp_path):
    if kind == "gpt2":
        tok = Tokenizer.from_files(
            FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT]
        )
    else:
        tok = small_tokenizer()
    tok.save_hf(tmp_path)  # a directory gets tokenizer.json
    back = Tokenizer.from_hf(tmp_path)
    assert back.vocab == tok.vocab
    assert back.merges == tok.merges
    assert back.special_tokens == tok.special_tokens
    assert back._special_ids == tok._special_ids


def test_reads_a_tokenizer_json_written_by_hf(tmp_path, gpt2_tokenizer, tiktoken_gpt2):
    """GPT-2 as the `tokenizers` library itself describes and saves it."""
    from tokenizers import decoders, models, pre_tokenizers, processors

    bpe = models.BPE.from_file(str(FIXTURES / "gpt2_vocab.json"), str(FIXTURES / "gpt2_merges.txt"))
    hf = tokenizers.Tokenizer(bpe)
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.post_processor = processors.ByteLevel(trim_offsets=False)
    hf.add_special_tokens([EOT])
    hf.save(str(tmp_path / "tokenizer.json"))
    tok = Tokenizer.from_hf(tmp_path / "tokenizer.json")
    text = (FIXTURES / "corpus.en").read_text(encoding="utf-8")[:20_000] + EOT + "x"
    assert tok.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all")
    assert tok.vocab == gpt2_tokenizer.vocab
    assert tok.merges == gpt2_tokenizer.merges


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("normalizer", lambda raw: raw.update(normalizer={"type": "NFC"})),
        ("pre_tokenizer.type", lambda raw: raw.update(pre_tokenizer={"type": "Whitespace"})),
        ("pre_tokenizer.use_regex", lambda raw: raw["pre_tokenizer"].update(use_regex=False)),
        ("model.ignore_merges", lambda raw: raw["model"].update(ignore_merges=True)),
        ("model.type", lambda raw: raw["model"].update(type="WordPiece")),
        ("lstrip", lambda raw: raw["added_tokens"][0].update(lstrip=True)),
    ],
)
def test_refuses_other_pipelines_naming_the_field(field, change, tmp_path):
    path = small_tokenizer().save_hf(tmp_path / "tokenizer.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    change(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ValueError, match=field) as info:
        Tokenizer.from_hf(path)
    assert "\n" not in str(info.value)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json not found"):
        Tokenizer.from_hf(tmp_path)


def test_save_hf_with_a_trailing_slash_makes_a_directory(tmp_path):
    """`save_hf("out/")` once wrote a file named `out`: a trailing slash names a directory."""
    tok = small_tokenizer()
    written = tok.save_hf(f"{tmp_path / 'out'}/")
    assert written == tmp_path / "out" / "tokenizer.json" and (tmp_path / "out").is_dir()
    assert Tokenizer.from_hf(f"{tmp_path / 'out'}/").vocab == tok.vocab
    assert tok.save_hf(tmp_path / "out") == written  # an existing directory, no slash
    assert tok.save_hf(tmp_path / "file.json") == tmp_path / "file.json"  # a file name
    (tmp_path / "taken").write_text("x")
    with pytest.raises(NotADirectoryError, match="taken exists and is not a directory"):
        tok.save_hf(f"{tmp_path / 'taken'}/")
    assert (tmp_path / "taken").read_text() == "x"
