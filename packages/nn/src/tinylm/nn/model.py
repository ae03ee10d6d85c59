"""The transformer: blocks of attention + feed-forward, and the language model around them.

    token ids ─ token_embeddings ─ layers[0..L-1] ─ ln_final ─ lm_head ─ logits

Block (pre-norm, the default):   z = x + attn(ln1(x));   y = z + ffn(ln2(z))
Ablations from `ModelConfig`:    norm="post": z = ln1(x + attn(x)); y = ln2(z + ffn(z))
                                 norm="none": no RMSNorm anywhere (no ln1/ln2/ln_final)
                                 position="none": no RoPE (the causal mask alone orders tokens)
                                 ffn="silu": ungated w2(silu(w1 x)) instead of SwiGLU
"""

import re
from collections.abc import Mapping
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import Module, ModuleList

from tinylm.nn.attention import CausalSelfAttention, LayerKVCache
from tinylm.nn.config import ModelConfig
from tinylm.nn.layers import Embedding, Linear, RMSNorm, SiLUFeedForward, SwiGLU
from tinylm.nn.rope import RotaryEmbedding
from tinylm.nn.typecheck import typechecked

# Prefixes added by torch.compile (`_orig_mod.`) and DistributedDataParallel (`module.`).
_WRAPPER_PREFIX = re.compile(r"^(?:_orig_mod\.|module\.)+")


class TransformerBlock(Module):
    def __init__(
        self, config: ModelConfig, rope: RotaryEmbedding | None = None, *, device=None, dtype=None
    ):
        super().__init__()
        self.norm = config.norm
        self.attn = CausalSelfAttention(
            config.d_model,
            config.num_heads,
            rope,
            attention=config.attention,
            fused_qkv=config.fused_qkv,
            device=device,
            dtype=dtype,
        )
        ffn_class = SwiGLU if config.ffn == "swiglu" else SiLUFeedForward
        self.ffn = ffn_class(config.d_model, config.d_ff, device=device, dtype=dtype)
        if config.norm != "none":
            self.ln1 = RMSNorm(config.d_model, device=device, dtype=dtype)
            self.ln2 = RMSNorm(config.d_model, device=device, dtype=dtype)

    @typechecked
    def forward(
        self,
        x: Float[Tensor, "... seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        kv_cache: LayerKVCache | None = None,
    ) -> Float[Tensor, "... seq d_model"]:
        if self.norm == "pre":
            z = x + self.attn(self.ln1(x), token_positions, kv_cache)
            return z + self.ffn(self.ln2(z))
        if self.norm == "post":
            z = self.ln1(x + self.attn(x, token_positions, kv_cache))
            return self.ln2(z + self.ffn(z))
        z = x + self.attn(x, token_positions, kv_cache)
        return z + self.ffn(z)


class KVCache:
    """One `LayerKVCache` per layer; `length` is how many positions are cached."""

    def __init__(self, layers: list[LayerKVCache]):
        self.layers = layers

    @property
    def length(self) -> int:
        return self.layers[0].length

    @property
    def max_len(self) -> int:
        return self.layers[0].max_len

    def reset(self) -> None:
        for layer in self.layers:
            layer.length = 0


class TransformerLM(Module):
    """Decoder-only transformer language model: token ids (..., seq) -> logits (..., seq, vocab)."""

    def __init__(self, config: ModelConfig, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.token_embeddings = Embedding(config.vocab_size, config.d_model, device, dtype)
        # One RoPE table shared by every layer: it depends only on the config.
        rope = None
        if config.position == "rope":
            rope = RotaryEmbedding(
                config.rope_theta, config.head_dim, config.context_length, device, dtype
            )
        self.layers = ModuleList(
            TransformerBlock(config, rope, device=device, dtype=dtype)
            for _ in range(config.num_layers)
        )
        if config.norm != "none":
            self.ln_final = RMSNorm(config.d_model, device=device, dtype=dtype)
        self.lm_head = Linear(config.d_model, config.vocab_size, device, dtype)
        if config.tie_embeddings:
            # Share one matrix. It keeps lm_head's (Glorot) init: Embedding's std-1 init would
            # make the initial logits ~√d_model large. Both keys stay in the state dict.
            self.token_embeddings.weight = self.lm_head.weight

    @typechecked
    def forward(
        self, token_ids: Int[Tensor, "... seq"], kv_cache: KVCache | None = None
    ) -> Float[Tensor, "... seq vocab"]:
        seq = token_ids.shape[-1]
        past = kv_cache.length if kv_cache is not None else 0
        if past + seq > self.config.context_length:
            where = f" after {past} cached positions" if past else ""
            raise ValueError(
                f"sequence length (seq) {seq}{where} exceeds context_length="
                f"{self.config.context_length}"
            )
        x = self.token_embeddings(token_ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, None, kv_cache.layers[i] if kv_cache is not None else None)
        if self.config.norm != "none":
            x = self.ln_final(x)
        return self.lm_head(x)

    def new_kv_cache(self, batch_size: int, device=None, dtype=None) -> KVCache:
        """An empty cache for `forward(ids, kv_cache=...)` with ids of shape (batch_size, seq)."""
        weight = self.lm_head.weight
        c = self.config
        return KVCache(
            [
                LayerKVCache(
                    batch_size,
                    c.num_heads,
                    c.context_length,
                    c.head_dim,
                    device or weight.device,
                    dtype or weight.dtype,
                )
                for _ in range(c.num_layers)
            ]
        )

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):
        """Module.load_state_dict that also accepts state dicts of `torch.compile`d/DDP models.

        Their keys carry `_orig_mod.` / `module.` prefixes; these are stripped first.
        """
        cleaned = {_WRAPPER_PREFIX.sub("", key): value for key, value in state_dict.items()}
        return super().load_state_dict(cleaned, strict=strict, assign=assign)

    def num_parameters(self) -> int:
        """Distinct parameters (a tied matrix counts once); equals `model_stats(config).params`."""
        return sum(p.numel() for p in self.parameters())
