"""The modern recipe switches (nn README), parameter roles and model_stats."""

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.flop_counter import FlopCounterMode

from packages.nn.tests.recipe_cases import (
    BASE,
    SWITCHES,
    build,
    ids_and_targets,
)
from tinylm.nn import (
    FFN_VARIANTS,
    CausalSelfAttention,
    ReLU2FeedForward,
    RotaryEmbedding,
    TransformerLM,
    default_d_ff,
    model_stats,
    relu_squared,
)
from tinylm.nn.config import FFN_MATRICES

# ------------------------------------------------------------------- off = the plain model


def plain_forward(model: TransformerLM, ids: torch.Tensor) -> torch.Tensor:
    """The pre-recipe TransformerLM.forward, composed from the model's own pre-norm blocks."""
    x = model.token_embeddings(ids)
    for layer in model.layers:
        z = x + layer.attn(layer.ln1(x))
        x = z + layer.ffn(layer.ln2(z))
    return model.lm_head(model.ln_final(x))


def test_all_switches_off_is_the_plain_model_bit_for_bit():
    model = build(BASE)
    ids, _ = ids_and_targets()
    assert torch.equal(model(ids), plain_forward(model, ids))
    explicit_off = dataclasses.replace(
        BASE,
        qk_norm=False,
        logit_softcap=0.0,
        value_embeddings=0,
        unet_skips=False,
        zero_init_proj=False,
        parameter_free_norm=False,
    )
    assert explicit_off == BASE
    keys = {"token_embeddings.weight", "ln_final.weight", "lm_head.weight"}
    for i in range(BASE.num_layers):
        keys |= {f"layers.{i}.ln1.weight", f"layers.{i}.ln2.weight"}
        keys |= {f"layers.{i}.attn.{n}_proj.weight" for n in ("q", "k", "v", "output")}
        keys |= {f"layers.{i}.ffn.{n}.weight" for n in ("w1", "w2", "w3")}
    assert set(model.state_dict()) == keys


@pytest.mark.parametrize("name", list(SWITCHES))
def test_each_switch_on_changes_the_model_and_keeps_the_plain_weights(name):
    base = build(BASE)
    on = build(dataclasses.replace(BASE, **{name: SWITCHES[name]}))
    ids, _ = ids_and_targets()
    if name == "parameter_free_norm":
        # Gains start at one, so dropping them changes no number at init, only the keys.
        assert torch.equal(on(ids), base(ids))
        assert not any("ln" in key for key in on.state_dict())
    else:
        assert not torch.allclose(on(ids), base(ids), atol=1e-4), name
    # The recipe draws its own random numbers last: every weight both models have is the same
    # (but ReLU² draws two FFN matrices instead of three, which shifts every later draw).
    zeroed = ("output_proj", "ffn.w2") if name == "zero_init_proj" else ()
    base_sd, on_sd = base.state_dict(), on.state_dict()
    for key in base_sd.keys() & on_sd.keys():
        if any(part in key for part in zeroed):
            continue
        if name == "ffn" and not key.startswith("layers.0.attn."):
            continue
        if name == "tie_embeddings" and key == "token_embeddings.weight":
            continue  # the tied table is lm_head's matrix
        assert torch.equal(base_sd[key], on_sd[key]), key


def test_zeroed_gates_and_skip_weights_give_back_the_plain_model_exactly():
    config = dataclasses.replace(BASE, value_embeddings=2, unet_skips=True)
    model, base = build(config), build(BASE)
    with torch.no_grad():
        model.skip_weights.zero_()
        for layer in model.layers:
            if layer.attn.uses_value_embedding:
                layer.attn.value_gate.zero_()
    ids, _ = ids_and_targets()
    assert torch.equal(model(ids), base(ids))


# ----------------------------------------------------------------------- formulas per switch


def test_qk_norm_output_is_invariant_to_scaling_q_and_k_weights():
    ids, _ = ids_and_targets()
    for qk_norm in (True, False):
        model = build(dataclasses.replace(BASE, qk_norm=qk_norm))
        before = model(ids)
        with torch.no_grad():
            for layer in model.layers:
                layer.attn.q_proj.weight.mul_(3.0)
                layer.attn.k_proj.weight.mul_(2.0)  # up: eps=1e-5 stays negligible
        if qk_norm:
            torch.testing.assert_close(model(ids), before, rtol=1e-4, atol=1e-4)
        else:
            assert not torch.allclose(model(ids), before, atol=1e-3)


