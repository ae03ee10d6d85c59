"""Cross-entropy from logits, and a chunked lm-head + cross-entropy that never builds all logits.

`cross_entropy(logits, targets)` is the reference: log-sum-exp in float32 over a full logits tensor.

`linear_cross_entropy(hidden, weight, targets)` computes the same loss as
`cross_entropy(hidden @ weight.T, targets)` (optionally soft-capped) without ever holding the
(tokens, vocab) float32 logits: rows are processed `chunk_size` at a time, each chunk's logits are
reduced to a log-sum-exp and a target logit and thrown away. Either the backward recomputes each
chunk's logits from `hidden` and `weight` (one extra lm-head matmul), or (`grad_in_forward`,
the "fused_linear" kernel) both gradients are computed in the forward from each chunk's softmax
and the backward only scales them:

    z = h Wᵀ (soft-capped: c·tanh(z/c)),   p = softmax(z) = exp(z − lse)
    ∂loss/∂z = (p − onehot(target)) / N      (× (1 − tanh²) under the softcap)
    ∂loss/∂h = ∂z · W,   ∂loss/∂W = Σ_chunks ∂zᵀ · h   (accumulated in float32)

Peak extra memory is O(chunk_size · vocab) instead of O(tokens · vocab); at the leaderboard shape
(64×512 tokens, 32K vocab) the full fp32 logits are 4 GiB, a 1024-row chunk is 128 MiB. Under
autocast the matmuls run in bf16/fp16, the sums in float32, and each gradient is returned in its
input's dtype from the float32 accumulator (no round trip through bf16).
"""

import torch
from jaxtyping import Float, Int
from torch import Tensor

from tinylm.nn.layers import cast, upcast
from tinylm.nn.typecheck import is_compiling, typechecked, value_checks_enabled

DEFAULT_CHUNK_SIZE = 1024


def check_targets(targets: Tensor, vocab: int, where: str) -> None:
    # Reads target values: device-aware (see typecheck.value_checks_enabled), never in the GPU
    # training hot path unless TINYLM_TYPECHECK=strict.
    if value_checks_enabled(targets) and targets.numel() > 0:
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= vocab:
            raise ValueError(
                f"{where}: target id {high if high >= vocab else low} "
                f"is out of range for vocab={vocab}"
            )


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
    check_targets(targets, logits.shape[-1], "cross_entropy")
    logits32 = upcast(logits)
    # Work with shifted logits throughout: lse − x_t = log Σ exp(x − m) − (x_t − m). Adding the max
    # back first would round (1e4 + 0.69) − 1e4 to float32's spacing at 1e4. The shift cancels in
    # the result, so it needs no gradient.
    shifted = logits32 - logits32.amax(dim=-1, keepdim=True).detach()
    log_sum_exp = torch.log(torch.exp(shifted).sum(dim=-1))
    target_logit = shifted.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (log_sum_exp - target_logit).mean()


def _chunk_logits(h: Tensor, weight: Tensor, softcap: float) -> tuple[Tensor, Tensor | None]:
    """float32 logits of one chunk (soft-capped), and tanh(z/c) for the backward (or None)."""
    z = upcast(h @ weight.t())
    if softcap > 0:
        t = torch.tanh(z / softcap)
        return softcap * t, t
    return z, None


def _chunk_grad(z: Tensor, scale, targets: Tensor, tanh: Tensor | None) -> Tensor:
    """∂loss/∂z of one chunk, in place in `z`, which holds exp(z − lse) = softmax(z) on entry."""
    z[torch.arange(z.shape[0], device=z.device), targets] -= 1.0
    z.mul_(scale)
    if tanh is not None:
        z.mul_(tanh.mul_(tanh).neg_().add_(1.0))  # d(c·tanh(z/c))/dz = 1 − tanh²
    return z


