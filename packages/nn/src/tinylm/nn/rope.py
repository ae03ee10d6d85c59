"""Rotary position embedding (RoPE), interleaved-pair convention.

Each pair (x[2i], x[2i+1]) of a query/key vector at position p is rotated by the angle
p·θ^(-2i/d_k). A dot product of two rotated vectors then depends only on their *relative* position,
which is all attention needs. cos/sin tables are precomputed once for every position up to
max_seq_len and kept out of the state dict (`persistent=False`): they are a function of the config.
"""

from collections.abc import Callable, Mapping

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import Module

from tinylm.nn.layers import cast
from tinylm.nn.typecheck import typechecked, value_checks_enabled


def rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """The reference rotation: pair i of x's last dim by the angle whose cos/sin are column i."""
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    rotated_even = x_even * cos - x_odd * sin
    rotated_odd = x_even * sin + x_odd * cos
    # Interleave back: (..., d_k/2, 2) -> (..., d_k) puts pair i at columns 2i, 2i+1.
    return cast(torch.stack((rotated_even, rotated_odd), dim=-1).flatten(-2), x.dtype)


class RotaryEmbedding(Module):
    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None, dtype=None):
        super().__init__()
        if d_k % 2 != 0:
            raise ValueError(f"RotaryEmbedding needs an even d_k, got d_k={d_k}")
        self.theta = theta
        self.d_k = d_k
        self.max_seq_len = max_seq_len
        # Tables are built in float64 and stored in float32 (or `dtype` if wider): long contexts
        # need the angle p·θ^(-2i/d) accurate to far better than bf16.
        table_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        inv_freq = theta ** (-torch.arange(0, d_k, 2, device=device, dtype=torch.float64) / d_k)
        positions = torch.arange(max_seq_len, device=device, dtype=torch.float64)
        angles = torch.outer(positions, inv_freq)  # (max_seq_len, d_k/2)
        self.register_buffer("cos", angles.cos().to(table_dtype), persistent=False)
        self.register_buffer("sin", angles.sin().to(table_dtype), persistent=False)
        self.rotate = rotate_pairs  # or a faster kernel: compute.py's POINTWISE_KERNELS["rope"]

    def set_pointwise(self, kernels: Mapping[str, Callable]) -> None:
        self.rotate = kernels["rope"]

    @typechecked
    def forward(
        self, x: Float[Tensor, "... seq d_k"], token_positions: Int[Tensor, "... seq"]
    ) -> Float[Tensor, "... seq d_k"]:
        if x.shape[-1] != self.d_k:
            raise ValueError(f"RotaryEmbedding: input has d_k={x.shape[-1]}, expected {self.d_k}")
        if value_checks_enabled(token_positions) and token_positions.numel() > 0:
            high = int(token_positions.max())
            if high >= self.max_seq_len or int(token_positions.min()) < 0:
                raise ValueError(
                    f"RotaryEmbedding: token position {high} is outside [0, {self.max_seq_len}) "
                    f"(max_seq_len={self.max_seq_len})"
                )
        cos = self.cos[token_positions]  # (..., seq, d_k/2), broadcasts against x's leading dims
        sin = self.sin[token_positions]
        return self.rotate(x, cos, sin)

    def extra_repr(self) -> str:
        return f"theta={self.theta}, d_k={self.d_k}, max_seq_len={self.max_seq_len}"
