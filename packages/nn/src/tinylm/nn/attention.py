"""Scaled dot-product attention and causal multi-head self-attention, with a KV cache.

The from-scratch path is `scaled_dot_product_attention` below. Faster kernels for the same
function (torch's fused SDPA, one fused QKV matmul) live in `compute.py`'s tables and are plugged
in by `CausalSelfAttention.set_kernels`; the defaults here are the references they must match.

Recipe switches (each off by default; off = the plain layer with the same keys):
- `qk_norm`: q and k are RMS-normalised over the head dim, per head, before RoPE (`q_norm`,
  `k_norm`: RMSNorm(d_k), one gain vector shared by all heads; no gain if `norm_affine=False`).
  Scores then no longer grow with the q/k weights' scale, which keeps softmax out of saturation.
- `value_embedding`: `forward(..., value_embedding=e)` adds `value_gate ⊙ e` to V (a learned
  vector gate per layer, init 0.5); `e` is a token-embedding-like table lookup made by the model.

Two ways to use the KV cache (`LayerKVCache`, preallocated to the full context):
- prefill/eager: `forward(x, kv_cache=c)` appends seq positions after `c.length` (a host int)
  and attends over the filled prefix `[:length]`: shapes vary with the length.
- decode step: `forward(x, kv_cache=c, decode_position=p)`, x one position, p a 0-dim long
  tensor: K/V are written at index p with `index_copy_`, and the query attends over the *whole*
  buffer with the mask `key_index <= p`. No Python int depends on p, so every step has the same
  shapes and `torch.compile` (CUDA graphs too) captures one graph for all of them. Keys past p
  (zeros or stale) get weight exactly 0, so the result equals the prefix computation.
"""

import math

import torch
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor
from torch.nn import Module, Parameter

from tinylm.nn.layers import Linear, RMSNorm, cast, softmax
from tinylm.nn.rope import RotaryEmbedding
from tinylm.nn.typecheck import typechecked

VALUE_GATE_INIT = 0.5  # half of the table at the start, like modded-nanogpt's λ = 0.5


