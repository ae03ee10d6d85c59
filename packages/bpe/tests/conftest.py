"""Shared fixtures: the GPT-2 tokenizer (ours) and tiktoken's GPT-2 encoding, built offline.

Every test runs twice, on the native core and on the pure-Python reference (`bpe_path`, a
session fixture that sets TINYLM_BPE_NATIVE for everything built while it is active, worker
processes and subprocesses included). Without a native build the native half is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


# What a child script of `out_of_memory` runs after its setup: each of its `calls` under the
# address-space cap, one line per call ("MemoryError" when the call raised it).
_CALLS_UNDER_THE_CAP = """
for call in calls:
    try:
        call()
        print("no error")
    except MemoryError:
        print("MemoryError")
"""


@pytest.fixture
def out_of_memory():
    """Run a child script (`setup` defines `calls` and caps RLIMIT_AS) on the native core and
    return what each call did: the native code must turn a failed allocation into MemoryError,
    never a crash. Needs Linux address-space limits, which ASan's shadow memory cannot live with."""
    if "asan" in os.environ.get("LD_PRELOAD", "") or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux address-space limits, which ASan's shadow memory cannot live with")

    def run(setup: str, *args: object) -> list[str]:
        child = subprocess.run(
            [sys.executable, "-c", setup + _CALLS_UNDER_THE_CAP, *map(str, args)],
            capture_output=True,
            text=True,
            env={**os.environ, "TINYLM_BPE_NATIVE": "1"},
            timeout=120,
        )
        assert child.returncode == 0, child.stderr
        return child.stdout.split()

    return run
