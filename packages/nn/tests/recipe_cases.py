"""Shared configs and helpers of the recipe tests (test_recipe*.py).

A plain module, not a test file: the tests import it as `packages.nn.tests.recipe_cases` (the
repository root is on pytest's pythonpath), since the parametrizations need it at collection.
"""

import dataclasses

import torch

from tinylm.nn import ComputeConfig, ModelConfig, TransformerLM

BASE = ModelConfig(vocab_size=50, context_length=16, d_model=32, num_layers=4, num_heads=4, d_ff=64)

# Each switch with its "on" value.
SWITCHES = {
    "qk_norm": True,
    "ffn": "relu2",
    "logit_softcap": 2.0,
    "value_embeddings": 2,
    "unet_skips": True,
    "zero_init_proj": True,
    "parameter_free_norm": True,
    "tie_embeddings": True,
}
ALL_ON = dataclasses.replace(BASE, **SWITCHES)
KERNELS = [
    ComputeConfig(),
    ComputeConfig(attention="sdpa"),
    ComputeConfig(fused_qkv=True),
    ComputeConfig(attention="sdpa", fused_qkv=True),
    ComputeConfig(pointwise="torch", loss="fused"),
    ComputeConfig(attention="sdpa", fused_qkv=True, pointwise="torch", loss="fused"),
    ComputeConfig(attention="sdpa", fused_qkv=True, pointwise="torch", loss="fused_linear"),
]


def build(config: ModelConfig, compute: ComputeConfig | None = None, seed: int = 0):
    torch.manual_seed(seed)
    return TransformerLM(config, compute)


def ids_and_targets(batch=2, seq=16):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 50, (batch, seq), generator=g), torch.randint(
        0, 50, (batch, seq), generator=g
    )


def perturb_scalars(model: TransformerLM) -> None:
    """Move gains, gates and skip weights off their init so that every switch is exercised."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameter_groups()["scalar"]:
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        for layer in model.layers:  # zero_init_proj: give the branches something to say
            for w in (layer.attn.output_proj.weight, layer.ffn.w2.weight):
                if not w.any():
                    w.add_(0.1 * torch.randn(w.shape, generator=g))
