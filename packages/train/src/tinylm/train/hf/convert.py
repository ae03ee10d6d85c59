"""tinylm <-> Hugging Face Llama: the config mapping, state-dict keys, the RoPE row permutation.

A pre-norm, RoPE, SwiGLU, untied-or-tied tinylm model *is* a `LlamaForCausalLM` without biases,
with RMSNorm eps 1e-5 and one kv head per head. Converting is a renaming of tensors, except for
the query and key rows, which follow a different RoPE convention (see `rotate_half_rows`).

    token_embeddings             model.embed_tokens
    layers.i.attn.q/k/v_proj     model.layers.i.self_attn.q/k/v_proj   (q, k rows permuted)
    layers.i.attn.output_proj    model.layers.i.self_attn.o_proj
    layers.i.ffn.w1 / w3 / w2    model.layers.i.mlp.gate_proj / up_proj / down_proj
    layers.i.ln1 / ln2           model.layers.i.input_layernorm / post_attention_layernorm
    ln_final                     model.norm
    lm_head                      lm_head          (absent when tied: HF re-ties it on load)

Any other architecture switch is refused in one line naming it (`check_llama_expressible`), and
a Llama config tinylm cannot compute likewise (`model_config_from_llama`). Everything here is
pure: dicts and tensors in, dicts and tensors out. The files of an HF directory are read and
written in `hf_files`, the run directory <-> HF directory commands live in `hf_cli`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from einops import rearrange

from tinylm.nn import ModelConfig

__all__ = [
    "check_llama_expressible",
    "from_hf_state_dict",
    "interleave_rows",
    "key_map",
    "llama_config_dict",
    "llama_weight_shapes",
    "model_config_from_llama",
    "rotate_half_rows",
    "to_hf_state_dict",
]

# (ModelConfig field, the value Llama has).
LLAMA_PLAIN: tuple[tuple[str, Any], ...] = (
    ("norm", "pre"),
    ("position", "rope"),
    ("ffn", "swiglu"),
    ("qk_norm", False),
    ("logit_softcap", 0.0),
    ("value_embeddings", 0),
    ("unet_skips", False),
    ("parameter_free_norm", False),
)
# Fields that change how the same function is computed or initialised, never the function.
NOT_ARCHITECTURE = frozenset({"attention", "fused_qkv", "zero_init_proj"})
# Fields Llama's config expresses directly.
LLAMA_SHAPE = frozenset(
    {
        "vocab_size",
        "context_length",
        "d_model",
        "num_layers",
        "num_heads",
        "d_ff",
        "rope_theta",
        "tie_embeddings",
    }
)

_TOP_KEYS = {
    "token_embeddings.weight": "model.embed_tokens.weight",
    "ln_final.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
_LAYER_KEYS = {
    "attn.q_proj.weight": "self_attn.q_proj.weight",
    "attn.k_proj.weight": "self_attn.k_proj.weight",
    "attn.v_proj.weight": "self_attn.v_proj.weight",
    "attn.output_proj.weight": "self_attn.o_proj.weight",
    "ffn.w1.weight": "mlp.gate_proj.weight",
    "ffn.w3.weight": "mlp.up_proj.weight",
    "ffn.w2.weight": "mlp.down_proj.weight",
    "ln1.weight": "input_layernorm.weight",
    "ln2.weight": "post_attention_layernorm.weight",
}
_ROPE_ROWS = ("attn.q_proj.weight", "attn.k_proj.weight")


def key_map(num_layers: int) -> dict[str, str]:
    """tinylm state-dict key -> HF Llama key."""
    keys = dict(_TOP_KEYS)
    for i in range(num_layers):
        for ours, theirs in _LAYER_KEYS.items():
            keys[f"layers.{i}.{ours}"] = f"model.layers.{i}.{theirs}"
    return keys


# -- configs ---------------------------------------------------------------------------------


def check_llama_expressible(config: ModelConfig) -> None:
    """Raise ValueError (one line, naming the switch) if Llama cannot express `config`."""
    for name, plain in LLAMA_PLAIN:
        value = getattr(config, name)
        if value != plain:
            raise ValueError(
                f"Llama cannot express model.{name} = {value!r} (only {plain!r}); "
                "export-hf needs a plain pre-norm RoPE SwiGLU model"
            )
    known = LLAMA_SHAPE | NOT_ARCHITECTURE | {name for name, _ in LLAMA_PLAIN}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name not in known and value != field.default:
            raise ValueError(
                f"export-hf does not know model.{field.name} (= {value!r}); only its default "
                f"{field.default!r} can be exported"
            )


def llama_config_dict(
    config: ModelConfig,
    *,
    rms_norm_eps: float,
    bos_token_id: int | None,
    eos_token_id: int | None,
    dtype: str = "float32",
) -> dict[str, Any]:
    """The `config.json` of the equivalent `LlamaForCausalLM` (transformers 4.x and 5.x keys)."""
    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.context_length,
        "rope_theta": config.rope_theta,  # transformers 4.x
        "rope_parameters": rope,  # transformers 5.x
        "rms_norm_eps": rms_norm_eps,
        "tie_word_embeddings": config.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": None,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


# config.json's sizes: positive integers, checked before anything is sized from them.
_LLAMA_SIZES = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "max_position_embeddings",
)
# The RoPE tables hold every position (float64 while built): 2**24 positions at head_dim 128
# is 8 GiB already, and no released Llama claims more.
MAX_CONTEXT = 2**24


def _check_size(hf: dict[str, Any], key: str, *, required: bool) -> None:
    value = hf.get(key)
    if value is None and not required:
        return
    if key not in hf:
        raise ValueError(f"config.json: {key} is missing; a Llama config.json has it")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"config.json: {key} is {value!r}; it must be a positive integer")


def model_config_from_llama(hf: dict[str, Any], *, rms_norm_eps: float) -> tuple[dict, int]:
    """(ModelConfig fields, num_key_value_heads) of a Llama `config.json`, or one-line refusal.

    Grouped-query attention is accepted: `from_hf_state_dict` repeats each kv head for its group
    of query heads, which computes exactly what HF's `repeat_kv` does (the tinylm model then has
    num_heads kv heads, so exporting it again gives a wider, equal model).
    """
    kind = hf.get("model_type")
    if kind != "llama":
        raise ValueError(f"config.json: model_type is {kind!r}; import-hf reads only 'llama'")
    for key in _LLAMA_SIZES:
        _check_size(hf, key, required=True)
    for key in ("num_key_value_heads", "head_dim"):
        _check_size(hf, key, required=False)
    heads = hf["num_attention_heads"]
    hidden = hf["hidden_size"]
    kv_heads = hf.get("num_key_value_heads") or heads
    if hidden % heads:
        raise ValueError(
            f"config.json: hidden_size {hidden} is not a multiple of num_attention_heads {heads}; "
            "tinylm needs head_dim = hidden_size / num_attention_heads, cannot import"
        )
    if hf.get("head_dim") not in (None, hidden // heads):
        raise ValueError(
            f"config.json: head_dim is {hf['head_dim']} but hidden_size / num_attention_heads is "
            f"{hidden} / {heads} = {hidden // heads}; tinylm needs them equal, cannot import"
        )
    if hf["max_position_embeddings"] > MAX_CONTEXT:
        raise ValueError(
            f"config.json: max_position_embeddings is {hf['max_position_embeddings']}; tinylm "
            f"precomputes RoPE tables for every position and imports at most {MAX_CONTEXT}"
        )
    for key in ("rope_parameters", "rope_scaling"):
        if hf.get(key) is not None and not isinstance(hf[key], dict):
            raise ValueError(f"config.json: {key} is {hf[key]!r}, not an object")
    eps = hf.get("rms_norm_eps", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, int | float):
        raise ValueError(f"config.json: rms_norm_eps is {eps!r}; it must be a number")
    rope = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling")
    # transformers 5 writes rope_parameters, 4.x rope_scaling (null unless scaled)
    kinds = [rope.get("rope_type", "default")]
    if scaling:
        kinds.append(scaling.get("rope_type", scaling.get("type", "default")))
    rope_type = next((kind for kind in kinds if kind != "default"), "default")
    checks = [
        ("hidden_act", hf.get("hidden_act", "silu"), "silu"),
        ("attention_bias", bool(hf.get("attention_bias", False)), False),
        ("mlp_bias", bool(hf.get("mlp_bias", False)), False),
        ("rope_scaling", None if rope_type == "default" else rope_type, None),
        ("num_key_value_heads divides num_attention_heads", heads % kv_heads == 0, True),
    ]
    for name, value, wanted in checks:
        if value != wanted:
            raise ValueError(
                f"config.json: {name} is {value!r}; tinylm has only {wanted!r}, cannot import"
            )
    if abs(eps - rms_norm_eps) > 1e-12:
        raise ValueError(
            f"config.json: rms_norm_eps is {eps!r}; tinylm's RMSNorm uses {rms_norm_eps!r}, "
            "cannot import"
        )
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    if isinstance(theta, bool) or not isinstance(theta, int | float) or not theta > 0:
        raise ValueError(f"config.json: rope_theta is {theta!r}; it must be a number > 0")
    fields = {
        "vocab_size": hf["vocab_size"],
        "context_length": hf["max_position_embeddings"],
        "d_model": hidden,
        "num_layers": hf["num_hidden_layers"],
        "num_heads": heads,
        "d_ff": hf["intermediate_size"],
        "rope_theta": float(theta),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
    }
    return fields, kv_heads


# -- weights ---------------------------------------------------------------------------------


def rotate_half_rows(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reorder q/k projection rows from tinylm's RoPE convention to HF Llama's.

    tinylm rotates interleaved pairs of each head's vector: (x[2i], x[2i+1]) by angle p·θ_i.
    HF rotates halves: (x[i], x[i + d/2]) by the same angle p·θ_i. So within each head the HF row
    j < d/2 must be our row 2j, and the HF row d/2 + j our row 2j + 1:

        new_rows(head) = [0, 2, 4, ..., d-2, 1, 3, ..., d-1]      (d = head_dim)

    Applying the same permutation to q and k leaves every dot product q·k, hence the attention,
    unchanged; v and the output projection are not touched.
    """
    return rearrange(weight, "(h half two) d -> (h two half) d", h=num_heads, two=2).contiguous()


