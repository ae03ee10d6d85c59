"""bench.harness and the nn bench at toy size: interleaving, token data, the printed tables.

Timings are never asserted (a shared machine's speed is not the test); only which calls were
timed, in what order, and that the tables hold every row the flags ask for.
"""

import contextlib
import json

import numpy as np
import pytest
import torch

from bench import harness, nn_bench
from bench.harness import interleave, prepare_tokens
from tinylm.nn import ModelConfig
from tinylm.train import bundled_corpus, llama_config_dict
from tinylm.train import peak_flops as train_peak_flops


def test_interleave_times_every_run_every_round_after_its_warmup():
    calls, entered = [], []

    @contextlib.contextmanager
    def marked():
        entered.append("b")
        yield

    runs = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    rounds_done = []
    times = interleave(
        runs, 3, "cpu", steps=2, warmup=1, contexts={"b": marked}, on_round=rounds_done.append
    )
    # round 0: a's warm-up + 2 timed, b's warm-up + 2 timed; rounds 1, 2: 2 timed each, in turn
    assert calls == ["a"] * 3 + ["b"] * 3 + (["a"] * 2 + ["b"] * 2) * 2
    assert {k: len(v) for k, v in times.items()} == {"a": 6, "b": 6}
    assert all(t >= 0 for v in times.values() for t in v)
    assert entered == ["b"] * 3 and rounds_done == [0, 1, 2]


def test_prepare_tokens_gives_both_splits_and_caches_them(tmp_path):
    kwargs = dict(text_bytes=40_000, tokenizer_bytes=20_000, vocab_size=300, val_fraction=0.1)
    train, val = prepare_tokens(bundled_corpus(), cache=tmp_path, log=lambda *a: None, **kwargs)
    assert train.ndim == val.ndim == 1 and int(max(train.max(), val.max())) < 300
    assert 0 < len(val) < len(train)  # whole documents from the tail: not an exact fraction
    files = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.npy")}
    again = prepare_tokens(bundled_corpus(), cache=tmp_path, log=lambda *a: None, **kwargs)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.npy")} == files


def test_nn_bench_quick_headline_prints_both_tables(tmp_path, capsys):
    out = tmp_path / "nn.json"
    argv = ["--quick", "--no-compile", "--headline", "--rounds", "1", "--steps", "1"]
    nn_bench.main([*argv, "--gen-tokens", "2", "--json", str(out)])
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert set(results["train_tokens_per_s"]) == set(nn_bench.HEADLINE)
    for label in nn_bench.HEADLINE:
        assert f"| {label} |" in printed
    assert set(results["decode_tokens_per_s"]) == {
        "tinylm generate, eager",
        "HF generate (dynamic cache)",
        "HF generate (static cache)",
        "floor: the weight matvecs alone",
    }
    assert "| decoding, greedy, batch 1, 2 new tokens" in printed


def test_peak_flops_is_trains():
    """One owner of peak FLOP/s: the bench's peak on a CPU is train's (its theoretical bound,
    or train's measured matmul where the CPU's clock cannot be read), not a matmul of its own."""
    assert harness.peak_flops("cpu") == train_peak_flops(torch.device("cpu"), bf16=False)


def test_make_hf_has_export_hfs_config():
    """The HF peer is the Llama that export-hf describes (untied, no KV cache when asked)."""
    pytest.importorskip("transformers")
    config = ModelConfig(
        vocab_size=64, context_length=16, d_model=16, num_layers=1, num_heads=2, d_ff=32
    )
    hf = harness.make_hf(config, use_cache=False).config
    exported = llama_config_dict(config, rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=None)
    shape = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers")
    heads = ("num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps")
    for key in shape + heads:
        assert getattr(hf, key) == exported[key], key
    assert hf.tie_word_embeddings is False and hf.use_cache is False
