"""The streamed tokenizer slice: cut at a document, a newline, or a whole UTF-8 character."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.apps.prepare import _write_head, file_fingerprint, utf8_prefix


@settings(deadline=None)  # no per-example time limit: a loaded CI box must not fail it
@given(st.text(), st.integers(0, 400))
def test_utf8_prefix_drops_only_a_cut_character(text, cut):
    data = text.encode("utf-8")[:cut]
    keep = utf8_prefix(data)
    assert len(data) - 3 <= keep <= len(data)
    prefix = data[:keep].decode("utf-8")  # valid UTF-8 ...
    # ... and the longest such prefix: the dropped bytes are the start of one character.
    assert text.startswith(prefix) and len(prefix.encode()) == keep
    assert keep == len(data) or keep + len(text[len(prefix)].encode()) > len(data)


def test_write_head_cuts_at_the_last_whole_document(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("one<|endoftext|>two two<|endoftext|>three", encoding="utf-8")
    dst = tmp_path / "head.txt"
    _write_head(src, dst, 30, "<|endoftext|>")
    assert dst.read_text() == "one<|endoftext|>"
    _write_head(src, dst, 1000, "<|endoftext|>")
    assert dst.read_text() == "one<|endoftext|>two two<|endoftext|>"
    src.write_text("line one\nline twö", encoding="utf-8")
    _write_head(src, dst, 15, "<|endoftext|>")
    assert dst.read_text() == "line one\n"
    src.write_text("añb", encoding="utf-8")  # ñ is 2 bytes: a 2-byte head cuts it
    _write_head(src, dst, 2, "<|endoftext|>")
    assert dst.read_bytes() == b"a"


def test_fingerprint_sees_size_and_edges(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"x" * 3_000_000)
    before = file_fingerprint(path)
    path.write_bytes(b"x" * 2_999_999 + b"y")  # same size, last byte changed
    assert file_fingerprint(path) != before
    path.write_bytes(b"x" * 3_000_000)
    assert file_fingerprint(path) == before


def test_prepare_hands_back_the_tokenizer_it_trained_or_loaded(tmp_path, monkeypatch):
    """The pipeline samples with `Prepared.tokenizer`: the BPE just trained (no save-and-reload),
    or the cached one loaded once; both encode like the files on disk."""
    import tinylm.apps.prepare as prepare_module
    from tinylm.apps.prepare import prepare_tokens
    from tinylm.train import DataConfig, load_tokenizer

    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text("the cat sat<|endoftext|>on the mat<|endoftext|>" * 20, encoding="utf-8")
    val.write_text("the cat<|endoftext|>", encoding="utf-8")
    data = DataConfig(vocab_size=270)
    loads = []
    real = prepare_module.load_tokenizer
    monkeypatch.setattr(prepare_module, "load_tokenizer", lambda *a: loads.append(a) or real(*a))
    fresh = prepare_tokens(train, val, data, tmp_path / "data", progress=False, log=lambda *a: None)
    assert loads == []  # trained in memory, not reloaded from its own files
    cached = prepare_tokens(
        train, val, data, tmp_path / "data", progress=False, log=lambda *a: None
    )
    assert len(loads) == 1 and cached.steps["tokenizer"]["cached"]
    on_disk = load_tokenizer(fresh.tokenizer_dir, data.special_tokens)
    text = "the mat sat on the cat<|endoftext|>"
    assert fresh.tokenizer.encode(text) == cached.tokenizer.encode(text) == on_disk.encode(text)
