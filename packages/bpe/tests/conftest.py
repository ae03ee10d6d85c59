"""Shared fixtures: the GPT-2 tokenizer (ours) and tiktoken's GPT-2 encoding, built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinylm.bpe import GPT2_PATTERN, Tokenizer, bytes_to_unicode

FIXTURES = Path(__file__).parent / "fixtures"
EOT = "<|endoftext|>"


@pytest.fixture(scope="session")
def gpt2_tokenizer() -> Tokenizer:
    return Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT])


@pytest.fixture(scope="session")
def tiktoken_gpt2():
    """tiktoken's `gpt2` encoding from the fixture files (no download)."""
    tiktoken = pytest.importorskip("tiktoken")
    byte_of = {char: b for b, char in bytes_to_unicode().items()}
    vocab = json.loads((FIXTURES / "gpt2_vocab.json").read_text(encoding="utf-8"))
    ranks = {
        bytes(byte_of[c] for c in token): rank for token, rank in vocab.items() if token != EOT
    }
    return tiktoken.Encoding(
        name="gpt2-offline",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={EOT: 50256},
    )
