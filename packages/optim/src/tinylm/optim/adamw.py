"""AdamW with decoupled weight decay (Loshchilov & Hutter), updated with multi-tensor kernels.

Per parameter θ with gradient g, at step t = 1, 2, ...:

    θ ← θ · (1 − α·λ)                       decoupled decay, applied first (as torch.optim.AdamW)
    m ← β₁·m + (1 − β₁)·g
    v ← β₂·v + (1 − β₂)·g²
    θ ← θ − α/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)

which is the bias-corrected step α·√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√v + ε′) with ε scaled into the corrected
denominator exactly as PyTorch does, so results agree with `torch.optim.AdamW` to float rounding.

Three kernels compute those four lines for one (device, dtype) bucket of parameters (UPDATES):

- "loop": one tensor at a time, the lines as written (the reference);
- "foreach": one `torch._foreach_*` call per line for the whole bucket, so hundreds of small
  tensors cost a handful of launches; each line is still one pass over memory;
- "fused": PyTorch's single-pass AdamW kernel (`torch._fused_adamw_`, the one behind
  `torch.optim.AdamW(fused=True)`), reading θ, g, m, v once and writing θ, m, v once. The update is
  memory-bound, so on CPU this is ~5x faster than "foreach" for a 23M-parameter model
  (bench/optim_bench.py). Used on CPU buckets only: on CUDA PyTorch's fused kernel wants the step
  counters on the device, which would change the state dict, and it has not been measured there.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["AdamW"]

_FUSED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def fused_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the "fused" kernel serves a bucket: a CPU floating-point one, on a torch with it."""
    return hasattr(torch, "_fused_adamw_") and device.type == "cpu" and dtype in _FUSED_DTYPES


class AdamW(torch.optim.Optimizer):
    """AdamW as a `torch.optim.Optimizer`; per-parameter state `step`, `exp_avg`, `exp_avg_sq`.

    `step` is kept as a float32 CPU scalar tensor like PyTorch's, so state dicts are interchangeable
    with `torch.optim.AdamW`'s and load with `torch.load(weights_only=True)`.

    `fused=None` (default) uses the "fused" kernel wherever it serves a bucket and "foreach" (or
    "loop" with `foreach=False`) elsewhere; `fused=False` never uses it; `fused=True` requires it
    for every parameter (`ValueError` otherwise).
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
        fused: bool | None = None,
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
        self.fused = fused
        if fused:
            for group in self.param_groups:
                for p in group["params"]:
                    if not fused_supported(p.device, p.dtype):
                        raise ValueError(
                            f"fused=True needs CPU floating-point parameters; got one on "
                            f"{p.device} with dtype {p.dtype}"
                        )

    def kernel(self, device: torch.device, dtype: torch.dtype) -> str:
        """The UPDATES key this optimizer uses for a (device, dtype) bucket."""
        if self.fused is not False and fused_supported(device, dtype):
            return "fused"
        return "foreach" if self.foreach else "loop"

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
        # Bucket by (device, dtype): multi-tensor kernels need homogeneous tensor lists.
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
            tensors = (p, p.grad, state["exp_avg"], state["exp_avg_sq"], state["step"])
            for i, t in enumerate(tensors):
                bucket[i].append(t)

        for (device, dtype), tensors in buckets.items():
            for s in tensors[4]:  # CPU scalars: incrementing them never syncs the device
                s += 1
            UPDATES[self.kernel(device, dtype)](*tensors, group)


def _bias_terms(steps, beta1: float, beta2: float, lr: float) -> tuple[list, list]:
    """Per tensor: the step size −α/(1−β₁ᵗ) and √(1−β₂ᵗ), from the (already incremented) t."""
    values = [float(s) for s in steps]
    step_sizes = [-lr / (1 - beta1**t) for t in values]
    bias2_sqrt = [math.sqrt(1 - beta2**t) for t in values]
    return step_sizes, bias2_sqrt


def _loop_update(params, grads, exp_avgs, exp_avg_sqs, steps, group) -> None:
    lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
    beta1, beta2 = group["betas"]
    step_sizes, bias2_sqrt = _bias_terms(steps, beta1, beta2, lr)
    for i, p in enumerate(params):
        p.mul_(1 - lr * weight_decay)
        exp_avgs[i].lerp_(grads[i], 1 - beta1)
        exp_avg_sqs[i].mul_(beta2).addcmul_(grads[i], grads[i], value=1 - beta2)
        denom = (exp_avg_sqs[i].sqrt() / bias2_sqrt[i]).add_(eps)
        p.addcdiv_(exp_avgs[i], denom, value=step_sizes[i])


def _foreach_update(params, grads, exp_avgs, exp_avg_sqs, steps, group) -> None:
    lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
    beta1, beta2 = group["betas"]
    step_sizes, bias2_sqrt = _bias_terms(steps, beta1, beta2, lr)
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias2_sqrt)
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)


def _fused_update(params, grads, exp_avgs, exp_avg_sqs, steps, group) -> None:
    # The kernel reads each tensor's own (already incremented) step for its bias corrections.
    beta1, beta2 = group["betas"]
    torch._fused_adamw_(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        [],  # max_exp_avg_sqs: AMSGrad only
        steps,
        lr=group["lr"],
        beta1=beta1,
        beta2=beta2,
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        amsgrad=False,
        maximize=False,
    )


UPDATES: dict[str, Callable[..., None]] = {
    "loop": _loop_update,
    "foreach": _foreach_update,
    "fused": _fused_update,
}
