"""Global gradient-norm clipping, without a host-device sync."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["clip_grad_norm"]


@torch.no_grad()
def clip_grad_norm(
    parameters: Iterable[torch.Tensor] | torch.Tensor, max_norm: float, eps: float = 1e-6
) -> torch.Tensor:
    """Scale all gradients by max_norm/(‖g‖ + eps) when the global L2 norm ‖g‖ exceeds max_norm.

    Returns the pre-clip norm as a float32 scalar tensor. Parameters without `.grad` are skipped.
    The scale is clamped rather than branched on, so on a GPU this never waits for the norm.
    """
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for g in grads:
        by_device.setdefault(g.device, []).append(g)
    device = grads[0].device
    # Per-tensor norms in float32 (exact enough for bf16 grads), then the norm of the norms.
    norms = []
    for group in by_device.values():
        norms.extend(n.to(device, torch.float32) for n in torch._foreach_norm(group, 2.0))
    total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
    scale = torch.clamp(max_norm / (total + eps), max=1.0)
    for dev, group in by_device.items():
        torch._foreach_mul_(group, scale.to(dev))
    return total
