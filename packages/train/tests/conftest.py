"""Shared fixtures: a small text corpus and a tiny run config that trains in about a second;
the tokenizer and HF directory of the import-hf / export-hf input tests, and the random ids of
the run-loop tests (their plain helpers are in hf_cases.py and run_cases.py)."""

from pathlib import Path

import numpy as np
import pytest

from packages.train.tests.hf_cases import EOT, make_run
from packages.train.tests.run_cases import VOCAB
from tinylm.bpe import Tokenizer, train_bpe
from tinylm.train import TrainConfig, bundled_corpus, export_hf


@pytest.fixture(scope="session")
def corpus_text() -> str:
    with open(bundled_corpus("openprose"), encoding="utf-8") as f:
        return f.read(40_000)


@pytest.fixture
def corpus_file(tmp_path: Path, corpus_text: str) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(corpus_text, encoding="utf-8")
    return path


def tiny_raw(root: Path, text: Path) -> dict:
    return {
        "data": {
            "text": str(text),
            "text_bytes": 0,
            "vocab_size": 300,
            "tokenizer_bytes": 0,
            "num_workers": 1,  # tiny data: encode in-process, no worker pool to start
        },
        "model": {"context_length": 32, "d_model": 32, "num_layers": 2, "num_heads": 2, "d_ff": 64},
        "optim": {"lr": 1e-2, "min_lr": 1e-3, "warmup_steps": 5},
        "train": {"max_steps": 30, "batch_size": 8, "device": "cpu", "log_interval": 5},
        "eval": {"interval": 10, "iters": 2},
        "run": {"root": str(root), "name": "tiny", "checkpoint_interval": 10},
        "sample": {"max_new_tokens": 8},
    }


@pytest.fixture
def tiny_config(tmp_path: Path, corpus_file: Path) -> TrainConfig:
    return TrainConfig.from_dict(tiny_raw(tmp_path / "runs", corpus_file))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, corpus_text) -> Tokenizer:
    path = tmp_path_factory.mktemp("bpe") / "corpus.txt"
    path.write_text(corpus_text[:20_000], encoding="utf-8")
    vocab, merges = train_bpe(path, 300, [EOT], num_workers=1)
    return Tokenizer(vocab, merges, [EOT])


@pytest.fixture
def hf_dir(tokenizer, tmp_path) -> Path:
    return export_hf(make_run(tmp_path / "src", tokenizer), tmp_path / "hf")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ids")
    rng = np.random.default_rng(0)
    for name, n in (("train", 50_000), ("val", 5_000)):
        np.save(directory / f"{name}.npy", (rng.zipf(1.3, n) % VOCAB).astype(np.uint16))
    return directory
