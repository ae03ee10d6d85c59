"""The timed pieces of the nn bench, shared with gpu_check: shapes, kernel sets, tinylm models,
optimizers, one training step, one greedy decode, the decoding floor.

One place knows how tinylm's kernels are chosen; the HF peer lives in `bench.harness`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.harness import sync
from tinylm.nn import ComputeConfig, Linear, ModelConfig, TransformerLM, generate

TINYSTORIES = ModelConfig(
    vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344
)
TINY = ModelConfig(
    vocab_size=256, context_length=32, d_model=64, num_layers=2, num_heads=4, d_ff=96
)


# Kernel sets (tinylm.nn.ComputeConfig; the model's function is the same under each).
REFERENCE = ComputeConfig()  # every op from scratch: naive attention, pointwise, full-logits CE
SDPA = ComputeConfig(attention="sdpa")  # the previous default: only attention fused
FAST = ComputeConfig(attention="sdpa", fused_qkv=True, pointwise="torch", loss="fused_linear")
NAIVE_ATTENTION_FAST = dataclasses.replace(FAST, attention="naive")  # from-scratch attention
# Under torch.compile inductor fuses the full-logits log-softmax itself, and that measured faster
# than the traced chunk loop of "fused_linear" (nn README, loss section): compiled rows use it.
FAST_COMPILED = dataclasses.replace(FAST, loss="fused")
# Compiled under bf16 autocast on a CPU, our from-scratch blocked attention (inductor fuses its
# softmax, AMX runs its bf16 matmuls) beat torch's CPU flash-attention kernel, whose bf16 backward
# is slow: fwd+bwd of one 4x16x256x32 layer 11.2 vs 18.6 ms, whole step +10% (nn README). In fp32
# it measured 3% slower than sdpa, and on CUDA flash attention is the one to use.
FAST_COMPILED_CPU_BF16 = dataclasses.replace(FAST_COMPILED, attention="naive")


def fast_compute(compiled: bool, cpu_bf16: bool = False) -> ComputeConfig:
    """tinylm's fastest kernel set: eager, compiled, or compiled under CPU bf16 autocast."""
    if not compiled:
        return FAST
    return FAST_COMPILED_CPU_BF16 if cpu_bf16 else FAST_COMPILED


def make_tinylm(config: ModelConfig, compute: ComputeConfig = FAST, device=None, dtype=None):
    """TransformerLM on the given kernels."""
    return TransformerLM(config, compute=compute, device=device, dtype=dtype)


@dataclasses.dataclass
class TrainVariant:
    """One training setup: `step()` runs forward+loss+backward+optimizer step and returns loss."""

    label: str
    step: object
    tokens_per_step: int
    context: object = contextlib.nullcontext
    table: str = "models"  # which printed table: "models" (same optimizer) or "stacks"
    seconds: list = dataclasses.field(default_factory=list)  # every timed step, all rounds

    @property
    def rate(self) -> float:
        """Tokens/s at the median step time over all rounds."""
        return self.tokens_per_step / statistics.median(self.seconds)


ADAMW_HPARAMS = dict(lr=1e-4, weight_decay=0.1)  # every optimizer below: only the kernel differs


def torch_adamw(params):
    """The models table's optimizer for both: `torch.optim.AdamW` as constructed by default."""
    return torch.optim.AdamW(params, **ADAMW_HPARAMS)


def torch_adamw_fused(params):
    """HF Trainer's default optimizer (`optim="adamw_torch_fused"`, torch >= 2.8)."""
    return torch.optim.AdamW(params, fused=True, **ADAMW_HPARAMS)


def tinylm_adamw(params):
    """train's optimizer: `tinylm.optim.AdamW` with its default kernel for the device."""
    from tinylm.optim import AdamW

    return AdamW(params, **ADAMW_HPARAMS)


def train_step_fn(
    model, kind, config, batch, device, autocast_dtype=None, compiled=False, optimizer=torch_adamw
):
    """A closure doing one optimizer step of `model` ("tinylm" or "hf") on a fixed random batch;
    `optimizer(params)` builds the optimizer."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch, config.context_length + 1), generator=gen)
    x, y = ids[:, :-1].to(device), ids[:, 1:].to(device)
    opt = optimizer(model.parameters())
    runner = torch.compile(model) if compiled else model
    dev_type = torch.device(device).type

    def step() -> Tensor:
        with torch.autocast(dev_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            if kind == "hf":
                logits = runner(input_ids=x).logits
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            else:
                loss = runner(x, targets=y)  # the ComputeConfig's loss kernel
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def decode_fn(model, kind, prompt, new_tokens, **kwargs):
    """A closure that greedily decodes `new_tokens` tokens after `prompt` (batch 1); `kwargs` go
    to HF `generate` or to `tinylm.nn.generate` (e.g. `compile=True`)."""
    if kind == "hf":

        def run():
            with torch.no_grad():
                return model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    do_sample=False,
                    pad_token_id=0,
                    **kwargs,
                )

    else:

        def run():
            return generate(model, prompt[0], new_tokens, temperature=0, **kwargs)

    return run


def time_decode(run, new_tokens: int, device, context=contextlib.nullcontext, first=None) -> float:
    """Tokens/s of one call after a warm-up call (compilation, where there is one); the warm-up's
    seconds are appended to `first` when given."""
    with context():
        start = time.perf_counter()
        run()
        sync(device)
        if first is not None:
            first.append(time.perf_counter() - start)
        start = time.perf_counter()
        out = run()
        sync(device)
    assert out.shape[-1] >= new_tokens
    return new_tokens / (time.perf_counter() - start)


def weight_floor_fn(model, new_tokens: int):
    """The memory floor of batch-1 decoding: per token, one vector times every weight matrix of
    `model` (blocks and lm_head; no attention, norms or Python modules). fp32 weights that do not
    fit in cache stream from RAM once per token, whatever the framework."""
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, Linear)]
    inputs = {w.shape[1]: torch.randn(1, w.shape[1], dtype=w.dtype) for w in weights}

    def run():
        with torch.no_grad():
            for _ in range(new_tokens):
                for w in weights:
                    inputs[w.shape[1]] @ w.t()
        return torch.empty(1, new_tokens)

    return run
