"""How a model is computed, apart from what it is: `ComputeConfig` and the tables of fast ops.

`ModelConfig` fixes the function (shapes, switches, hence the weights); `ComputeConfig` only picks
kernels for that same function, so a run may resume with other kernels but never another
architecture. Each table maps a ComputeConfig value to a kernel; the first entry is the
from-scratch reference (defined in attention.py / loss.py), the others must match it (tested):

    ATTENTION_KERNELS  "naive": scaled_dot_product_attention + causal mask (reference); with
                                pointwise="torch" the same algorithm on torch's softmax kernel
                                (NAIVE_ATTENTION_BY_POINTWISE)
                       "sdpa":  torch.nn.functional.scaled_dot_product_attention (fused kernel)
    QKV_PROJECTIONS    False: q_proj(x), k_proj(x), v_proj(x) (reference)
                       True:  one matmul against the stacked q/k/v weights (keys unchanged)
    POINTWISE_KERNELS  "naive": layers.rms_norm, silu, relu_squared, rope.rotate_pairs
                       "torch": torch.nn.functional.rms_norm / silu / relu (fused kernels),
                                RoPE as one complex multiply
    LOSS_KERNELS       "full": lm_head → softcap → cross_entropy on all logits (reference)
                       "fused": the same logits → torch.nn.functional.cross_entropy (fused
                                log-softmax + NLL, forward and backward)
                       "chunked": loss.linear_cross_entropy (chunked, no full logits; the
                                  backward recomputes each chunk's logits)
                       "fused_linear": the same chunks with both gradients computed in the
                                  forward (no recompute, no full logits)

`ComputeConfig` is the kernel choice only. How a run executes the model (torch.compile, autocast
dtype) is the run's: train's `[compute]` section extends this class with those two fields.
"""

import dataclasses
import difflib
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F  # fast paths only: every kernel here has a reference elsewhere
from torch import Tensor
from torch.nn import Module

from tinylm.nn import loss as _loss
from tinylm.nn.attention import causal_mask, project_qkv_separately, reference_attention
from tinylm.nn.config import MOVED_TO_COMPUTE
from tinylm.nn.layers import ACTIVATIONS, cast, logit_softcap, rms_norm, upcast
from tinylm.nn.loss import cross_entropy
from tinylm.nn.rope import rotate_pairs
from tinylm.nn.typecheck import is_compiling

# ----------------------------------------------------------------------------------- attention


