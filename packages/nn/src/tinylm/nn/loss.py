"""Cross-entropy from logits, computed stably in float32."""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tinylm.nn.layers import upcast
from tinylm.nn.typecheck import typechecked, value_checks_enabled


@typechecked
def cross_entropy(
    logits: Float[Tensor, "... vocab"], targets: Int[Tensor, "..."]
) -> Float[Tensor, ""]:
    """Mean over all leading dims of −log softmax(logits)[target].

    Uses −log p = logsumexp(logits) − logits[target] with the max subtracted, all in float32, so
    neither bf16 logits nor logits of magnitude 1e4 overflow; the softmax itself is never built.
    Returns a float32 scalar (float64 for float64 logits).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"cross_entropy: logits leading shape {tuple(logits.shape[:-1])} does not match "
            f"targets shape {tuple(targets.shape)}"
        )
    vocab = logits.shape[-1]
    if value_checks_enabled() and targets.numel() > 0:
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= vocab:
            raise ValueError(
                f"cross_entropy: target id {high if high >= vocab else low} "
                f"is out of range for vocab={vocab}"
            )
    logits32 = upcast(logits)
    # Work with shifted logits throughout: lse − x_t = log Σ exp(x − m) − (x_t − m). Adding the max
    # back first would round (1e4 + 0.69) − 1e4 to float32's spacing at 1e4. The shift cancels in
    # the result, so it needs no gradient.
    shifted = logits32 - logits32.amax(dim=-1, keepdim=True).detach()
    log_sum_exp = torch.log(torch.exp(shifted).sum(dim=-1))
    target_logit = shifted.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (log_sum_exp - target_logit).mean()