def reference_attention(attn: CausalSelfAttention, x, value_embedding=None):
    """torch.nn.functional oracle for one attention layer with QK-norm and a value embedding."""
    h, dk = attn.num_heads, attn.d_k
    q, k, v = (F.linear(x, getattr(attn, f"{n}_proj").weight) for n in "qkv")
    if value_embedding is not None:
        v = v + attn.value_gate * value_embedding
    q, k, v = (rearrange(t, "b s (h d) -> b h s d", h=h) for t in (q, k, v))
    if attn.qk_norm:
        q_gain = attn.q_norm.weight if attn.q_norm.affine else None
        k_gain = attn.k_norm.weight if attn.k_norm.affine else None
        q, k = F.rms_norm(q, (dk,), q_gain, eps=1e-5), F.rms_norm(k, (dk,), k_gain, eps=1e-5)
    pos = torch.arange(x.shape[1])
    q, k = attn.rope(q, pos), attn.rope(k, pos)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(rearrange(out, "b h s d -> b s (h d)"), attn.output_proj.weight)


@pytest.mark.parametrize("affine", [True, False])
def test_qk_norm_and_value_embedding_match_a_functional_attention(affine):
    torch.manual_seed(0)
    rope = RotaryEmbedding(10000.0, 8, 16)
    attn = CausalSelfAttention(32, 4, rope, qk_norm=True, value_embedding=True, norm_affine=affine)
    with torch.no_grad():
        if affine:
            attn.q_norm.weight.uniform_(0.5, 1.5)
            attn.k_norm.weight.uniform_(0.5, 1.5)
        attn.value_gate.uniform_(-1.0, 1.0)
    x, e = torch.randn(2, 10, 32), torch.randn(2, 10, 32)
    assert len(list(attn.parameters())) == (7 if affine else 5)
    torch.testing.assert_close(attn(x, value_embedding=e), reference_attention(attn, x, e))
    with pytest.raises(ValueError, match="value_embedding must be given"):
        attn(x)


def test_relu2_ffn_matches_the_formula():
    torch.manual_seed(0)
    ffn = ReLU2FeedForward(32, 128)
    x = torch.randn(3, 5, 32)
    expected = F.linear(F.relu(F.linear(x, ffn.w1.weight)) ** 2, ffn.w2.weight)
    torch.testing.assert_close(ffn(x), expected)
    t = torch.tensor([-2.0, -0.0, 0.0, 0.5, 3.0])
    assert torch.equal(relu_squared(t), F.relu(t) ** 2)
    assert set(dict(ffn.named_parameters())) == {"w1.weight", "w2.weight"}
    assert set(FFN_VARIANTS) == set(FFN_MATRICES)
    assert default_d_ff(64, "relu2") == 256
    swiglu = dataclasses.replace(BASE, d_ff=96)
    relu2 = swiglu.with_ffn("relu2")
    assert relu2.d_ff == 144 and relu2.with_ffn("silu").d_ff == 144
    assert model_stats(relu2).params == model_stats(swiglu).params
    assert relu2.with_ffn("swiglu") == swiglu


def test_logit_softcap_bounds_the_logits():
    cap = 30.0
    free, capped = build(BASE), build(dataclasses.replace(BASE, logit_softcap=cap))
    with torch.no_grad():
        for model in (free, capped):
            model.lm_head.weight.mul_(40.0)  # raw logits well past the cap
    ids, _ = ids_and_targets()
    raw, out = free(ids), capped(ids)
    assert raw.abs().max() > 2 * cap
    assert out.abs().max() < cap
    torch.testing.assert_close(out, cap * torch.tanh(raw / cap))


