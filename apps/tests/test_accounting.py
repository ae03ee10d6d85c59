"""Accounting numbers against closed forms written out here (CS336 assignment 1 §3.6, §4.3)."""

import pytest

from tinylm.apps.accounting import (
    activation_floats,
    adamw_step_flops,
    forward_flops,
    gpt2_config,
    largest_batch,
    training_days,
    training_memory,
)
from tinylm.apps.accounting_report import model_tables, tokenizer_experiment
from tinylm.bpe import Tokenizer
from tinylm.nn import model_stats


def xl_params_by_hand() -> int:
    v, d, n, d_ff = 50_257, 1600, 48, 6400
    block = 4 * d * d + 3 * d * d_ff + 2 * d  # Q,K,V,O + SwiGLU W1,W2,W3 + two RMSNorm gains
    return v * d + n * block + d + d * v  # embedding, blocks, final norm, untied lm_head


def test_gpt2_xl_parameters_and_memory():
    config = gpt2_config("XL")
    assert config.d_ff == 6400
    p = xl_params_by_hand()
    assert p == 2_127_057_600  # "≈2.1B" with the handout's SwiGLU formula
    assert model_stats(config).params == p
    assert training_memory(config, 0)["parameters"] == 4 * p  # fp32: 8.5 GB


def test_forward_flops_groups_by_hand():
    c = gpt2_config("XL")
    d, t, v, n, d_ff = 1600, 1024, 50_257, 48, 6400
    groups = forward_flops(c)
    assert groups["attention Q/K/V/O projections"] == n * 2 * t * 4 * d * d
    assert groups["attention scores QKᵀ"] == groups["attention values AV"] == n * 2 * t * t * d
    assert groups["feed-forward"] == n * 2 * t * 3 * d * d_ff
    assert groups["lm_head"] == 2 * t * d * v
    total = sum(groups.values())
    assert total == pytest.approx(4.513e12, rel=1e-3)  # the handout's ~4.5 TFLOPs
    assert total == t * model_stats(c).forward_flops_per_token
    # Longer context: the attention matmuls grow quadratically, the rest linearly.
    long = forward_flops(gpt2_config("XL", 16_384))
    assert long["attention scores QKᵀ"] == 256 * groups["attention scores QKᵀ"]
    assert long["feed-forward"] == 16 * groups["feed-forward"]


def test_adamw_memory_batch_and_days():
    c = gpt2_config("XL")
    d, t, v, h, n, d_ff = 1600, 1024, 50_257, 25, 48, 6400
    acts = n * (t * (8 * d + 4 * d_ff) + 2 * h * t * t) + t * d + 2 * t * v
    assert activation_floats(c) == acts
    p = xl_params_by_hand()
    mem = training_memory(c, 3)
    assert mem["total"] == 16 * p + 4 * 3 * acts
    assert mem["optimizer state"] == 8 * p
    best = largest_batch(c, 80e9)
    assert 16 * p + 4 * best * acts <= 80e9 < 16 * p + 4 * (best + 1) * acts
    flops = 1024 * t * 3 * model_stats(c).forward_flops_per_token + 14 * p
    assert adamw_step_flops(c, 1024) == flops
    days = flops * 400_000 / (0.5 * 19.5e12) / 86_400
    assert training_days(c, 1024, 400_000) == pytest.approx(days)
    assert 6000 < days < 7000


def test_model_tables_lists_every_size():
    text = "\n".join(model_tables())
    for name in ("small", "medium", "large", "XL"):
        assert f"GPT-2 {name}" in text
    assert "2,127,057,600" in text and "16,384" in text


def test_tokenizer_experiment_with_an_injected_clock():
    vocab = {i: bytes([i]) for i in range(256)}
    tok = Tokenizer(vocab, [], ["<|endoftext|>"])  # bytes only: exactly 1 byte per token
    text = "<|endoftext|>".join(["hello world", "a b c", "more text here"]) * 3
    ticks = iter([10.0, 12.0])
    r = tokenizer_experiment(tok, text, documents=2, clock=lambda: next(ticks))
    assert r["bytes_per_token"] == 1.0
    assert r["bytes_per_second"] == pytest.approx(len(text.encode()) / 2.0)
    assert r["pile_days"] == pytest.approx(825e9 / r["bytes_per_second"] / 86_400)
