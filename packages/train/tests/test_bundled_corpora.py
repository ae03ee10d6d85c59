"""The corpora shipped in tinylm.train's data/: contents, attribution, `data.text` names."""

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tinylm.train import DataConfig, bundled_corpus, load_config, prepare_data

EOT = "<|endoftext|>"
LICENSES = Path(bundled_corpus("openprose")).parent / "LICENSES.md"


def test_tinystories_is_whole_stories_with_its_licence_beside_it():
    path = bundled_corpus("tinystories")
    raw = path.read_bytes()
    text = raw.decode("utf-8")  # valid UTF-8, or this raises
    stories = text.split(f"\n{EOT}\n")
    assert stories[-1] == "" and len(stories) - 1 == text.count(EOT) == 2316  # none cut short
    assert all(s.strip() and EOT not in s for s in stories[:-1])
    licences = LICENSES.read_text(encoding="utf-8")
    section = licences[licences.index("# tinystories_2M.txt") :]
    assert "CDLA-Sharing-1.0" in section and "Eldan" in section  # licence and attribution
    assert hashlib.sha256(raw).hexdigest() in section
    assert f"{len(raw):,} bytes" in section
    assert "# openprose_4M.txt" in licences


def test_data_text_names_a_bundled_corpus(tmp_path):
    data = DataConfig(text="tinystories", text_bytes=60_000, vocab_size=280, tokenizer_bytes=0)
    prepared = prepare_data(data, tmp_path, log=lambda *a: None)
    assert prepared.tokenizer_dir.name.startswith("tinystories_2M-")
    split = (prepared.tokenizer_dir / "train.txt").read_text(encoding="utf-8")
    split += (prepared.tokenizer_dir / "val.txt").read_text(encoding="utf-8")
    head = bundled_corpus("tinystories").read_bytes()[:60_000].decode("utf-8", errors="ignore")
    assert head.startswith(split) and len(split) > 50_000


def test_unknown_bundled_name_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match=re.escape("bundled: openprose, tinystories")):
        bundled_corpus("tinystory")


def test_the_default_run_trains_on_tinystories(tmp_path):
    """The embedded default run's corpus is TinyStories, named explicitly (its 2-minute sample read
    better than openprose's at the same 600 steps; README): "" keeps meaning openprose, which old
    run directories were trained on."""
    data = replace(load_config().data, text_bytes=60_000, vocab_size=280, tokenizer_bytes=0)
    assert data.text == "tinystories"
    prepared = prepare_data(data, tmp_path, log=lambda *a: None)
    assert prepared.tokenizer_dir.name.startswith("tinystories_2M-")
    assert (
        (prepared.tokenizer_dir / "train.txt")
        .read_text(encoding="utf-8")
        .startswith(bundled_corpus("tinystories").read_text(encoding="utf-8")[:1000])
    )