def test_zero_init_proj_blocks_start_as_identity_maps():
    model = build(dataclasses.replace(BASE, zero_init_proj=True))
    x = torch.randn(2, 8, 32)
    for layer in model.layers:
        assert not layer.attn.output_proj.weight.any() and not layer.ffn.w2.weight.any()
        assert torch.equal(layer(x), x)
    ids, _ = ids_and_targets()
    expected = model.lm_head(model.ln_final(model.token_embeddings(ids)))
    assert torch.equal(model(ids), expected)


def test_value_embeddings_feed_the_first_and_last_layers():
    config = dataclasses.replace(BASE, num_layers=6, value_embeddings=2)
    assert config.value_embedding_tables == (0, 1, None, None, 0, 1)
    model = build(config)
    assert [layer.attn.uses_value_embedding for layer in model.layers] == [
        True,
        True,
        False,
        False,
        True,
        True,
    ]
    assert {k for k in model.state_dict() if "value" in k} == {
        "value_embeddings.0.weight",
        "value_embeddings.1.weight",
        *(f"layers.{i}.attn.value_gate" for i in (0, 1, 4, 5)),
    }
    with pytest.raises(ValueError, match="value_embeddings=3 needs"):
        dataclasses.replace(BASE, value_embeddings=3)


def test_unet_skips_match_a_hand_written_forward():
    model = build(dataclasses.replace(BASE, unet_skips=True))
    assert model.config.unet_pairs == ((0, 3), (1, 2))
    with torch.no_grad():
        model.skip_weights.copy_(torch.tensor([0.7, -1.3]))
    ids, _ = ids_and_targets()
    layer = model.layers
    h0 = layer[0](model.token_embeddings(ids))
    h1 = layer[1](h0)
    h2 = layer[2](h1 + (-1.3) * h1)
    h3 = layer[3](h2 + 0.7 * h0)
    torch.testing.assert_close(model(ids), model.lm_head(model.ln_final(h3)))
    with pytest.raises(ValueError, match="unet_skips needs num_layers >= 2"):
        dataclasses.replace(BASE, num_layers=1, unet_skips=True)


# ------------------------------------------------------------ parameter roles and model_stats

COMBINATIONS = [
    dict(zip(SWITCHES, values, strict=True))
    for values in itertools.product(*[(False, True)] * len(SWITCHES))
]


def test_parameter_groups_partition_the_parameters_for_every_switch_combination():
    """All 2^8 combinations: roles are disjoint, cover model.parameters(), counts are right."""
    for chosen in COMBINATIONS:
        config = dataclasses.replace(BASE, **{k: SWITCHES[k] for k, on in chosen.items() if on})
        with torch.device("meta"):
            model = TransformerLM(config)
        groups = model.parameter_groups()
        assert set(groups) == {"matrix", "embedding", "head", "scalar"}
        ids = [id(p) for group in groups.values() for p in group]
        assert len(ids) == len(set(ids)), chosen
        assert set(ids) == {id(p) for p in model.parameters()}, chosen
        assert all(p.ndim == 2 for p in groups["matrix"])
        assert all(p.ndim == 1 for p in groups["scalar"])
        n_linear = 4 + FFN_MATRICES[config.ffn]
        assert len(groups["matrix"]) == config.num_layers * n_linear
        assert len(groups["embedding"]) == 1 + config.value_embeddings
        assert groups["embedding"][0] is model.token_embeddings.weight
        assert groups["head"] == ([] if config.tie_embeddings else [model.lm_head.weight])
        assert sum(p.numel() for p in model.parameters()) == model_stats(config).params, chosen
        tables = sum(p.numel() for p in groups["embedding"])
        assert model_stats(config).non_embedding_params == model_stats(config).params - tables


@pytest.mark.parametrize(
    "changes", [{}, *({k: v} for k, v in SWITCHES.items()), SWITCHES], ids=lambda c: str(c)
)
def test_model_stats_flops_match_the_matmuls_of_a_forward(changes):
    config = dataclasses.replace(BASE, **changes)
    model = build(config)
    batch, seq = 2, config.context_length  # stats take attention at the full context
    ids = torch.randint(0, 50, (batch, seq))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(ids)
    stats = model_stats(config)
    assert counter.get_total_flops() == stats.forward_flops_per_token * batch * seq
    assert stats.train_flops_per_token == 3 * stats.forward_flops_per_token
