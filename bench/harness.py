"""What the benches share: timing, the Hugging Face peer, peak FLOP/s, token data from train.

Timing
    sync(device)                      wait for the device (CUDA), so a clock reads finished work
    step_times(step, n, device)       seconds of each of n calls, after one warm-up call
    time_steps(step, n, device)       their median
    interleave(runs, rounds, device)  every run timed in every round, rounds interleaved, so a
                                      shared machine's noise hits all runs alike
    Budget(seconds)                   an overall wall-clock budget that phases check

Peers and hardware
    make_hf(config)                   HF LlamaForCausalLM of a tinylm ModelConfig's shape
    hf_static_compiled_kwargs()       HF `generate` kwargs: static cache + compiled forward
    peak_flops(device)                datasheet peak on H100/H200, else a measured matmul

Data
    prepare_tokens(...)               train/val token ids of a text, prepared (split, BPE,
                                      encoded, cached) by `tinylm.train.prepare_data`, as a run
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from tinylm.nn import ModelConfig
from tinylm.train import DataConfig, open_tokens, prepare_data

# --- timing ----------------------------------------------------------------------------------


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def step_times(step, steps: int, device, context=contextlib.nullcontext, warmup=True) -> list:
    """Seconds of each of `steps` steps (after one warm-up step unless `warmup=False`)."""
    with context():
        if warmup:
            step()
            sync(device)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            sync(device)
            times.append(time.perf_counter() - start)
    return times


def time_steps(step, steps: int, device, context=contextlib.nullcontext) -> float:
    """Seconds per step, median of `steps` (after one warm-up step)."""
    return statistics.median(step_times(step, steps, device, context))


def interleave(
    runs: Mapping[str, Callable[[], object]],
    rounds: int,
    device,
    *,
    steps: int = 1,
    warmup: int = 1,
    contexts: Mapping[str, Callable] | None = None,
    on_round: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds of every timed call of every run: each round times `steps` calls of each run in
    turn (inside its context, if any); each run's `warmup` untimed calls come just before its
    first timed ones. `on_round(r)` is called after round r (0-based)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    contexts = contexts or {}
    for r in range(rounds):
        for name, run in runs.items():
            with contexts.get(name, contextlib.nullcontext)():
                for _ in range(warmup if r == 0 else 0):
                    run()
                sync(device)
                times[name] += step_times(run, steps, device, warmup=False)
        if on_round is not None:
            on_round(r)
    return times


class Budget:
    """Wall-clock budget of a whole bench: phases ask `left()` before they start."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> bool:
        return self.elapsed() < self.seconds


# --- peers and hardware -----------------------------------------------------------------------


def make_hf(
    config: ModelConfig, device=None, dtype=torch.float32, *, seed: int = 0, use_cache: bool = True
):
    """LlamaForCausalLM of the same shape (HF's own init from `seed`, untied, sdpa attention).

    `use_cache=False` for a training-only peer (no KV cache built in its forward)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    kwargs = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        intermediate_size=config.d_ff,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.context_length,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        use_cache=use_cache,
    )
    if "rope_parameters" in LlamaConfig.__init__.__code__.co_varnames:  # transformers >= 5
        kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": config.rope_theta}
    else:
        kwargs["rope_theta"] = config.rope_theta
    hf_config = LlamaConfig(**kwargs)
    hf_config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return LlamaForCausalLM(hf_config).to(device=device, dtype=dtype)


def hf_static_compiled_kwargs() -> dict:
    """HF `generate` kwargs: static cache, compiled forward even on CPU (HF compiles by itself
    only on accelerators; `_compile_all_devices` is its documented testing switch)."""
    from transformers import CompileConfig

    config = CompileConfig(mode="default", fullgraph=True, dynamic=False)
    config._compile_all_devices = True
    return {"cache_implementation": "static", "compile_config": config}


def peak_flops(device: str) -> tuple[float, str]:
    """Peak FLOP/s for MFU and how it was obtained: the bf16 dense datasheet figure on H100/H200,
    else a measured matmul (bf16 8192² on CUDA, fp32 256² on a CPU)."""
    if device == "cuda":
        name = torch.cuda.get_device_name()
        if "H100" in name or "H200" in name:
            return 989e12, f"{name}: 989 TFLOP/s bf16 dense (datasheet)"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    size = 8192 if device == "cuda" else 256
    a = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ a
    sync(device)
    start, n = time.perf_counter(), 0
    while n < 3 or time.perf_counter() - start < 0.3:
        a @ a
        n += 1
    sync(device)
    flops = 2 * size**3 * n / (time.perf_counter() - start)
    return flops, f"measured {size}^2 {dtype} matmul: {flops / 1e12:.3f} TFLOP/s"


# --- data ---------------------------------------------------------------------------------------


def prepare_tokens(
    text: Path,
    *,
    text_bytes: int,
    tokenizer_bytes: int,
    vocab_size: int,
    val_fraction: float,
    cache: Path,
    log=print,
) -> tuple[np.ndarray, np.ndarray]:
    """Train/val token ids of the first `text_bytes` of `text`, as a training run prepares them:
    the val split is the tail documents (`val_fraction`), the BPE is trained on the first
    `tokenizer_bytes` of the train split; all cached under `cache` (`tinylm.train.prepare_data`)."""
    config = DataConfig(
        text=str(text),
        text_bytes=text_bytes,
        val_fraction=val_fraction,
        vocab_size=vocab_size,
        tokenizer_bytes=tokenizer_bytes,
    )
    start = time.perf_counter()
    data = prepare_data(config, cache, log=log)
    train, val = np.asarray(open_tokens(data.train_path)), np.asarray(open_tokens(data.val_path))
    log(
        f"data: {len(train):,} train / {len(val):,} val tokens in "
        f"{time.perf_counter() - start:.1f} s -> {data.train_path.parent}"
    )
    return train, val
