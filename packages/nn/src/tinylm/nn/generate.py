"""Autoregressive sampling with a KV cache: greedy, temperature, top-k and nucleus (top-p).

Policy, in brief:
- Returns prompt + new tokens, like nanoGPT (1-D prompt in, 1-D out; 2-D batch in, 2-D out).
- A prompt longer than `context_length` is cropped to its last `context_length` tokens for the
  model (with a warning); the returned tensor still starts with the full prompt.
- KV cache: the prompt is encoded once, then each new token costs one position. When the window
  is full (`context_length` positions cached) the window *slides*: each further token re-encodes
  the last `context_length` tokens (eagerly; a cache would have to be rebuilt every token anyway),
  so RoPE positions stay 0..context_length−1 exactly as in an uncached model that crops its
  input. From then on each token costs a full window; the cached and uncached paths give the
  same tokens throughout.
- Stopping at `eos_id`: a sequence that has emitted eos is padded with eos; generation ends early
  when every sequence has finished.
- Speed (batch-1 decoding is all per-token overhead on small models): the prompt and its forward
  are type-checked once, the token loop runs under `typecheck.unchecked()`; tokens are written
  into one output buffer; "has every row finished?" is a device-side flag per step, read by
  the host only every `EOS_CHECK_EVERY` tokens (each read is a sync), and the result is cut back
  to the exact step where the last row finished, so the output is as if checked every token.
  The output grows by doubling from `INITIAL_ROOM` new tokens (or `context_length`), so memory
  follows the tokens generated, never `max_new_tokens` up front.
- Decode steps: the prompt is prefilled eagerly (`model(ids, kv_cache=...)`). Eagerly, each
  token until the window is full is one more forward on that cache (it attends to the cached
  prefix only). `compile=True` instead runs every token through `TransformerLM.decode_step`
  (fixed shapes, the position a device tensor bumped in place: no host read per token, one graph
  for all positions; eagerly its whole-buffer masked attention costs ~10 % more than the
  forward's), compiled with `torch.compile(dynamic=False, fullgraph=True)`, `mode="reduce-overhead"`
  (CUDA graphs: one replay per token instead of ~100 kernel launches) on CUDA. It is compiled
  once per process (`_COMPILED`), and its KV cache is kept per model and reused by later calls of
  the same batch size (`_STATIC_CACHES`), so CUDA graphs keep their addresses. `compile=None`
  (auto): `TINYLM_COMPILE_DECODE=0|1` if set, else compile on CUDA only: on CPU, batch-1
  decoding pays the compile (4–55 s) back only after thousands of tokens (numbers in the nn
  README).
"""

import functools
import inspect
import os
import sys
import warnings
import weakref
from collections.abc import Callable, Sequence

import beartype
import jaxtyping
import torch
from jaxtyping import Float
from torch import Tensor
from torch.nn import Module

from tinylm.nn.layers import softmax
from tinylm.nn.typecheck import typechecked, unchecked
from tinylm.nn.wrappers import unwrap

EOS_CHECK_EVERY = 16  # tokens between host reads of the all-finished flag
INITIAL_ROOM = 256  # new-token slots allocated first (at least context_length); doubled when full
COMPILE_ENV = "TINYLM_COMPILE_DECODE"  # "0"/"1": overrides compile=None's device-based choice


