"""AdamW with decoupled weight decay (Loshchilov & Hutter), updated with multi-tensor kernels.

Per parameter θ with gradient g, at step t = 1, 2, ...:

    θ ← θ · (1 − α·λ)                       decoupled decay, applied first (as torch.optim.AdamW)
    m ← β₁·m + (1 − β₁)·g
    v ← β₂·v + (1 − β₂)·g²
    θ ← θ − α/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)

which is the bias-corrected step α·√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε′) with ε scaled into the corrected
denominator exactly as PyTorch does, so results agree with `torch.optim.AdamW` to float rounding.
All parameters of a (device, dtype) bucket are updated with one `torch._foreach_*` call per line
above, so a model with hundreds of small tensors costs a handful of kernel launches, not thousands.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["AdamW"]


class AdamW(torch.optim.Optimizer):
    """AdamW as a `torch.optim.Optimizer`; per-parameter state `step`, `exp_avg`, `exp_avg_sq`.

    `step` is kept as a float32 CPU scalar tensor like PyTorch's, so state dicts are interchangeable
    with `torch.optim.AdamW`'s and load with `torch.load(weights_only=True)`.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        foreach: bool = True,
    ) -> None:
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}: must be >= 0")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        if eps < 0:
            raise ValueError(f"invalid eps {eps}: must be >= 0")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay {weight_decay}: must be >= 0")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.foreach = foreach

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
        lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        # Bucket by (device, dtype): foreach kernels need homogeneous tensor lists.
        buckets: dict[tuple, list[list]] = defaultdict(lambda: [[], [], [], [], []])
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("AdamW does not support sparse gradients")
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            bucket = buckets[(p.device, p.dtype)]
            bucket[0].append(p)
            bucket[1].append(p.grad)
            bucket[2].append(state["exp_avg"])
            bucket[3].append(state["exp_avg_sq"])
            bucket[4].append(state["step"])

        for params, grads, exp_avgs, exp_avg_sqs, steps in buckets.values():
            for s in steps:  # CPU scalars: incrementing them never syncs the device
                s += 1
            step_values = [float(s) for s in steps]
            bias1 = [1 - beta1**t for t in step_values]
            bias2_sqrt = [math.sqrt(1 - beta2**t) for t in step_values]
            step_sizes = [-lr / b for b in bias1]
            if self.foreach:
                self._foreach_update(
                    params,
                    grads,
                    exp_avgs,
                    exp_avg_sqs,
                    lr,
                    weight_decay,
                    eps,
                    beta1,
                    beta2,
                    step_sizes,
                    bias2_sqrt,
                )
            else:
                for i, p in enumerate(params):
                    p.mul_(1 - lr * weight_decay)
                    exp_avgs[i].lerp_(grads[i], 1 - beta1)
                    exp_avg_sqs[i].mul_(beta2).addcmul_(grads[i], grads[i], value=1 - beta2)
                    denom = (exp_avg_sqs[i].sqrt() / bias2_sqrt[i]).add_(eps)
                    p.addcdiv_(exp_avgs[i], denom, value=step_sizes[i])

    @staticmethod
    def _foreach_update(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        lr,
        weight_decay,
        eps,
        beta1,
        beta2,
        step_sizes,
        bias2_sqrt,
    ) -> None:
        if weight_decay != 0:
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)
