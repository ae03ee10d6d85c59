"""Resource accounting (CS336 assignment 1, §3.6 and §4.3): parameters, FLOPs, memory, days.

All numbers come from `tinylm.nn.model_stats` and the closed forms below, for the model tinylm
builds (pre-norm, RoPE, SwiGLU FFN with three d_model×d_ff matrices, untied lm_head). The
handout's GPT-2 shapes use d_ff = 4·d_model (its XL has d_ff 6400 = 4·1600), vocab 50,257 and
context 1,024. Conventions, as the handout's:

- a matmul (m×k)·(k×n) costs 2·m·k·n FLOPs; backward = 2× forward, so training = 3× forward;
- activations kept for backward, floats per sequence of T tokens (h heads, per layer):
  2 RMSNorm inputs T·d; Q, K, V T·d each; QKᵀ and its softmax h·T² each; AV T·d; output
  projection T·d; FFN W1, W3, SiLU and the gated product T·d_ff each, W2 T·d
  = T·(8·d + 4·d_ff) + 2·h·T²; then the final RMSNorm T·d, logits T·V and their softmax T·V;
- AdamW memory in fp32: parameters P, gradients P, moments 2·P, 4 bytes each, + activations·B;
- an AdamW update is 14 FLOPs per parameter (m: 3, v: 4, the step: 5, decoupled decay: 2).
"""

from __future__ import annotations

import dataclasses

from tinylm.nn import ModelConfig, model_stats

__all__ = [
    "A100_FP32_PEAK_FLOPS",
    "ADAMW_FLOPS_PER_PARAM",
    "GPT2_SIZES",
    "activation_floats",
    "adamw_step_flops",
    "forward_flops",
    "gpt2_config",
    "largest_batch",
    "training_days",
    "training_memory",
]

GPT2_SIZES = {  # name: (d_model, num_layers, num_heads)
    "small": (768, 12, 12),
    "medium": (1024, 24, 16),
    "large": (1280, 36, 20),
    "XL": (1600, 48, 25),
}
A100_FP32_PEAK_FLOPS = 19.5e12  # the handout's figure (non-tensor-core fp32)
ADAMW_FLOPS_PER_PARAM = 14
BYTES = 4  # fp32


def gpt2_config(name: str, context_length: int = 1024) -> ModelConfig:
    d, layers, heads = GPT2_SIZES[name]
    return ModelConfig(
        vocab_size=50_257,
        context_length=context_length,
        d_model=d,
        num_layers=layers,
        num_heads=heads,
        d_ff=4 * d,
    )


def forward_flops(config: ModelConfig) -> dict[str, int]:
    """Forward matmul FLOPs for one sequence of context_length tokens, by matmul group.

    Sums to `model_stats(config).forward_flops_per_token × context_length`.
    """
    d, t, v, n = config.d_model, config.context_length, config.vocab_size, config.num_layers
    ffn_mats = 3 if config.ffn == "swiglu" else 2
    return {
        "attention Q/K/V/O projections": n * 2 * t * 4 * d * d,
        "attention scores QKᵀ": n * 2 * t * t * d,
        "attention values AV": n * 2 * t * t * d,
        "feed-forward": n * 2 * t * ffn_mats * d * config.d_ff,
        "lm_head": 2 * t * d * v,
    }


def activation_floats(config: ModelConfig) -> int:
    """Floats kept for the backward pass per sequence (see the module doc for the list)."""
    d, t, v, h = config.d_model, config.context_length, config.vocab_size, config.num_heads
    ffn = 4 * t * config.d_ff if config.ffn == "swiglu" else 2 * t * config.d_ff
    per_layer = 8 * t * d + ffn + 2 * h * t * t
    return config.num_layers * per_layer + t * d + 2 * t * v


def training_memory(config: ModelConfig, batch_size: int) -> dict[str, int]:
    """Peak fp32 bytes of an AdamW step: parameters, activations, gradients, optimizer state."""
    p = model_stats(config).params
    parts = {
        "parameters": BYTES * p,
        "activations": BYTES * activation_floats(config) * batch_size,
        "gradients": BYTES * p,
        "optimizer state": 2 * BYTES * p,
    }
    return parts | {"total": sum(parts.values())}


def largest_batch(config: ModelConfig, memory_bytes: float) -> int:
    """The largest batch whose `training_memory` total fits in `memory_bytes` (0 if none)."""
    fixed = training_memory(config, 0)["total"]
    per_sequence = BYTES * activation_floats(config)
    return max(0, int((memory_bytes - fixed) // per_sequence))


def adamw_step_flops(config: ModelConfig, batch_size: int) -> int:
    """FLOPs of one training step: forward + backward (3× forward) + the AdamW update."""
    stats = model_stats(config)
    tokens = batch_size * config.context_length
    return tokens * stats.train_flops_per_token + ADAMW_FLOPS_PER_PARAM * stats.params


def training_days(
    config: ModelConfig,
    batch_size: int,
    steps: int,
    mfu: float = 0.5,
    peak_flops: float = A100_FP32_PEAK_FLOPS,
) -> float:
    """Days to run `steps` AdamW steps at `mfu` of `peak_flops`."""
    return adamw_step_flops(config, batch_size) * steps / (mfu * peak_flops) / 86_400


def with_context(config: ModelConfig, context_length: int) -> ModelConfig:
    return dataclasses.replace(config, context_length=context_length)
