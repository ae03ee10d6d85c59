"""The recipes recipe_bench compares: the ONE place their values live (see bench/RECIPE.md).

Keys are the bundled configs' TOML keys: [model] switches (MODEL_KEYS), then [optim] (optimizer,
schedule, per-role lrs). `recipe_parts` turns a recipe into a model and its optimizers, and
`--variant NAME:key=value` changes MODERN's keys. When these come from `tinylm.train.load_config`
(the bundled "modern" and "default" configs), only this file changes.
"""

from __future__ import annotations

MODERN: dict = {
    # [model]
    "qk_norm": True,
    "ffn": "relu2",  # d_ff rescaled to keep the parameter count (ModelConfig.with_ffn)
    "logit_softcap": 0.0,  # 15 cost 25% of the throughput here and lost 0.28 nats (RECIPE.md)
    "value_embeddings": 1,
    "unet_skips": False,  # neutral per step at this scale (RECIPE.md); switchable
    "zero_init_proj": True,
    "parameter_free_norm": False,
    "tie_embeddings": False,
    # [optim]
    "optimizer": "muon",  # Muon for "matrix", AdamW for "embedding"/"head"/"scalar"
    "schedule": "wsd",
    "muon_lr": 0.03,
    "embedding_lr": 0.3,
    "head_lr": 0.008,
    "scalar_lr": 0.02,
    "betas": (0.8, 0.95),  # AdamW roles
    "weight_decay": 0.1,  # AdamW embedding/head decay (0 lost 0.10 nats at 600 s: RECIPE.md)
    "muon_weight_decay": 0.1,  # decoupled, θ·(1 − lr·wd)
    "muon_momentum": 0.95,
    "momentum_start": 0.85,
    "momentum_warmup_steps": 50,
    "warmup_steps": 10,
    "decay_fraction": 0.4,
    "min_lr_ratio": 0.0,
    "grad_clip": 1.0,
}

# Today's default train recipe (packages/train configs/default.toml [optim]).
BASELINE: dict = {
    "optimizer": "adamw",
    "schedule": "cosine",
    "lr": 3e-3,
    "min_lr_ratio": 0.1,  # min_lr 3e-4
    "warmup_steps": 20,
    "weight_decay": 0.1,  # matrices and embeddings/head; gains 0
    "betas": (0.9, 0.95),
    "grad_clip": 1.0,
}

# The HF peer's AdamW lrs (`--contenders peer` runs them all; the best one is reported).
PEER_LRS = (1e-3, 3e-3, 1e-2)

MODEL_KEYS = (
    "qk_norm",
    "ffn",
    "logit_softcap",
    "value_embeddings",
    "unet_skips",
    "zero_init_proj",
    "parameter_free_norm",
    "tie_embeddings",
)