def interleave_rows(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Inverse of `rotate_half_rows`: HF Llama q/k rows back to tinylm's interleaved order."""
    return rearrange(weight, "(h two half) d -> (h half two) d", h=num_heads, two=2).contiguous()


def to_hf_state_dict(
    state: dict[str, torch.Tensor], config: ModelConfig
) -> dict[str, torch.Tensor]:
    """tinylm state dict -> Llama tensors; a tied lm_head is left out (stored once, as HF does)."""
    keys = key_map(config.num_layers)
    unknown = sorted(set(state) - set(keys))
    if unknown:
        raise ValueError(f"parameter {unknown[0]!r} has no Llama counterpart; cannot export")
    out = {}
    for ours, theirs in keys.items():
        if config.tie_embeddings and ours == "lm_head.weight":
            continue
        if ours not in state:
            raise ValueError(f"the checkpoint lacks {ours!r}")
        tensor = state[ours].detach().cpu()
        if ours.endswith(_ROPE_ROWS):
            tensor = rotate_half_rows(tensor, config.num_heads)
        out[theirs] = tensor.contiguous().clone()
    return out


def llama_weight_shapes(config: ModelConfig, num_kv_heads: int | None = None) -> dict:
    """HF key -> (shape, what config.json sizes it) of a Llama with `config`'s dimensions.

    Plain arithmetic on the config (no tensor is made), so the weights can be checked against
    config.json before a model of that size is allocated.
    """
    d, vocab, ff = config.d_model, config.vocab_size, config.d_ff
    q_rows = config.num_heads * config.head_dim
    kv_rows = (num_kv_heads or config.num_heads) * config.head_dim
    layer = {
        "self_attn.q_proj.weight": ((q_rows, d), "num_attention_heads*head_dim x hidden_size"),
        "self_attn.k_proj.weight": ((kv_rows, d), "num_key_value_heads*head_dim x hidden_size"),
        "self_attn.v_proj.weight": ((kv_rows, d), "num_key_value_heads*head_dim x hidden_size"),
        "self_attn.o_proj.weight": ((d, q_rows), "hidden_size x num_attention_heads*head_dim"),
        "mlp.gate_proj.weight": ((ff, d), "intermediate_size x hidden_size"),
        "mlp.up_proj.weight": ((ff, d), "intermediate_size x hidden_size"),
        "mlp.down_proj.weight": ((d, ff), "hidden_size x intermediate_size"),
        "input_layernorm.weight": ((d,), "hidden_size"),
        "post_attention_layernorm.weight": ((d,), "hidden_size"),
    }
    shapes = {
        "model.embed_tokens.weight": ((vocab, d), "vocab_size x hidden_size"),
        "model.norm.weight": ((d,), "hidden_size"),
        "lm_head.weight": ((vocab, d), "vocab_size x hidden_size"),
    }
    for i in range(config.num_layers):
        shapes.update({f"model.layers.{i}.{key}": value for key, value in layer.items()})
    return shapes


def from_hf_state_dict(
    tensors: dict[str, torch.Tensor], config: ModelConfig, num_kv_heads: int | None = None
) -> dict[str, torch.Tensor]:
    """Llama tensors -> tinylm state dict (fp32); kv heads repeated per group under GQA."""
    kv_heads = num_kv_heads or config.num_heads
    group = config.num_heads // kv_heads
    # Older checkpoints carry the RoPE frequencies as a buffer; it is a function of the config.
    tensors = {k: v for k, v in tensors.items() if not k.endswith("rotary_emb.inv_freq")}
    keys = key_map(config.num_layers)
    if config.tie_embeddings:
        tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
        tensors["lm_head.weight"] = tensors.get("model.embed_tokens.weight")
    unknown = sorted(set(tensors) - set(keys.values()))
    if unknown:
        raise ValueError(f"weight {unknown[0]!r} has no tinylm counterpart; cannot import")
    shapes = llama_weight_shapes(config, kv_heads)
    for theirs in keys.values():  # every check before any tensor is converted or copied
        tensor = tensors.get(theirs)
        if tensor is None:
            raise ValueError(f"the weights lack {theirs!r}")
        expected, sized_by = shapes[theirs]
        if tuple(tensor.shape) != expected:
            raise ValueError(
                f"weight {theirs!r} has shape {list(tensor.shape)}, but config.json's "
                f"{sized_by} is {list(expected)}; cannot import"
            )
    state = {}
    for ours, theirs in keys.items():
        tensor = tensors[theirs].to(torch.float32)
        if ours.endswith(("attn.k_proj.weight", "attn.v_proj.weight")) and group > 1:
            tensor = rearrange(tensor, "(kv d) i -> kv d i", kv=kv_heads)
            tensor = tensor.repeat_interleave(group, dim=0).flatten(0, 1)
            # kv head g now sits at query heads g*group .. g*group+group-1, as HF's repeat_kv
        if ours.endswith(_ROPE_ROWS):
            tensor = interleave_rows(tensor, config.num_heads)
        state[ours] = tensor.contiguous().clone()
    if config.tie_embeddings:
        state["token_embeddings.weight"] = state["lm_head.weight"]
    return state