def _top_k_filter(logits: Float[Tensor, "batch vocab"], top_k: int) -> Tensor:
    """Keep the k largest logits per row (ties with the k-th are kept), set the rest to −inf."""
    if top_k >= logits.shape[-1]:
        return logits
    kth = logits.topk(top_k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _nucleus_filter(probs: Float[Tensor, "batch vocab"], top_p: float) -> Tensor:
    """Keep the smallest set of most likely tokens whose mass is ≥ top_p; renormalise."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    kept = sorted_probs * (mass_before < top_p)  # the top token always has mass_before = 0
    filtered = torch.zeros_like(probs).scatter(-1, order, kept)
    return filtered / filtered.sum(dim=-1, keepdim=True)


def _sample_next(
    logits: Tensor,
    temperature: float,
    top_p: float,
    top_k: int | None,
    generator: torch.Generator | None,
) -> Tensor:
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:  # top-k first, then the nucleus of what is left (as HF does)
        logits = _top_k_filter(logits, top_k)
    probs = softmax(logits, dim=-1)
    if top_p < 1.0:
        probs = _nucleus_filter(probs, top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _unwrap(model: Module) -> Module:
    """The plain TransformerLM under torch.compile / data-parallel wrappers (`unwrap`).

    Decoding goes through the plain module: a compiled one would recompile for every new length.
    """
    model = unwrap(model)
    if not hasattr(model, "config") or not hasattr(model, "new_kv_cache"):
        raise TypeError(f"generate needs a TransformerLM, got {type(model).__name__}")
    return model


def _as_batch(prompt_ids, device) -> tuple[Tensor, bool]:
    ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)
    if ids.ndim == 1:
        return ids.unsqueeze(0), True
    if ids.ndim != 2:
        raise ValueError(
            f"prompt_ids must be 1-D (seq) or 2-D (batch, seq), got shape {tuple(ids.shape)}"
        )
    return ids, False


@typechecked
def generate(
    model: Module,
    prompt_ids: Tensor | Sequence[int] | Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float | int = 1.0,
    top_p: float | int = 1.0,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    top_k: int | None = None,
    *,
    use_kv_cache: bool = True,
    compile: bool | None = None,
) -> Tensor:
    """Sample up to `max_new_tokens` tokens after `prompt_ids`; return prompt + new tokens.

    `temperature=0` is greedy decoding; `top_k` keeps the k most likely tokens (ties kept) and
    `top_p<1` then samples from the nucleus of those. With a seeded
    `generator` (on the model's device) the output is deterministic. `model` may be a
    `TransformerLM` or a `torch.compile`/DDP wrapper of one. `use_kv_cache=False` re-encodes the
    (cropped) sequence for every token: slower, same result; kept for testing and benchmarking.
    `compile`: torch.compile the per-token decode step (True/False; None = auto, see the module
    docstring); the compiled and eager steps give the same tokens.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None = off), got {top_k}")
    core = _unwrap(model)
    context_length = core.config.context_length
    device = next(core.parameters()).device
    ids, single = _as_batch(prompt_ids, device)
    if ids.shape[1] == 0:
        raise ValueError("prompt_ids is empty: give at least one token to condition on")
    vocab_size = core.config.vocab_size
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:  # once per call, so always checked
        bad = int(ids.max()) if int(ids.max()) >= vocab_size else int(ids.min())
        raise ValueError(f"prompt token id {bad} is out of range for vocab_size={vocab_size}")
    if ids.shape[1] > context_length:
        _warn_at_caller(
            f"prompt of {ids.shape[1]} tokens is longer than context_length={context_length}; "
            f"the model sees only its last {context_length} tokens"
        )

    was_training = model.training
    model.eval()
    try:
        # no_grad, not inference_mode: inference tensors in the result could not be reused in a
        # later autograd forward (e.g. as training input).
        with torch.no_grad():
            out = _decode(
                core,
                ids,
                max_new_tokens,
                (temperature, top_p, top_k, generator),
                eos_id,
                use_kv_cache,
                _want_compile(compile, device),
            )
    finally:
        model.train(was_training)
    if single:
        out = out[0]
        if eos_id is not None:  # drop the eos padding of a finished single sequence
            new = out[ids.shape[1] :]
            hits = (new == eos_id).nonzero()
            if len(hits):
                out = out[: ids.shape[1] + int(hits[0]) + 1]
    return out


# Frames a warning never points into: this package and the type-checking wrappers around it.
_WRAPPER_DIRS = tuple(
    os.path.dirname(path) + os.sep for path in (beartype.__file__, jaxtyping.__file__, __file__)
)


def _warn_at_caller(message: str) -> None:
    """`warnings.warn` pointing at the first frame outside tinylm.nn and its type-checking
    wrappers: a fixed stacklevel would point into jaxtyping's decorator (@typechecked)."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename.startswith(_WRAPPER_DIRS):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def _want_compile(compile: bool | None, device: torch.device) -> bool:
    if compile is not None:
        return compile
    env = os.environ.get(COMPILE_ENV, "").strip().lower()
    if env:
        return env not in {"0", "false", "no", "off"}
    return device.type == "cuda"


def _decode_step(model: Module, token_ids: Tensor, cache, position: Tensor) -> Tensor:
    return model.decode_step_unchecked(token_ids, cache, position)


def _forward_step(model: Module, token_ids: Tensor, cache, position: Tensor) -> Tensor:
    """The eager step: one more forward on the cache (`position` is the cache's own length)."""
    return model(token_ids, kv_cache=cache)[:, -1]


# torch.compile'd `_decode_step` by mode, made on first use. One function for every model: dynamo
# keys its graphs by guards on the model it is given, not by this wrapper.
_COMPILED: dict[str | None, Callable] = {}
# model -> its reusable KV cache for compiled decoding (dropped with the model).
_STATIC_CACHES: "weakref.WeakKeyDictionary[Module, object]" = weakref.WeakKeyDictionary()


# set_stance(skip_guard_eval_unsafe=True) runs only the guards that tell a function's compiled
# graphs apart; a torch without that keyword keeps every guard.
_CAN_SKIP_GUARDS = (
    "skip_guard_eval_unsafe" in inspect.signature(torch.compiler.set_stance).parameters
)


def _compiled_step(core: Module, device: torch.device) -> Callable:
    """The compiled decode step for one `generate` call.

    Its first call runs dynamo's full guards (and compiles, or recompiles for a changed model).
    The later calls of the same `generate` call see the same model, cache, batch and shapes, so
    they skip the guards that cannot fail (~0.2 ms of a ~2.5 ms CPU step at the TinyStories
    shape); a new `generate` call starts with full guards again.
    """
    mode = "reduce-overhead" if device.type == "cuda" else None
    if mode not in _COMPILED:
        _COMPILED[mode] = torch.compile(_decode_step, dynamic=False, fullgraph=True, mode=mode)
    compiled = _COMPILED[mode]
    first = True

    def step(token_ids: Tensor, cache, position: Tensor) -> Tensor:
        if device.type == "cuda":
            # A new step begins: the previous replay's outputs (last logits) may be overwritten.
            torch.compiler.cudagraph_mark_step_begin()
        nonlocal first
        if first or not _CAN_SKIP_GUARDS:
            first = False
            return compiled(core, token_ids, cache, position)
        with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
            return compiled(core, token_ids, cache, position)

    return step


def _kv_cache(core: Module, batch: int, compiled: bool):
    """A fresh cache, or for compiled decoding the model's kept one (same tensors every call)."""
    if not compiled:
        return core.new_kv_cache(batch)
    weight = core.lm_head.weight
    cache = _STATIC_CACHES.get(core)
    layer = cache.layers[0] if cache is not None else None
    if layer is None or (layer.keys.shape[0], layer.keys.dtype, layer.keys.device) != (
        batch,
        weight.dtype,
        weight.device,
    ):
        cache = core.new_kv_cache(batch)
        for t in cache.tensors():
            torch._dynamo.mark_static_address(t)  # CUDA graphs may bake in their addresses
        _STATIC_CACHES[core] = cache
    cache.reset()  # stale keys/values past the prefix are masked out: weight exactly 0
    return cache


def _grown(buffer: Tensor, length: int) -> Tensor:
    """`buffer` copied into a new one `length` long in its last dim (the tail uninitialised)."""
    out = buffer.new_empty(*buffer.shape[:-1], length)
    out[..., : buffer.shape[-1]] = buffer
    return out


def _decode(core, ids, max_new_tokens, sampling, eos_id, use_kv_cache, compiled=False):
    context_length = core.config.context_length
    batch, prompt_len = ids.shape
    if max_new_tokens == 0:
        return ids
    # Room for the new tokens grows as they come (doubling: amortised O(1) copies per token), so
    # memory follows what is generated, not max_new_tokens (10^9 would be 8 GB up front) and an
    # early eos never pays for the rest.
    room = min(max_new_tokens, max(INITIAL_ROOM, context_length))
    out = torch.empty(batch, prompt_len + room, dtype=ids.dtype, device=ids.device)
    out[:, :prompt_len] = ids
    cache = _kv_cache(core, batch, compiled) if use_kv_cache else None
    step_fn = (
        _compiled_step(core, ids.device) if compiled else functools.partial(_forward_step, core)
    )
    logits = core(ids[:, -context_length:], kv_cache=cache)[:, -1]  # checked: sees the prompt
    cached = min(prompt_len, context_length)  # positions in the cache (host mirror, no sync)
    position = torch.tensor(cached, device=ids.device)  # where the next token's K/V go
    if eos_id is not None:
        finished = torch.zeros(batch, dtype=torch.bool, device=ids.device)
        all_done = torch.zeros(room, dtype=torch.bool, device=ids.device)  # [:steps] is read
    with unchecked():
        for step in range(max_new_tokens):
            pos = prompt_len + step  # where this step's token goes
            if step == room:
                room = min(max_new_tokens, 2 * room)
                out = _grown(out, prompt_len + room)
                if eos_id is not None:
                    all_done = _grown(all_done, room)
            next_ids = _sample_next(logits, *sampling)
            if eos_id is not None:
                next_ids = next_ids.masked_fill(finished, eos_id)
                finished |= next_ids == eos_id
                all_done[step] = finished.all()  # stays on the device: no sync
            out[:, pos] = next_ids
            if step == max_new_tokens - 1:
                break
            if eos_id is not None and (step + 1) % EOS_CHECK_EVERY == 0 and bool(all_done[step]):
                break
            if cache is None:
                logits = core(out[:, max(0, pos + 1 - context_length) : pos + 1])[:, -1]
            elif cached < context_length:
                logits = step_fn(next_ids[:, None], cache, position)
                if compiled:  # the eager step reads the cache's own length
                    position += 1
                cached += 1
            else:
                # Window full: slide, i.e. re-encode the last context_length tokens at positions
                # 0..context_length-1, exactly what an uncached model that crops its input sees.
                logits = core(out[:, pos + 1 - context_length : pos + 1])[:, -1]
    steps = step + 1
    if eos_id is not None:  # cut back to the first step at which every row had finished
        hits = all_done[:steps].nonzero()
        if len(hits):
            steps = int(hits[0]) + 1
    return out[:, : prompt_len + steps]
