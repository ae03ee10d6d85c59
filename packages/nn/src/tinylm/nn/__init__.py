"""tinylm.nn: a from-scratch, shape-checked transformer language model (SPEC §3).

    config = ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=4,
                         num_heads=16, d_ff=1344)
    model = TransformerLM(config)
    loss = cross_entropy(model(x), y)
    text_ids = generate(model, prompt_ids, max_new_tokens=100, temperature=0.8, top_p=0.95)

Runtime jaxtyping/beartype checks are on by default; `TINYLM_TYPECHECK=0` (read at import) turns
them off.
"""

from tinylm.nn.attention import CausalSelfAttention, scaled_dot_product_attention
from tinylm.nn.config import ModelConfig, ModelStats, default_d_ff, model_stats
from tinylm.nn.generate import generate
from tinylm.nn.layers import Embedding, Linear, RMSNorm, SiLUFeedForward, SwiGLU, silu, softmax
from tinylm.nn.loss import cross_entropy
from tinylm.nn.model import KVCache, TransformerBlock, TransformerLM
from tinylm.nn.rope import RotaryEmbedding
from tinylm.nn.typecheck import TYPECHECK

__all__ = [
    "TYPECHECK",
    "CausalSelfAttention",
    "Embedding",
    "KVCache",
    "Linear",
    "ModelConfig",
    "ModelStats",
    "RMSNorm",
    "RotaryEmbedding",
    "SiLUFeedForward",
    "SwiGLU",
    "TransformerBlock",
    "TransformerLM",
    "cross_entropy",
    "default_d_ff",
    "generate",
    "model_stats",
    "scaled_dot_product_attention",
    "silu",
    "softmax",
]
