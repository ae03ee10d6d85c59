"""The transformer: blocks of attention + feed-forward, and the language model around them.

    token ids ─ token_embeddings ─ layers[0..L-1] ─ ln_final ─ lm_head ─ softcap ─ logits
                value_embeddings ─┘ (V of some layers)   └─ U-net skips (early → late layers)

Block (pre-norm, the default):   z = x + attn(ln1(x));   y = z + ffn(ln2(z))
Ablations from `ModelConfig`:    norm="post": z = ln1(x + attn(x)); y = ln2(z + ffn(z))
                                 norm="none": no RMSNorm anywhere (no ln1/ln2/ln_final)
                                 position="none": no RoPE (the causal mask alone orders tokens)
                                 ffn: a key of FFN_VARIANTS (swiglu, silu, relu2)
Recipe switches (nn README):     qk_norm, logit_softcap, value_embeddings, unet_skips,
                                 zero_init_proj, parameter_free_norm (see ModelConfig)
Kernels (attention, fused QKV, pointwise ops, loss) come from a `ComputeConfig` and never
change the function.

Decoding: `forward(ids, kv_cache=c)` is the eager (prefill) path, its shapes vary with the cached
length; `decode_step(ids (B, 1), c, position)` is one token at a 0-dim tensor position with fixed
shapes and no value-dependent Python, the function that `generate` compiles once.
"""

from collections.abc import Mapping
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import Module, ModuleList, Parameter

from tinylm.nn import compute as _compute_ops
from tinylm.nn.attention import CausalSelfAttention, LayerKVCache
from tinylm.nn.compute import (
    ATTENTION_KERNELS,
    LOSS_KERNELS,
    NAIVE_ATTENTION_BY_POINTWISE,
    POINTWISE_KERNELS,
    QKV_PROJECTIONS,
    ComputeConfig,
)
from tinylm.nn.config import ModelConfig
from tinylm.nn.layers import FFN_VARIANTS, Embedding, Linear, RMSNorm, logit_softcap
from tinylm.nn.rope import RotaryEmbedding
from tinylm.nn.typecheck import typechecked, value_checks_enabled
from tinylm.nn.wrappers import strip_wrapper_prefixes