def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor:
    """torch's fused kernel; `is_causal` (its fastest form) when there is no cached prefix."""
    if past == 0:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = causal_mask(q.shape[-2], past, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


NAIVE_QUERY_BLOCK = 64  # query rows per block of the fast from-scratch attention


def naive_attention_torch_softmax(q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor:
    """The from-scratch algorithm (scores, causal mask, softmax, weighted sum) with three savings:
    the 1/√d_k folded into q (a seq×d_k pass instead of a seq×seq one), torch's one-pass softmax
    kernel (its float32 statistics match layers.softmax), and queries taken NAIVE_QUERY_BLOCK rows
    at a time, each block scoring only the keys up to its last query. The keys it skips would get
    weight exactly 0, so the result is the same; causal attention then computes (n+1)/2n of the
    seq×seq scores for n blocks (5/8 at seq 256), and never holds all of them at once."""
    q = q * q.shape[-1] ** -0.5
    seq = q.shape[-2]
    blocks = []
    for start in range(0, seq, NAIVE_QUERY_BLOCK):
        end = min(start + NAIVE_QUERY_BLOCK, seq)
        keys, values = k[..., : past + end, :], v[..., : past + end, :]
        scores = q[..., start:end, :] @ keys.transpose(-2, -1)
        allowed = causal_mask(end - start, past + start, q.device)
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = torch.softmax(scores, dim=-1, dtype=torch.promote_types(q.dtype, torch.float32))
        blocks.append(cast(weights, v.dtype) @ values)
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-2)


# attention="naive" under each pointwise setting: from scratch either way, only the softmax kernel
# differs (a fully masked row cannot occur in causal attention, so the two agree everywhere).
NAIVE_ATTENTION_BY_POINTWISE: dict[str, Callable[[Tensor, Tensor, Tensor, int], Tensor]] = {
    "naive": reference_attention,
    "torch": naive_attention_torch_softmax,
}

# kernel(q, k, v, past) -> out; q (..., heads, seq, d_k), k/v (..., heads, past+seq, d_k).
ATTENTION_KERNELS: dict[str, Callable[[Tensor, Tensor, Tensor, int], Tensor]] = {
    "naive": reference_attention,  # attention.py: scaled_dot_product_attention + causal mask
    "sdpa": sdpa_attention,
}

# ---------------------------------------------------------------------------------- fused QKV


class StackedWeightCache:
    """torch.cat of the q/k/v weights, reused while none of them has changed.

    With autograd on, the concatenation must be part of the graph (it routes the gradient back to
    the three parameters), so it is redone every call: one copy of 3·d² numbers, small next to
    the matmul (measured in the README). Without autograd (eval, decoding) it is cached, keyed by
    each weight's storage and in-place version counter, so an optimizer step, `load_state_dict`
    or `.to()` invalidates it. Under torch.compile it is not used (see project_qkv_fused).
    Caveats: it holds one extra copy of the three weights per layer while cached, and a write
    through `weight.data` bypasses the version counter (update weights in place under no_grad
    instead, as torch.optim and tinylm.optim do).
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: Tensor | None = None

    def __call__(self, weights: tuple[Tensor, ...]) -> Tensor:
        key = tuple((w.data_ptr(), w._version, w.dtype, w.device) for w in weights)
        if key != self._key or self._value is None:
            self._key, self._value = key, torch.cat(weights)
        return self._value


def project_qkv_fused(attn: Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One (3·d_model, d_model) matmul instead of three; the weights stay three parameters."""
    weights = (attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight)
    needs_graph = torch.is_grad_enabled() and any(w.requires_grad for w in weights)
    if is_compiling() and not needs_graph:
        # Traced without autograd (compiled decoding or eval): the cache below cannot be traced,
        # and concatenating 3·d² weights per call cost more than two extra matmuls (nn README:
        # compiled batch-1 decoding 270 → 346 tokens/s at the TinyStories shape).
        return project_qkv_separately(attn, x)
    if needs_graph:
        stacked = torch.cat(weights)
    else:
        if not isinstance(getattr(attn, "_stacked_qkv", None), StackedWeightCache):
            attn._stacked_qkv = StackedWeightCache()  # a plain attribute: not in the state dict
        stacked = attn._stacked_qkv(weights)
    q, k, v = (x @ stacked.t()).split(attn.d_model, dim=-1)
    return q, k, v


# projection(attn, x) -> (q, k, v), each (..., seq, d_model).
QKV_PROJECTIONS: dict[bool, Callable[[Module, Tensor], tuple[Tensor, Tensor, Tensor]]] = {
    False: project_qkv_separately,  # attention.py: q_proj(x), k_proj(x), v_proj(x)
    True: project_qkv_fused,
}

# ---------------------------------------------------------------------------------- pointwise


def torch_rms_norm(x: Tensor, weight: Tensor | None, eps: float) -> Tensor:
    """torch's rms_norm, on float32 statistics like the reference (no-op casts in float32)."""
    x32 = upcast(x)
    w32 = cast(weight, x32.dtype) if weight is not None else None
    return cast(F.rms_norm(x32, (x.shape[-1],), w32, eps), x.dtype)


def torch_relu_squared(x: Tensor) -> Tensor:
    return F.relu(x).square()


def complex_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """RoPE's pair rotation as one complex multiply: (x₂ᵢ + i·x₂ᵢ₊₁)·(cos + i·sin).

    The same float32 arithmetic as rope.rotate_pairs in one pass instead of six (complex needs
    float32: a bf16 input is upcast, like the reference does against its float32 tables). Under
    torch.compile it is the reference: inductor does not generate code for complex ops, and it
    fuses the reference's six passes into one anyway.
    """
    if is_compiling():
        return rotate_pairs(x, cos, sin)
    x32 = upcast(x)
    pairs = torch.view_as_complex(x32.reshape(*x.shape[:-1], -1, 2))
    rotated = pairs * torch.complex(cast(cos, x32.dtype), cast(sin, x32.dtype))
    return cast(torch.view_as_real(rotated).flatten(-2), x.dtype)


# name -> kernel, for RMSNorm (`rms_norm(x, weight | None, eps)`), the FFN activations and RoPE
# (`rope(x, cos, sin)`); plugged into every module that has `set_pointwise` (layers.py, rope.py).
POINTWISE_KERNELS: dict[str, dict[str, Callable[..., Tensor]]] = {
    "naive": {"rms_norm": rms_norm, **ACTIVATIONS, "rope": rotate_pairs},  # from scratch
    "torch": {
        "rms_norm": torch_rms_norm,
        "silu": F.silu,
        "relu2": torch_relu_squared,
        "rope": complex_rope,
    },
}

# --------------------------------------------------------------------------------------- loss


def full_logits_loss(
    hidden: Tensor, weight: Tensor, targets: Tensor, *, softcap: float = 0.0
) -> Tensor:
    """The reference loss: logits = hidden Wᵀ (all of them), softcap, mean cross-entropy."""
    return cross_entropy(logit_softcap(hidden @ weight.t(), softcap), targets)


def fused_logits_loss(
    hidden: Tensor, weight: Tensor, targets: Tensor, *, softcap: float = 0.0
) -> Tensor:
    """The same logits as the reference, then torch's fused log-softmax + NLL (in float32)."""
    _loss.check_targets(targets, weight.shape[0], "fused_logits_loss")
    logits = upcast(logit_softcap(hidden @ weight.t(), softcap))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


FUSED_LINEAR_CHUNK = 256  # rows per chunk of "fused_linear"; see the nn README's loss section

# kernel(hidden (..., d_model), lm_head weight (vocab, d_model), targets (...), *, softcap) -> mean
LOSS_KERNELS: dict[str, Callable[..., Tensor]] = {
    "full": full_logits_loss,
    "fused": fused_logits_loss,
}
# The chunked kernels (loss.py): same function, never materialise the (tokens, vocab) logits.
LOSS_KERNELS["chunked"] = _loss.linear_cross_entropy
LOSS_KERNELS["fused_linear"] = functools.partial(
    _loss.linear_cross_entropy, chunk_size=FUSED_LINEAR_CHUNK, grad_in_forward=True
)

# ------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ComputeConfig:
    """Kernels for computing a `TransformerLM`; never changes its function or weights.

    - `attention`: key of `ATTENTION_KERNELS` ("naive" from scratch, "sdpa" torch's fused kernel)
    - `fused_qkv`: one matmul for Q, K, V against the stacked weights (keys stay q/k/v_proj)
    - `pointwise`: key of `POINTWISE_KERNELS` (RMSNorm, SiLU, ReLU²: "naive" from scratch,
      "torch" torch.nn.functional's fused kernels)
    - `loss`: key of `LOSS_KERNELS`, used by `model(ids, targets=...)`
    """

    attention: Literal["naive", "sdpa"] = "naive"
    fused_qkv: bool = False
    loss: Literal["full", "fused", "chunked", "fused_linear"] = "full"
    pointwise: Literal["naive", "torch"] = "naive"

    def __post_init__(self) -> None:
        for name, allowed in (
            ("attention", tuple(ATTENTION_KERNELS)),
            ("loss", tuple(LOSS_KERNELS)),
            ("pointwise", tuple(POINTWISE_KERNELS)),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"ComputeConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if not isinstance(self.fused_qkv, bool):
            raise ValueError(f"ComputeConfig.fused_qkv must be a bool, got {self.fused_qkv!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ComputeConfig":
        """Build from a dict; unknown keys fail with the closest valid name suggested."""
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown ComputeConfig key {key!r}{hint}")
        return cls(**d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "ComputeConfig":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"ComputeConfig JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)


def split_compute_keys(model_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an old ModelConfig dict (with `attention`/`fused_qkv`) into (model, compute) dicts.

    For configs saved before the split: `ModelConfig.from_dict(m)`, `ComputeConfig.from_dict(c)`.
    """
    model = {k: v for k, v in model_dict.items() if k not in MOVED_TO_COMPUTE}
    compute = {k: v for k, v in model_dict.items() if k in MOVED_TO_COMPUTE}
    return model, compute
