"""The basic layers, from scratch: Linear, Embedding, RMSNorm, silu, softmax, the FFNs, softcap.

Numerics: softmax and RMSNorm compute their statistics in float32 whatever the input dtype and
return the input dtype, so bf16/fp16 activations never overflow in x² or exp.
"""

import math
from collections.abc import Callable, Mapping

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import Module, Parameter
from torch.nn.init import trunc_normal_

from tinylm.nn.typecheck import typechecked, value_checks_enabled


def _check_last_dim(x: Tensor, expected: int, dim_name: str, where: str) -> None:
    if x.shape[-1] != expected:
        raise ValueError(
            f"{where}: input has last dimension {dim_name}={x.shape[-1]}, expected {expected}"
        )


def upcast(x: Tensor) -> Tensor:
    """x in at least float32 (float64 stays float64): where statistics are accumulated."""
    if x.dtype is torch.float32 or x.dtype is torch.float64:
        return x  # no-op casts still cost a dispatch each: batch-1 decoding makes ~80 per token
    return x.to(torch.promote_types(x.dtype, torch.float32))


def cast(x: Tensor, dtype: torch.dtype) -> Tensor:
    """`x.to(dtype)`, skipping the call (and its dispatch) when x already has that dtype."""
    return x if x.dtype is dtype else x.to(dtype)


class Linear(Module):
    """y = x Wᵀ, no bias. `weight` is (out_features, in_features), like torch.nn.Linear."""

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        # Variance-preserving for both passes (Glorot), truncated so no weight starts far out.
        std = math.sqrt(2.0 / (in_features + out_features))
        trunc_normal_(self.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

    @typechecked
    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        _check_last_dim(x, self.in_features, "in_features", "Linear")
        return x @ self.weight.t()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Embedding(Module):
    """Lookup table: row i of `weight` (num_embeddings, embedding_dim) is the vector of id i."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = Parameter(
            torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype)
        )
        trunc_normal_(self.weight, mean=0.0, std=1.0, a=-3.0, b=3.0)

    @typechecked
    def forward(self, token_ids: Int[Tensor, "..."]) -> Float[Tensor, "... d"]:
        if value_checks_enabled(token_ids) and token_ids.numel() > 0:
            low, high = int(token_ids.min()), int(token_ids.max())
            if low < 0 or high >= self.num_embeddings:
                bad = high if high >= self.num_embeddings else low
                raise ValueError(
                    f"token id {bad} is out of range for vocab_size={self.num_embeddings} "
                    f"(ids must be in [0, {self.num_embeddings}))"
                )
        return self.weight[token_ids]

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"


def rms_norm(x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    """The reference: x / sqrt(mean(x²) + eps) (* weight), in float32, returned in x's dtype."""
    in_dtype = x.dtype
    x32 = upcast(x)  # x² of a bf16/fp16 activation can overflow or lose all precision
    inv_rms = torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)
    if weight is None:
        return cast(x32 * inv_rms, in_dtype)
    return cast(x32 * inv_rms * cast(weight, x32.dtype), in_dtype)


class RMSNorm(Module):
    """x / sqrt(mean(x²) + eps) * weight over the last dim, computed in float32.

    `affine=False` drops the learnable `weight` (parameter-free norm: no state-dict key).
    `kernel(x, weight, eps)` is `rms_norm` unless `set_pointwise` plugs in a faster one
    (compute.py's POINTWISE_KERNELS).
    """

    def __init__(
        self, d_model: int, eps: float = 1e-5, device=None, dtype=None, *, affine: bool = True
    ):
        super().__init__()
        self.d_model = d_model
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = Parameter(torch.ones(d_model, device=device, dtype=dtype))
        self.kernel = rms_norm

    def set_pointwise(self, kernels: Mapping[str, Callable]) -> None:
        self.kernel = kernels["rms_norm"]

    @typechecked
    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        _check_last_dim(x, self.d_model, "d_model", "RMSNorm")
        return self.kernel(x, self.weight if self.affine else None, self.eps)

    def extra_repr(self) -> str:
        return f"{self.d_model}, eps={self.eps}" + ("" if self.affine else ", affine=False")


@typechecked
def silu(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """x·σ(x)."""
    return x * torch.sigmoid(x)


@typechecked
def relu_squared(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """max(x, 0)²."""
    return torch.clamp_min(x, 0).square()


# The from-scratch pointwise functions, by the names FFNs and POINTWISE_KERNELS use.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"silu": silu, "relu2": relu_squared}


@typechecked
def softmax(x: Float[Tensor, "..."], dim: int = -1) -> Float[Tensor, "..."]:
    """exp(x - max) / sum(exp(x - max)) along `dim`, in float32, returned in x's dtype.

    Subtracting the max makes ±1e4 inputs safe. A row that is entirely -inf (a fully masked
    attention row) gives all zeros instead of NaN, as torch's own SDPA does.
    """
    x32 = upcast(x)
    row_max = x32.amax(dim=dim, keepdim=True)
    row_max = row_max.masked_fill(row_max == float("-inf"), 0.0)
    exp = torch.exp(x32 - row_max)
    # The max element contributes exp(0) = 1, so the sum is >= 1 unless the row is all -inf;
    # the clamp only turns that 0/0 into 0/tiny = 0.
    total = exp.sum(dim=dim, keepdim=True).clamp_min(torch.finfo(x32.dtype).tiny)
    return cast(exp / total, x.dtype)


class _FeedForward(Module):
    """w2(act(w1 x)) (ungated) or w2(act(w1 x) ⊙ w3 x) (gated); `ACTIVATION` names act.

    `self.activation` is the from-scratch function below unless `set_pointwise` plugs in a faster
    kernel for the same function (compute.py's POINTWISE_KERNELS).
    """

    ACTIVATION = "silu"
    GATED = False

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        if self.GATED:
            self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.activation = ACTIVATIONS[self.ACTIVATION]

    def set_pointwise(self, kernels: Mapping[str, Callable]) -> None:
        self.activation = kernels[self.ACTIVATION]

    @typechecked
    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        hidden = self.activation(self.w1(x))
        if self.GATED:
            hidden = hidden * self.w3(x)
        return self.w2(hidden)


class SwiGLU(_FeedForward):
    """Gated FFN: w2(silu(w1 x) ⊙ w3 x). w1, w3: (d_ff, d_model); w2: (d_model, d_ff)."""

    ACTIVATION, GATED = "silu", True


class SiLUFeedForward(_FeedForward):
    """Ungated FFN for the ablation: w2(silu(w1 x)); d_ff ≈ 1.5× SwiGLU's matches its params."""

    ACTIVATION, GATED = "silu", False


class ReLU2FeedForward(_FeedForward):
    """Ungated FFN with squared ReLU (Primer; modded-nanogpt): w2(relu(w1 x)²).

    Two matrices like the SiLU FFN, so the usual width is 4·d_model.
    """

    ACTIVATION, GATED = "relu2", False


# ModelConfig.ffn -> class; every class is (d_model, d_ff) -> module with w1, w2 (and w3).
FFN_VARIANTS: dict[str, type[Module]] = {
    "swiglu": SwiGLU,
    "silu": SiLUFeedForward,
    "relu2": ReLU2FeedForward,
}


def logit_softcap(logits: Tensor, cap: float) -> Tensor:
    """cap·tanh(logits/cap) (Gemma 2; modded-nanogpt): smooth, monotone, |out| < cap. 0 = off."""
    if cap <= 0:
        return logits
    return cap * torch.tanh(logits / cap)