def _accumulate_weight_grad(grad_w: Tensor | None, g: Tensor, h: Tensor) -> Tensor:
    """grad_w + gᵀ h in float32; the first chunk (grad_w None) starts the sum, so no zero-filled
    (vocab, d) buffer is written and added to. In place eager; out of place while traced, where
    functionalising the in-place add copies the buffer anyway."""
    if grad_w is None:
        return upcast(g.t() @ h)
    if is_compiling():
        return grad_w + upcast(g.t() @ h)
    if g.dtype == grad_w.dtype:
        return grad_w.addmm_(g.t(), h)
    return grad_w.add_(g.t() @ h)  # torch casts the bf16 product to float32 as it adds


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean CE of (hidden @ weightᵀ) over rows; hidden (N, d), weight (V, d), targets (N,).

    `grad_in_forward`: compute both gradients chunk by chunk in the forward, while each chunk's
    softmax is at hand (the three lm-head matmuls of the unfused loss, none recomputed), keep
    them, and let the backward only scale them by grad_out; else (the default) the backward
    recomputes each chunk's logits. Set it only when a backward will follow (training).

    `dtype` is the matmul dtype (autocast's, or the promoted one): hidden and weight are cast to
    it inside, so each gradient leaves in its input's dtype straight from the float32
    accumulators (an fp32 weight under bf16 autocast gets its fp32 sum, not a bf16 rounding of
    it cast back up), and no cast nodes sit in the graph.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, softcap, chunk_size, grad_h_now, grad_w_now, dtype):
        ctx.hidden_dtype, ctx.weight_dtype = hidden.dtype, weight.dtype
        hidden, weight = cast(hidden, dtype), cast(weight, dtype)
        n = hidden.shape[0]
        acc = torch.promote_types(dtype, torch.float32)
        lse = torch.empty(n, device=hidden.device, dtype=acc)
        total = torch.zeros((), device=hidden.device, dtype=acc)
        grad_in_forward = grad_h_now or grad_w_now
        # grad_h: one (rows, d) piece per chunk, concatenated once (no in-place slice writes,
        # which a torch.compile trace would turn into a copy of the whole buffer per chunk).
        grad_h_chunks = []
        grad_w = None  # started by the first chunk
        for start in range(0, n, chunk_size):
            end = min(start + chunk_size, n)
            h = hidden[start:end]
            z, t = _chunk_logits(h, weight, softcap)
            # In place from here on: one chunk-sized buffer, not three.
            m = z.amax(dim=-1, keepdim=True)
            shifted = z.sub_(m)
            target = shifted.gather(-1, targets[start:end, None]).squeeze(-1)
            sum_exp = shifted.exp_().sum(dim=-1)
            chunk_lse = torch.log(sum_exp)
            total = total + (chunk_lse - target).sum()
            lse[start:end] = chunk_lse + m.squeeze(-1)
            if grad_in_forward:
                z.div_(sum_exp[:, None])  # softmax
                g = _chunk_grad(z, 1.0 / max(n, 1), targets[start:end], t).to(hidden.dtype)
                if grad_h_now:
                    grad_h_chunks.append(g @ weight)
                if grad_w_now:
                    grad_w = _accumulate_weight_grad(grad_w, g, h)
        grad_h = None
        if grad_h_now:
            grad_h = torch.cat(grad_h_chunks) if grad_h_chunks else torch.zeros_like(hidden)
        if grad_w_now and grad_w is None:  # no rows
            grad_w = torch.zeros(weight.shape, device=weight.device, dtype=acc)
        ctx.softcap, ctx.chunk_size = softcap, chunk_size
        ctx.grad_in_forward = grad_in_forward
        if grad_in_forward:
            ctx.save_for_backward(grad_h, grad_w)
        else:
            ctx.save_for_backward(hidden, weight, targets, lse)
        return total / max(n, 1)

    @staticmethod
    def backward(ctx, grad_out):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        nones = (None,) * 6
        if ctx.grad_in_forward:
            # Out of place, so a retained graph can run its backward again.
            grad_h, grad_w = ctx.saved_tensors
            if grad_h is not None:
                grad_h = cast(grad_h * grad_out, ctx.hidden_dtype)
            if grad_w is not None:
                grad_w = cast(grad_w * grad_out, ctx.weight_dtype)
            return grad_h, grad_w, *nones
        hidden, weight, targets, lse = ctx.saved_tensors
        softcap, chunk_size = ctx.softcap, ctx.chunk_size
        n = hidden.shape[0]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = None  # started by the first chunk
        scale = grad_out / max(n, 1)
        for start in range(0, n, chunk_size):
            end = min(start + chunk_size, n)
            h = hidden[start:end]
            z, t = _chunk_logits(h, weight, softcap)
            z.sub_(lse[start:end, None]).exp_()  # softmax from the saved lse, in place
            g = _chunk_grad(z, scale, targets[start:end], t).to(hidden.dtype)
            if need_h:
                grad_h[start:end] = g @ weight
            if need_w:
                grad_w = _accumulate_weight_grad(grad_w, g, h)
        if need_h:
            grad_h = cast(grad_h, ctx.hidden_dtype)
        if need_w:
            if grad_w is None:  # no rows
                grad_w = torch.zeros(weight.shape, device=weight.device, dtype=lse.dtype)
            grad_w = cast(grad_w, ctx.weight_dtype)
        return grad_h, grad_w, *nones


