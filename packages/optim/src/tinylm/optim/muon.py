"""Muon: momentum SGD whose update is orthogonalised by a Newton–Schulz iteration.

For a 2-D weight W with gradient g, Muon keeps a momentum buffer and replaces the update u by the
nearest semi-orthogonal matrix, roughly U·Vᵀ from u's SVD u = U·S·Vᵀ: every singular direction of
the update then moves the weight by the same amount, so rare directions are not drowned by common
ones. The SVD is too slow, so a quintic Newton–Schulz iteration pushes every singular value of
u/‖u‖_F towards 1 using only matmuls (Keller Jordan, 2024):

    X ← u / (‖u‖_F + 1e-7)                         (transposed first when rows > cols)
    repeat `steps` times:  A = X·Xᵀ;  B = b·A + c·A·A;  X = a·X + B·X
    (a, b, c) = (3.4445, −4.7750, 2.0315)

Each step maps a singular value σ to a·σ + b·σ³ + c·σ⁵. The coefficients trade exactness for
speed: after 5 steps every σ that started at ≥ 1e-2·‖u‖_F lands in [0.68, 1.14] (≥ 2e-3: in
[0.68, 1.21]) instead of exactly 1: Muon needs the directions equalised, not an exact U·Vᵀ.

Per step, with state `momentum_buffer` (starts at zero) and m = momentum:

    buf ← m·buf + (1−m)·g
    u   ← (1−m)·g + m·buf          if nesterov else buf
    o   ← newton_schulz(u, ns_steps) · √max(1, rows/cols)
    θ   ← θ·(1 − lr·weight_decay) − lr·o

Speed: the iteration is batched. Matrices of one group with the same shape up to transposition
(e.g. every block's w1 (d_ff×d) and w2ᵀ) are stacked and iterated with batched matmuls, one
Python loop for all of them; on CUDA the iteration runs in bf16 (tensor cores), on CPU in float32.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["Muon", "newton_schulz"]

NS_COEFFS = (3.4445, -4.7750, 2.0315)


def default_ns_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (tensor cores; the iteration is robust to it), float32 everywhere else."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def newton_schulz(
    G: torch.Tensor, steps: int = 5, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Approximately orthogonalise G (..., rows, cols): the quintic iteration above, per matrix.

    A batch of matrices (any leading dims) is iterated with batched matmuls; each matrix is
    normalised by its own Frobenius norm. The iteration runs in `dtype` (default: bf16 on CUDA,
    float32 otherwise); the result has G's dtype.
    """
    if G.ndim < 2:
        raise ValueError(
            f"newton_schulz needs a (..., rows, cols) tensor, got shape {tuple(G.shape)}"
        )
    a, b, c = NS_COEFFS
    dtype = dtype or default_ns_dtype(G.device)
    rows, cols = G.shape[-2:]
    X = G.reshape(-1, rows, cols)
    transpose = rows > cols
    if transpose:  # iterate on the wide side: X·Xᵀ is then the smaller (min × min) Gram matrix
        X = X.mT
    # The norm in (at least) float32 even for a bf16 iteration: it sets the scale of what follows.
    X = X.to(torch.promote_types(dtype, torch.float32))
    X = (X / (torch.linalg.matrix_norm(X, keepdim=True) + 1e-7)).to(dtype)
    for _ in range(steps):
        A = torch.bmm(X, X.mT)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b·A + c·A·A
        X = torch.baddbmm(X, B, X, beta=a, alpha=1.0)  # a·X + B·X
    if transpose:
        X = X.mT
    return X.reshape(G.shape).to(G.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters (hidden matrices); put embeddings, head and gains in AdamW.

    `momentum` is read from the param group at every step, so a schedule may warm it up.
    `batched=False` orthogonalises one matrix at a time (the reference path, for benchmarks).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        *,
        batched: bool = True,
    ) -> None:
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}: must be >= 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid momentum {momentum}: must be in [0, 1)")
        if ns_steps < 0:
            raise ValueError(f"invalid ns_steps {ns_steps}: must be >= 0")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay {weight_decay}: must be >= 0")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            weight_decay=weight_decay,
        )
        super().__init__(params, defaults)
        self.batched = batched

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Reject anything that is not a matrix, naming it, before it joins a group."""
        params = param_group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        for i, p in enumerate(params):
            if p.ndim != 2:
                raise ValueError(
                    f"Muon takes 2-D parameters only; parameter {i} of group "
                    f"{len(self.param_groups)} has shape {tuple(p.shape)} (use AdamW for it)"
                )
        super().add_param_group({**param_group, "params": params})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._update_group(group)
        return loss

    def _update_group(self, group: dict[str, Any]) -> None:
        m, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            bufs.append(state["momentum_buffer"])
        torch._foreach_lerp_(bufs, grads, 1 - m)  # buf ← m·buf + (1−m)·g
        updates = torch._foreach_lerp(grads, bufs, m) if group["nesterov"] else bufs
        ortho = self._orthogonalise(updates, group["ns_steps"])
        if wd != 0:
            torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_add_(params, ortho, alpha=-lr)

    def _orthogonalise(self, updates: list[torch.Tensor], steps: int) -> list[torch.Tensor]:
        """newton_schulz(u)·√max(1, rows/cols) for every u, batched by shape up to transposition."""
        out: list[torch.Tensor | None] = [None] * len(updates)
        if not self.batched:
            for i, u in enumerate(updates):
                out[i] = newton_schulz(u, steps).mul_(_scale(u)).to(u.dtype)
            return out  # type: ignore[return-value]
        # Tall matrices join the wide ones of the transposed shape: NS(uᵀ) = NS(u)ᵀ by definition.
        buckets: dict[tuple, list[int]] = defaultdict(list)
        for i, u in enumerate(updates):
            rows, cols = u.shape
            buckets[(u.device, u.dtype, min(rows, cols), max(rows, cols))].append(i)
        for idx in buckets.values():
            wide = [updates[i].mT if _is_tall(updates[i]) else updates[i] for i in idx]
            orth = newton_schulz(torch.stack(wide), steps)
            for k, i in enumerate(idx):
                u = updates[i]
                out[i] = orth[k].mT * _scale(u) if _is_tall(u) else orth[k]
        return out  # type: ignore[return-value]


def _is_tall(u: torch.Tensor) -> bool:
    return u.shape[0] > u.shape[1]


def _scale(u: torch.Tensor) -> float:
    """√max(1, rows/cols): tall matrices get a larger step so their per-element RMS matches."""
    rows, cols = u.shape
    return math.sqrt(max(1.0, rows / cols))