@typechecked
def scaled_dot_product_attention(
    Q: Float[Tensor, "... queries d_k"],
    K: Float[Tensor, "... keys d_k"],
    V: Float[Tensor, "... keys d_v"],
    mask: Bool[Tensor, "... queries keys"] | None = None,
) -> Float[Tensor, "... queries d_v"]:
    """softmax(QKᵀ/√d_k) V over any leading dims. `mask` True = may attend.

    A query whose row is fully masked gets a zero output (see `softmax`).
    """
    scores = (Q @ K.transpose(-2, -1)) / math.sqrt(Q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = softmax(scores, dim=-1)  # statistics in float32, result in scores' dtype
    return weights @ V


def causal_mask(queries: int, past: int, device) -> Tensor:
    """(queries, past+queries) bool: query i sits at index past+i and may attend keys j ≤ past+i."""
    query_index = torch.arange(past, past + queries, device=device)
    key_index = torch.arange(past + queries, device=device)
    return key_index[None, :] <= query_index[:, None]


def reference_attention(q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor:
    """Causal attention of q (..., seq, d_k) on k/v (..., past+seq, d_k), from scratch."""
    return scaled_dot_product_attention(q, k, v, causal_mask(q.shape[-2], past, q.device))


def project_qkv_separately(attn: "CausalSelfAttention", x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The reference projection: three matmuls."""
    return attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)


class LayerKVCache:
    """Keys and values of one attention layer for the positions seen so far.

    Preallocated to (batch, heads, max_len, d_k) so that decoding a token writes one position
    instead of re-concatenating the whole history. `length` (host int) counts the positions
    appended by the eager path; a decode step writes at a tensor position instead and leaves
    `length` to its caller (see the module docstring).
    """

    def __init__(self, batch_size: int, num_heads: int, max_len: int, d_k: int, device, dtype):
        shape = (batch_size, num_heads, max_len, d_k)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.key_index = torch.arange(max_len, device=device)  # for the decode-step mask
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.keys.shape[2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (batch, heads, new, d_k) after the cached ones; return all keys/values."""
        start, end = self.length, self.length + k.shape[-2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} positions > max_len={self.max_len}")
        self.keys[:, :, start:end] = cast(k, self.keys.dtype)
        self.values[:, :, start:end] = cast(v, self.values.dtype)
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def write(self, k: Tensor, v: Tensor, position: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (batch, heads, 1, d_k) at `position` (shape (1,), long, on the cache's
        device); return the whole buffers. Fixed shapes, no host read of the position."""
        self.keys.index_copy_(2, position, cast(k, self.keys.dtype))
        self.values.index_copy_(2, position, cast(v, self.values.dtype))
        return self.keys, self.values

    def mask(self, position: Tensor) -> Tensor:
        """(1, max_len) bool: the one query at `position` may attend keys 0..position."""
        return (self.key_index <= position)[None, :]


class CausalSelfAttention(Module):
    """Multi-head causal self-attention; head h uses rows h·d_k..(h+1)·d_k of q/k/v_proj.

    RoPE (when given) rotates queries and keys only; values carry content, not position.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        rope: RotaryEmbedding | None = None,
        *,
        qk_norm: bool = False,
        value_embedding: bool = False,
        norm_affine: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.rope = rope
        self.q_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        if qk_norm:
            self.q_norm = RMSNorm(self.d_k, device=device, dtype=dtype, affine=norm_affine)
            self.k_norm = RMSNorm(self.d_k, device=device, dtype=dtype, affine=norm_affine)
        if value_embedding:
            self.value_gate = Parameter(
                torch.full((d_model,), VALUE_GATE_INIT, device=device, dtype=dtype)
            )
        self.set_kernels(reference_attention, project_qkv_separately)

    @property
    def qk_norm(self) -> bool:
        return hasattr(self, "q_norm")

    @property
    def uses_value_embedding(self) -> bool:
        return hasattr(self, "value_gate")

    def set_kernels(self, attention_kernel, project_qkv, masked_attention=None) -> None:
        """Plug in the kernels (see compute.py); they compute the same function.

        `attention_kernel(q, k, v, past)` is causal attention after `past` cached positions;
        `masked_attention(q, k, v, mask)` (default: the from-scratch one) serves decode steps.
        """
        self.attention_kernel = attention_kernel
        self.project_qkv = project_qkv
        self.masked_attention = masked_attention or scaled_dot_product_attention

    @typechecked
    def forward(
        self,
        x: Float[Tensor, "... seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        kv_cache: LayerKVCache | None = None,
        value_embedding: Float[Tensor, "... seq d_model"] | None = None,
        decode_position: Int[Tensor, ""] | None = None,
    ) -> Float[Tensor, "... seq d_model"]:
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"CausalSelfAttention: input has d_model={x.shape[-1]}, expected {self.d_model}"
            )
        if (value_embedding is not None) != self.uses_value_embedding:
            raise ValueError(
                "CausalSelfAttention: value_embedding must be given exactly when the layer was "
                "built with value_embedding=True"
            )
        if decode_position is not None:
            if kv_cache is None or x.shape[-2] != 1 or token_positions is not None:
                raise ValueError(
                    "CausalSelfAttention: decode_position needs a kv_cache, one position "
                    "(seq=1) and no token_positions"
                )
            return self._decode(x, decode_position, kv_cache, value_embedding)
        seq = x.shape[-2]
        past = kv_cache.length if kv_cache is not None else 0
        q, k, v = self._heads(x, value_embedding)
        if self.rope is not None:
            if token_positions is None:
                token_positions = torch.arange(past, past + seq, device=x.device)
            positions = token_positions.unsqueeze(-2)  # broadcast over the head dim
            q, k = self.rope(q, positions), self.rope(k, positions)

        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
        out = self.attention_kernel(q, cast(k, q.dtype), cast(v, q.dtype), past)
        out = rearrange(out, "... h seq d -> ... seq (h d)")
        return self.output_proj(out)

    def _heads(self, x: Tensor, value_embedding: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v (..., heads, seq, d_k): projected, value-embedded, QK-normed; before RoPE."""
        q, k, v = self.project_qkv(self, x)
        if value_embedding is not None:
            v = v + cast(self.value_gate * value_embedding, v.dtype)
        q, k, v = (
            rearrange(t, "... seq (h d) -> ... h seq d", h=self.num_heads) for t in (q, k, v)
        )
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    def _decode(
        self, x: Tensor, position: Tensor, kv_cache: LayerKVCache, value_embedding: Tensor | None
    ) -> Tensor:
        """One position at tensor `position`, attending over the whole (masked) cache buffer."""
        q, k, v = self._heads(x, value_embedding)
        positions = position.reshape(1)  # (seq=1,)
        if self.rope is not None:
            q, k = self.rope(q, positions), self.rope(k, positions)
        keys, values = kv_cache.write(k, v, positions)
        out = self.masked_attention(
            q, cast(keys, q.dtype), cast(values, q.dtype), kv_cache.mask(position)
        )
        out = rearrange(out, "... h seq d -> ... seq (h d)")
        return self.output_proj(out)