@typechecked
def linear_cross_entropy(
    hidden: Float[Tensor, "... d_model"],
    weight: Float[Tensor, "vocab d_model"],
    targets: Int[Tensor, "..."],
    *,
    softcap: float = 0.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    grad_in_forward: bool = False,
) -> Float[Tensor, ""]:
    """`cross_entropy(hidden @ weight.T, targets)` in row chunks, never materialising the logits.

    `softcap > 0` applies logits = c·tanh(logits / c) first (ModelConfig.logit_softcap). Under
    `torch.autocast` the matmuls run in the autocast dtype, like the lm-head they replace; the
    log-sum-exp and the weight gradient accumulate in float32. Returns a float32 scalar (float64
    for float64 inputs); gradients flow to `hidden` and `weight`.

    `grad_in_forward=True` (the "fused_linear" loss kernel) computes the gradients during the
    forward, from each chunk's softmax while it is in cache, so no logits are recomputed: the
    same three lm-head matmuls as the unfused loss. It applies only where a backward can follow
    (grad mode on, an input requiring grad); the backward then only scales the stored gradients
    (`retain_graph` works). It holds a float32 (vocab, d_model) gradient from forward to backward.
    """
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(
            f"linear_cross_entropy: hidden leading shape {tuple(hidden.shape[:-1])} does not "
            f"match targets shape {tuple(targets.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if softcap < 0:
        raise ValueError(f"softcap must be >= 0 (0 = off), got {softcap}")
    check_targets(targets, weight.shape[0], "linear_cross_entropy")
    device_type = hidden.device.type
    autocast = torch.amp.is_autocast_available(device_type)  # False on e.g. meta
    if autocast and torch.is_autocast_enabled(device_type):
        # The Function runs with autocast off (its backward would not see it): it is told the
        # dtype and casts inside, returning each gradient in its input's dtype.
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = torch.promote_types(hidden.dtype, weight.dtype)
    now = grad_in_forward and torch.is_grad_enabled()
    args = (
        hidden.reshape(-1, hidden.shape[-1]),
        weight,
        targets.reshape(-1),
        float(softcap),
        int(chunk_size),
        now and hidden.requires_grad,
        now and weight.requires_grad,
        dtype,
    )
    if not autocast:
        return _LinearCrossEntropy.apply(*args)
    with torch.autocast(device_type, enabled=False):
        return _LinearCrossEntropy.apply(*args)
