"""Parameter counts and FLOPs per token of a `ModelConfig`, for every switch (nn README).

The training loop uses these for MFU; tests check them against `sum(p.numel())` of a built model
and against the matmul FLOPs torch's FlopCounterMode sees in a forward.
"""

from dataclasses import dataclass

from tinylm.nn.config import FFN_MATRICES, ModelConfig


@dataclass(frozen=True)
class ModelStats:
    """Parameter counts and matmul FLOPs per token of a `ModelConfig`."""

    params: int
    non_embedding_params: int
    forward_flops_per_token: int
    train_flops_per_token: int


def model_stats(config: ModelConfig) -> ModelStats:
    """Count parameters and FLOPs per token.

    - `params`: every parameter once (a tied embedding/lm_head matrix counts once).
    - `non_embedding_params`: `params` minus the embedding tables (the token table and the
      value-embedding tables, vocab_size·d_model each); an untied lm_head is compute, so it stays.
    - FLOPs count matmuls only, 2·m·n·k, with the attention score (QKᵀ) and value (AV) matmuls
      taken at the full context length; training = 3× forward (backward costs two forwards).
      The recipe's elementwise work (QK-norm, ReLU², softcap, gates, skips) is not counted.
    """
    c = config
    d, d_ff, v, t = c.d_model, c.d_ff, c.vocab_size, c.context_length
    gains = not c.parameter_free_norm  # does an RMSNorm carry a weight?
    ffn_mats = FFN_MATRICES[c.ffn]

    per_layer = 4 * d * d + ffn_mats * d * d_ff
    per_layer += 2 * d if c.norm != "none" and gains else 0  # ln1, ln2
    per_layer += 2 * c.head_dim if c.qk_norm and gains else 0  # q_norm, k_norm
    gated_layers = sum(table is not None for table in c.value_embedding_tables)

    embedding_tables = (1 + c.value_embeddings) * v * d
    params = embedding_tables + c.num_layers * per_layer + gated_layers * d  # value_gate
    params += d if c.norm != "none" and gains else 0  # ln_final
    params += 0 if c.tie_embeddings else v * d  # lm_head
    params += len(c.unet_pairs)  # skip_weights

    flops_per_layer = 2 * (4 * d * d) + 2 * (ffn_mats * d * d_ff) + 2 * (2 * t * d)
    forward = c.num_layers * flops_per_layer + 2 * d * v
    return ModelStats(
        params=params,
        non_embedding_params=params - embedding_tables,
        forward_flops_per_token=forward,
        train_flops_per_token=3 * forward,
    )
