"""TransformerLM against a reference forward written with torch.nn.functional; config and stats."""

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

import tinylm.nn
from tinylm.nn import (
    ComputeConfig,
    ModelConfig,
    ModelStats,
    TransformerBlock,
    TransformerLM,
    cross_entropy,
    default_d_ff,
    model_stats,
)

TINY = ModelConfig(vocab_size=50, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)


value_checks = pytest.mark.skipif(
    not tinylm.nn.TYPECHECK, reason="value checks are off with TINYLM_TYPECHECK=0"
)


def reference_forward(ids: torch.Tensor, sd: dict, config: ModelConfig) -> torch.Tensor:
    """The whole LM from torch.nn.functional and the state dict: an independent oracle."""
    d, h = config.d_model, config.num_heads
    dk = d // h
    seq = ids.shape[-1]
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * config.rope_theta ** (
        -torch.arange(0, dk, 2, dtype=torch.float64) / dk
    )
    rotation = torch.polar(torch.ones_like(angles), angles)

    def rope(t):
        if config.position == "none":
            return t
        c = torch.view_as_complex(t.double().reshape(*t.shape[:-1], dk // 2, 2).contiguous())
        return torch.view_as_real(c * rotation).flatten(-2).to(t.dtype)

    def norm(t, key):
        if config.norm == "none":
            return t
        return F.rms_norm(t, (d,), sd[key], eps=1e-5)

    def attn(t, p):
        q, k, v = (
            rearrange(F.linear(t, sd[f"{p}.{n}_proj.weight"]), "b s (h d) -> b h s d", h=h)
            for n in "qkv"
        )
        out = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        return F.linear(rearrange(out, "b h s d -> b s (h d)"), sd[f"{p}.output_proj.weight"])

    def ffn(t, p):
        gate = F.silu(F.linear(t, sd[f"{p}.w1.weight"]))
        if config.ffn == "swiglu":
            gate = gate * F.linear(t, sd[f"{p}.w3.weight"])
        return F.linear(gate, sd[f"{p}.w2.weight"])

    x = F.embedding(ids, sd["token_embeddings.weight"])
    for i in range(config.num_layers):
        p = f"layers.{i}"
        if config.norm == "post":
            z = norm(x + attn(x, f"{p}.attn"), f"{p}.ln1.weight")
            x = norm(z + ffn(z, f"{p}.ffn"), f"{p}.ln2.weight")
        else:
            z = x + attn(norm(x, f"{p}.ln1.weight"), f"{p}.attn")
            x = z + ffn(norm(z, f"{p}.ln2.weight"), f"{p}.ffn")
    x = norm(x, "ln_final.weight")
    return F.linear(x, sd["lm_head.weight"])


ABLATIONS = [
    {},
    {"norm": "post"},
    {"norm": "none"},
    {"position": "none"},
    {"ffn": "silu", "d_ff": 96},
    {"tie_embeddings": True},
]


@pytest.mark.parametrize(
    "changes", ABLATIONS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "base"
)
def test_forward_matches_functional_reference(changes):
    torch.manual_seed(0)
    config = dataclasses.replace(TINY, **changes)
    model = TransformerLM(config)
    ids = torch.randint(0, 50, (2, 12))
    logits = model(ids)
    assert logits.shape == (2, 12, 50)
    expected = reference_forward(ids, model.state_dict(), config)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert model.num_parameters() == model_stats(config).params


def test_ablations_differ_from_base_with_shared_weights():
    torch.manual_seed(0)
    base = TransformerLM(TINY)
    ids = torch.randint(0, 50, (2, 12))
    reference = base(ids)
    for changes in ({"norm": "post"}, {"norm": "none"}, {"position": "none"}):
        variant = TransformerLM(dataclasses.replace(TINY, **changes))
        variant.load_state_dict(base.state_dict(), strict=False)
        out = variant(ids)
        assert torch.isfinite(out).all()
        assert not torch.allclose(out, reference, atol=1e-3), changes
    silu = TransformerLM(TINY.with_ffn("silu"))
    assert silu.config.d_ff == 96
    assert silu(ids).shape == reference.shape


def test_state_dict_keys_are_the_checkpoint_format():
    keys = set(TransformerLM(TINY).state_dict())
    expected = {"token_embeddings.weight", "ln_final.weight", "lm_head.weight"}
    for i in range(2):
        expected |= {f"layers.{i}.ln1.weight", f"layers.{i}.ln2.weight"}
        expected |= {f"layers.{i}.attn.{n}_proj.weight" for n in ("q", "k", "v", "output")}
        expected |= {f"layers.{i}.ffn.{n}.weight" for n in ("w1", "w2", "w3")}
    assert keys == expected
    model = TransformerLM(TINY)
    model.load_state_dict(TransformerLM(TINY).state_dict(), strict=True)


def test_tied_embeddings_share_one_matrix_and_load_strict():
    config = dataclasses.replace(TINY, tie_embeddings=True)
    model = TransformerLM(config)
    assert model.lm_head.weight is model.token_embeddings.weight
    sd = model.state_dict()
    assert "lm_head.weight" in sd and "token_embeddings.weight" in sd
    other = TransformerLM(config)
    other.load_state_dict(sd, strict=True)
    assert other.lm_head.weight is other.token_embeddings.weight
    torch.testing.assert_close(other.lm_head.weight, model.lm_head.weight)


def test_load_state_dict_strips_compile_and_ddp_prefixes():
    torch.manual_seed(0)
    source = TransformerLM(TINY)
    prefixed = {f"_orig_mod.{k}": v for k, v in source.state_dict().items()}
    target = TransformerLM(TINY)
    target.load_state_dict(prefixed, strict=True)
    ids = torch.randint(0, 50, (1, 8))
    torch.testing.assert_close(target(ids), source(ids))
    target.load_state_dict({f"module._orig_mod.{k}": v for k, v in source.state_dict().items()})


def test_init_statistics_of_the_model():
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=2000, context_length=16, d_model=128, num_layers=1, num_heads=4, d_ff=384
    )
    model = TransformerLM(config)
    emb = model.token_embeddings.weight.detach()
    assert emb.std().item() == pytest.approx(0.9866, rel=0.02) and emb.abs().max() <= 3
    w1 = model.layers[0].ffn.w1.weight.detach()
    std = (2 / (128 + 384)) ** 0.5
    assert w1.std().item() == pytest.approx(0.9866 * std, rel=0.03)
    assert w1.abs().max().item() <= 3 * std + 1e-7
    torch.testing.assert_close(model.layers[0].ln1.weight.detach(), torch.ones(128))


def test_shape_errors_name_the_dimension():
    model = TransformerLM(TINY)
    with pytest.raises(ValueError, match=r"sequence length \(seq\) 17 exceeds context_length=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    block = TransformerBlock(TINY)
    with pytest.raises(ValueError, match="d_model=24, expected 32"):
        block(torch.randn(1, 4, 24))


@value_checks
def test_token_id_out_of_range_names_vocab_size():
    with pytest.raises(ValueError, match=r"token id 50 .*vocab_size=50"):
        TransformerLM(TINY)(torch.tensor([[1, 50]]))


def test_kv_cache_forward_matches_full_forward_and_guards_overflow():
    torch.manual_seed(0)
    model = TransformerLM(TINY)
    ids = torch.randint(0, 50, (2, 16))
    cache = model.new_kv_cache(batch_size=2)
    with torch.no_grad():
        full = model(ids)
        parts = [model(ids[:, :10], kv_cache=cache)]
        parts += [model(ids[:, i : i + 1], kv_cache=cache) for i in range(10, 16)]
        torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-4)
        assert cache.length == 16
        with pytest.raises(ValueError, match="after 16 cached positions exceeds context_length"):
            model(ids[:, :1], kv_cache=cache)
        cache.reset()
        torch.testing.assert_close(model(ids[:, :4], kv_cache=cache), full[:, :4])


def test_forward_accepts_any_leading_dims():
    torch.manual_seed(0)
    model = TransformerLM(TINY)
    ids = torch.randint(0, 50, (2, 3, 8))
    out = model(ids)
    assert out.shape == (2, 3, 8, 50)
    torch.testing.assert_close(out[1, 2], model(ids[1, 2]))


def test_bf16_autocast_training_step_is_finite_and_close():
    torch.manual_seed(0)
    model = TransformerLM(TINY)
    ids = torch.randint(0, 50, (2, 16))
    loss32 = cross_entropy(model(ids), ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids)
        loss = cross_entropy(logits, ids)
    assert logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, loss32, rtol=3e-2, atol=3e-2)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_fast_path_model_matches_plain_model():
    torch.manual_seed(0)
    plain = TransformerLM(TINY)
    fast = TransformerLM(TINY, ComputeConfig(attention="sdpa", fused_qkv=True))
    fast.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 50, (2, 16))
    torch.testing.assert_close(fast(ids), plain(ids), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- config and stats


def test_config_round_trips_through_dict_and_json(tmp_path):
    config = dataclasses.replace(TINY, norm="post", tie_embeddings=True)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig.from_json(config.to_json()) == config
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    assert ModelConfig.from_json(path) == config
    assert ModelConfig.from_json(str(path)) == config
    with pytest.raises(FileNotFoundError):
        ModelConfig.from_json(str(tmp_path / "missing.json"))
    assert json.loads(config.to_json())["rope_theta"] == 10000.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.d_model = 64  # type: ignore[misc]


def test_config_from_dict_rejects_unknown_key_with_suggestion():
    d = TINY.to_dict()
    d["num_layer"] = d.pop("num_layers")
    with pytest.raises(
        ValueError, match="unknown ModelConfig key 'num_layer'; did you mean 'num_layers'"
    ):
        ModelConfig.from_dict(d)
    with pytest.raises(ValueError, match=r"missing required key.*d_ff"):
        ModelConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "d_ff"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_heads": 5}, "divisible by num_heads"),
        ({"d_model": 24, "num_heads": 8}, "even head dim"),
        ({"norm": "layer"}, "norm must be one of"),
        ({"position": "alibi"}, "position must be one of"),
        ({"ffn": "gelu"}, "ffn must be one of"),
        ({"ffn": "relu3"}, "ffn must be one of"),
        ({"vocab_size": 0}, "vocab_size must be a positive int"),
    ],
)
def test_config_validation_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **changes)


def test_odd_head_dim_is_fine_without_rope():
    assert ModelConfig(10, 8, 24, 1, 8, 64, position="none").head_dim == 3


def test_model_stats_of_the_tinystories_model():
    config = ModelConfig(
        vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344
    )
    stats = model_stats(config)
    assert isinstance(stats, ModelStats)
    with torch.device("meta"):
        assert TransformerLM(config).num_parameters() == stats.params == 22_696_448
    assert stats.non_embedding_params == stats.params - 10_000 * 512
    d, t = 512, 256
    per_layer = 2 * 4 * d * d + 2 * 3 * d * 1344 + 2 * 2 * t * d
    assert stats.forward_flops_per_token == 4 * per_layer + 2 * d * 10_000
    assert stats.train_flops_per_token == 3 * stats.forward_flops_per_token
    assert default_d_ff(512) == 1344 and default_d_ff(512, "silu") == 2048
    silu = config.with_ffn("silu")
    assert model_stats(silu).params == stats.params  # 2·512·2016 == 3·512·1344
    assert silu.with_ffn("swiglu") == config
