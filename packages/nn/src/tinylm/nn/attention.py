"""Scaled dot-product attention and causal multi-head self-attention, with a KV cache.

The from-scratch path is `scaled_dot_product_attention` below. `attention="sdpa"` swaps in
torch's fused kernel (FlashAttention / memory-efficient on GPU) for speed; it is the *only* use of
torch.nn.functional in this package and must agree with the naive path (tested).
"""

import math

import torch
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor
from torch.nn import Module
from torch.nn.functional import scaled_dot_product_attention as _fused_sdpa  # fast path only

from tinylm.nn.layers import Linear, softmax
from tinylm.nn.rope import RotaryEmbedding
from tinylm.nn.typecheck import typechecked


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


class LayerKVCache:
    """Keys and values of one attention layer for the positions seen so far.

    Preallocated to (batch, heads, max_len, d_k) so that decoding a token writes one position
    instead of re-concatenating the whole history.
    """

    def __init__(self, batch_size: int, num_heads: int, max_len: int, d_k: int, device, dtype):
        shape = (batch_size, num_heads, max_len, d_k)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def max_len(self) -> int:
        return self.keys.shape[2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (batch, heads, new, d_k) after the cached ones; return all keys/values."""
        start, end = self.length, self.length + k.shape[-2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} positions > max_len={self.max_len}")
        self.keys[:, :, start:end] = k.to(self.keys.dtype)
        self.values[:, :, start:end] = v.to(self.values.dtype)
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


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
        attention: str = "naive",
        fused_qkv: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if attention not in ("naive", "sdpa"):
            raise ValueError(f"attention must be 'naive' or 'sdpa', got {attention!r}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.attention = attention
        self.fused_qkv = fused_qkv
        self.rope = rope
        self.q_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, d_model, device=device, dtype=dtype)
        self.output_proj = Linear(d_model, d_model, device=device, dtype=dtype)

    def _project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.fused_qkv:
            # One (3·d_model, d_model) matmul; the weights stay separate parameters so the
            # state-dict keys (q_proj/k_proj/v_proj) do not change.
            weight = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))
            return (x @ weight.t()).split(self.d_model, dim=-1)
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    @typechecked
    def forward(
        self,
        x: Float[Tensor, "... seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        kv_cache: LayerKVCache | None = None,
    ) -> Float[Tensor, "... seq d_model"]:
        if x.shape[-1] != self.d_model:
            raise ValueError(
                f"CausalSelfAttention: input has d_model={x.shape[-1]}, expected {self.d_model}"
            )
        seq = x.shape[-2]
        past = kv_cache.length if kv_cache is not None else 0
        q, k, v = self._project_qkv(x)
        q, k, v = (
            rearrange(t, "... seq (h d) -> ... h seq d", h=self.num_heads) for t in (q, k, v)
        )

        if self.rope is not None:
            if token_positions is None:
                token_positions = torch.arange(past, past + seq, device=x.device)
            positions = token_positions.unsqueeze(-2)  # broadcast over the head dim
            q, k = self.rope(q, positions), self.rope(k, positions)

        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
        # Query i sits at absolute index past+i and may attend every key j <= past+i.
        query_index = torch.arange(past, past + seq, device=x.device)
        key_index = torch.arange(past + seq, device=x.device)
        causal = key_index[None, :] <= query_index[:, None]  # (seq, past+seq)

        if self.attention == "sdpa":
            if kv_cache is None:
                out = _fused_sdpa(q, k, v, is_causal=True)
            else:
                out = _fused_sdpa(q, k.to(q.dtype), v.to(q.dtype), attn_mask=causal)
        else:
            out = scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), causal)
        out = rearrange(out, "... h seq d -> ... seq (h d)")
        return self.output_proj(out)
