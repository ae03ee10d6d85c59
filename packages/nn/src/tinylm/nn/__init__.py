"""tinylm.nn: a from-scratch, shape-checked transformer language model.

    config = ModelConfig(vocab_size=10_000, context_length=256, d_model=512, num_layers=4,
                         num_heads=16, d_ff=1344)
    model = TransformerLM(config, ComputeConfig(attention="sdpa"))  # kernels apart from the model
    loss = model(x, targets=y)                 # == cross_entropy(model(x), y)
    groups = model.parameter_groups()          # {"matrix", "embedding", "head", "scalar"}
    text_ids = generate(model, prompt_ids, max_new_tokens=100, temperature=0.8, top_p=0.95)

Runtime jaxtyping/beartype checks are on by default; `TINYLM_TYPECHECK=0` (read at import) turns
them off (`TYPECHECK`, `typechecked` and `unchecked` are that switch, for every package).
`unwrap(model)` is the plain model under torch.compile / DDP wrappers; `strip_wrapper_prefixes`
does the same to a state dict's keys.
"""

from tinylm.nn.attention import CausalSelfAttention, scaled_dot_product_attention
from tinylm.nn.compute import (
    ATTENTION_KERNELS,
    LOSS_KERNELS,
    POINTWISE_KERNELS,
    QKV_PROJECTIONS,
    ComputeConfig,
    split_compute_keys,
)
from tinylm.nn.config import ModelConfig, default_d_ff
from tinylm.nn.generate import generate
from tinylm.nn.layers import (
    FFN_VARIANTS,
    Embedding,
    Linear,
    ReLU2FeedForward,
    RMSNorm,
    SiLUFeedForward,
    SwiGLU,
    logit_softcap,
    relu_squared,
    silu,
    softmax,
)
from tinylm.nn.loss import cross_entropy, linear_cross_entropy
from tinylm.nn.model import KVCache, TransformerBlock, TransformerLM
from tinylm.nn.rope import RotaryEmbedding
from tinylm.nn.stats import ModelStats, model_stats
from tinylm.nn.typecheck import TYPECHECK, typechecked, unchecked
from tinylm.nn.wrappers import strip_wrapper_prefixes, unwrap

__all__ = [
    "ATTENTION_KERNELS",
    "FFN_VARIANTS",
    "LOSS_KERNELS",
    "POINTWISE_KERNELS",
    "QKV_PROJECTIONS",
    "TYPECHECK",
    "CausalSelfAttention",
    "ComputeConfig",
    "Embedding",
    "KVCache",
    "Linear",
    "ModelConfig",
    "ModelStats",
    "RMSNorm",
    "ReLU2FeedForward",
    "RotaryEmbedding",
    "SiLUFeedForward",
    "SwiGLU",
    "TransformerBlock",
    "TransformerLM",
    "cross_entropy",
    "default_d_ff",
    "generate",
    "linear_cross_entropy",
    "logit_softcap",
    "model_stats",
    "relu_squared",
    "scaled_dot_product_attention",
    "silu",
    "softmax",
    "split_compute_keys",
    "strip_wrapper_prefixes",
    "typechecked",
    "unchecked",
    "unwrap",
]
