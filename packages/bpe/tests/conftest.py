"""Shared fixtures: the GPT-2 tokenizer (ours) and tiktoken's GPT-2 encoding, built offline.

Every test runs twice, on the native core and on the pure-Python reference (`bpe_path`, a
session fixture that sets TINYLM_BPE_NATIVE for everything built while it is active, worker
processes and subprocesses included). Without a native build the native half is skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tinylm.bpe import GPT2_PATTERN, Tokenizer, bytes_to_unicode, native_available

FIXTURES = Path(__file__).parent / "fixtures"
EOT = "<|endoftext|>"


# TINYLM_BPE_TEST_PATHS=native (or reference) runs one half only (scripts/sanitize.sh does).
PATHS = os.environ.get("TINYLM_BPE_TEST_PATHS", "native,reference").split(",")


@pytest.fixture(scope="session", params=PATHS, autouse=True)
def bpe_path(request) -> str:
    """Which implementation the test runs on: "native" or "reference"."""
    old = os.environ.get("TINYLM_BPE_NATIVE")
    os.environ["TINYLM_BPE_NATIVE"] = "1" if request.param == "native" else "0"
    try:
        if request.param == "native" and not native_available():
            pytest.skip("the native core is not built")
        yield request.param
    finally:
        if old is None:
            del os.environ["TINYLM_BPE_NATIVE"]
        else:
            os.environ["TINYLM_BPE_NATIVE"] = old


@pytest.fixture(scope="session")
def gpt2_tokenizer(bpe_path) -> Tokenizer:
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
