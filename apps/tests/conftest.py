"""Shared by the study tests: the tiny model every study is planned (and trained) at."""

import pytest

# A 1-layer d_model-16 model on a 280-token BPE of 60 KB of the bundled corpus, 8 steps of
# batch 4: planning is instant and a point trains in about a second on a CPU.
TINY_STUDY = {
    "data.text_bytes": "60000",
    "data.tokenizer_bytes": "30000",
    "data.vocab_size": "280",
    "model.d_model": "16",
    "model.num_layers": "1",
    "model.num_heads": "2",
    "model.d_ff": "32",
    "model.context_length": "16",
    "train.batch_size": "4",
    "train.max_steps": "8",
}


@pytest.fixture
def tiny() -> dict[str, str]:
    """`TINY_STUDY` as `--section.key value` overrides (a fresh copy per test)."""
    return dict(TINY_STUDY)