class TransformerBlock(Module):
    def __init__(
        self,
        config: ModelConfig,
        rope: RotaryEmbedding | None = None,
        *,
        value_embedding: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.norm = config.norm
        affine = not config.parameter_free_norm
        self.attn = CausalSelfAttention(
            config.d_model,
            config.num_heads,
            rope,
            qk_norm=config.qk_norm,
            value_embedding=value_embedding,
            norm_affine=affine,
            device=device,
            dtype=dtype,
        )
        self.ffn = FFN_VARIANTS[config.ffn](config.d_model, config.d_ff, device=device, dtype=dtype)
        if config.norm != "none":
            self.ln1 = RMSNorm(config.d_model, device=device, dtype=dtype, affine=affine)
            self.ln2 = RMSNorm(config.d_model, device=device, dtype=dtype, affine=affine)
        if config.zero_init_proj:
            # Drawn first, then zeroed, so every other weight matches the plain model's init.
            # A pre-norm block starts as the identity: both residual branches output zero.
            with torch.no_grad():
                self.attn.output_proj.weight.zero_()
                self.ffn.w2.weight.zero_()

    @typechecked
    def forward(
        self,
        x: Float[Tensor, "... seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        kv_cache: LayerKVCache | None = None,
        value_embedding: Float[Tensor, "... seq d_model"] | None = None,
        decode_position: Int[Tensor, ""] | None = None,
    ) -> Float[Tensor, "... seq d_model"]:
        def attn(h: Tensor) -> Tensor:
            return self.attn(h, token_positions, kv_cache, value_embedding, decode_position)

        if self.norm == "pre":
            z = x + attn(self.ln1(x))
            return z + self.ffn(self.ln2(z))
        if self.norm == "post":
            z = self.ln1(x + attn(x))
            return self.ln2(z + self.ffn(z))
        z = x + attn(x)
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

    def tensors(self) -> list[Tensor]:
        """Every buffer the decode step reads or writes (to mark them static for CUDA graphs)."""
        return [t for layer in self.layers for t in (layer.keys, layer.values, layer.key_index)]


class TransformerLM(Module):
    """Decoder-only transformer language model: token ids (..., seq) -> logits (..., seq, vocab).

    `model(ids)` gives logits (softcapped when `logit_softcap` > 0); `model(ids, targets=y)` gives
    the mean cross-entropy, computed by the `compute.loss` kernel.
    """

    def __init__(
        self, config: ModelConfig, compute: ComputeConfig | None = None, device=None, dtype=None
    ):
        super().__init__()
        if compute is not None and not isinstance(compute, ComputeConfig):
            raise TypeError(
                f"TransformerLM(config, compute=None, device=None, dtype=None): compute must be a "
                f"ComputeConfig, got {compute!r} (pass device= and dtype= by keyword)"
            )
        self.config = config
        self.token_embeddings = Embedding(config.vocab_size, config.d_model, device, dtype)
        # One RoPE table shared by every layer: it depends only on the config.
        rope = None
        if config.position == "rope":
            rope = RotaryEmbedding(
                config.rope_theta, config.head_dim, config.context_length, device, dtype
            )
        self.value_tables = config.value_embedding_tables  # per layer: table index or None
        self.layers = ModuleList(
            TransformerBlock(
                config, rope, value_embedding=table is not None, device=device, dtype=dtype
            )
            for table in self.value_tables
        )
        if config.norm != "none":
            self.ln_final = RMSNorm(
                config.d_model, device=device, dtype=dtype, affine=not config.parameter_free_norm
            )
        self.lm_head = Linear(config.d_model, config.vocab_size, device, dtype)
        if config.tie_embeddings:
            # Share one matrix. It keeps lm_head's (Glorot) init: Embedding's std-1 init would
            # make the initial logits ~√d_model large. Both keys stay in the state dict.
            self.token_embeddings.weight = self.lm_head.weight
        # Recipe parameters are created last, so the plain weights draw the same random numbers
        # with or without them.
        self.value_embeddings = ModuleList(
            Embedding(config.vocab_size, config.d_model, device, dtype)
            for _ in range(config.value_embeddings)
        )
        self.unet_pairs = config.unet_pairs  # (encoder layer, decoder layer)
        if self.unet_pairs:
            self.skip_weights = Parameter(
                torch.ones(len(self.unet_pairs), device=device, dtype=dtype)
            )
        self.set_compute(compute or ComputeConfig())

    def set_compute(self, compute: ComputeConfig) -> None:
        """Switch kernels (attention, fused QKV, pointwise ops, loss); the function stays."""
        if not isinstance(compute, ComputeConfig):
            raise TypeError(f"set_compute needs a ComputeConfig, got {compute!r}")
        self.compute = compute
        # Decode steps attend under an explicit mask; compute.py may offer a fused kernel for
        # that (MASKED_ATTENTION_KERNELS, same keys as ATTENTION_KERNELS), else from scratch.
        masked = getattr(_compute_ops, "MASKED_ATTENTION_KERNELS", {}).get(compute.attention)
        attention = ATTENTION_KERNELS[compute.attention]
        if compute.attention == "naive":
            attention = NAIVE_ATTENTION_BY_POINTWISE[compute.pointwise]
        for layer in self.layers:
            layer.attn.set_kernels(attention, QKV_PROJECTIONS[compute.fused_qkv], masked)
        pointwise = POINTWISE_KERNELS[compute.pointwise]
        for module in self.modules():  # every RMSNorm and FFN (layers.py)
            if hasattr(module, "set_pointwise"):
                module.set_pointwise(pointwise)
        self.loss_kernel = LOSS_KERNELS[compute.loss]

    @typechecked
    def forward(
        self,
        token_ids: Int[Tensor, "... seq"],
        kv_cache: KVCache | None = None,
        targets: Int[Tensor, "... seq"] | None = None,
    ) -> Float[Tensor, "... seq vocab"] | Float[Tensor, ""]:
        seq = token_ids.shape[-1]
        past = kv_cache.length if kv_cache is not None else 0
        if past + seq > self.config.context_length:
            where = f" after {past} cached positions" if past else ""
            raise ValueError(
                f"sequence length (seq) {seq}{where} exceeds context_length="
                f"{self.config.context_length}"
            )
        x = self._hidden(token_ids, kv_cache)
        if targets is not None:
            return self.loss_kernel(
                x, self.lm_head.weight, targets, softcap=self.config.logit_softcap
            )
        return logit_softcap(self.lm_head(x), self.config.logit_softcap)

    @typechecked
    def decode_step(
        self,
        token_ids: Int[Tensor, "batch 1"],
        kv_cache: KVCache,
        position: Int[Tensor, ""],
    ) -> Float[Tensor, "batch vocab"]:
        """Logits of one new token per row at `position` (0-dim long tensor, on the model's
        device), attending to cache positions 0..position; writes its K/V at `position`.

        Equals `forward(ids, kv_cache)[:, -1]` after `position` cached positions, but with fixed
        shapes (attention runs over the whole cache buffer, masked) and no Python branch on
        the position's value, so one compiled graph serves every step. `kv_cache.length` (the
        eager path's host counter) is not advanced: positions belong to the caller.
        """
        if token_ids.shape[0] != kv_cache.layers[0].keys.shape[0]:
            raise ValueError(
                f"decode_step: batch of {token_ids.shape[0]} rows, but the cache was made for "
                f"{kv_cache.layers[0].keys.shape[0]}"
            )
        if value_checks_enabled(position) and not 0 <= int(position) < kv_cache.max_len:
            raise ValueError(
                f"decode_step: position {int(position)} is outside the cache "
                f"[0, {kv_cache.max_len}) (context_length={self.config.context_length})"
            )
        return self.decode_step_unchecked(token_ids, kv_cache, position)

    def decode_step_unchecked(self, token_ids: Tensor, kv_cache: KVCache, position: Tensor):
        """`decode_step` without its argument checks: the function that gets compiled."""
        x = self._hidden(token_ids, kv_cache, position)
        return logit_softcap(self.lm_head(x[:, -1]), self.config.logit_softcap)

    def _hidden(
        self, token_ids: Tensor, kv_cache: KVCache | None, decode_position: Tensor | None = None
    ) -> Tensor:
        """The trunk: embeddings, blocks (with value embeddings and U-net skips), final norm."""
        x = self.token_embeddings(token_ids)
        # Cross-layer state: value-embedding lookups (shared by the first and last layers) and
        # the outputs of the early layers waiting for their U-net partner.
        values = [table(token_ids) for table in self.value_embeddings]
        skip_to = {decoder: (j, encoder) for j, (encoder, decoder) in enumerate(self.unet_pairs)}
        saved: dict[int, Tensor] = {}
        for i, layer in enumerate(self.layers):
            if i in skip_to:
                j, encoder = skip_to[i]
                x = x + self.skip_weights[j] * saved.pop(encoder)
            table = self.value_tables[i]
            x = layer(
                x,
                None,
                kv_cache.layers[i] if kv_cache is not None else None,
                values[table] if table is not None else None,
                decode_position,
            )
            if i < len(self.unet_pairs):
                saved[i] = x
        if self.config.norm != "none":
            x = self.ln_final(x)
        return x

    def parameter_groups(self) -> dict[str, list[Parameter]]:
        """Parameters by role, each exactly once, for per-role optimizers (see the nn README).

        - "matrix": the Linear weights inside the blocks (q/k/v/output_proj, FFN w1/w2/w3)
        - "embedding": token_embeddings and the value-embedding tables (a tied lm_head too)
        - "head": lm_head when untied, else empty
        - "scalar": everything else: RMSNorm gains, value gates, U-net skip weights
        """
        matrix = [
            module.weight
            for layer in self.layers
            for module in layer.modules()
            if isinstance(module, Linear)
        ]
        embedding = [self.token_embeddings.weight, *(t.weight for t in self.value_embeddings)]
        head = [] if self.config.tie_embeddings else [self.lm_head.weight]
        taken = {id(p) for p in (*matrix, *embedding, *head)}
        scalar = [p for p in self.parameters() if id(p) not in taken]
        return {"matrix": matrix, "embedding": embedding, "head": head, "scalar": scalar}

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
        return super().load_state_dict(
            strip_wrapper_prefixes(state_dict), strict=strict, assign=assign
        )

    def num_parameters(self) -> int:
        """Distinct parameters (a tied matrix counts once); equals `model_stats(config).params`."""
        return sum(p.numel() for p in self.parameters())
