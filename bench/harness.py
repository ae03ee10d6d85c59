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
    peak_flops(device)                train's peak: GPU datasheet table, CPU bound, or measured

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
from tinylm.train import DataConfig, llama_config_dict, open_tokens, prepare_data
from tinylm.train import peak_flops as train_peak_flops

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
    """LlamaForCausalLM of the same shape (HF's own init from `seed`, untied, sdpa attention):
    the `config.json` that export-hf writes (`tinylm.train.llama_config_dict`), untied.

    `use_cache=False` for a training-only peer (no KV cache built in its forward)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = llama_config_dict(
        config,
        rms_norm_eps=1e-5,
        bos_token_id=None,
        eos_token_id=None,
        dtype=str(dtype).removeprefix("torch."),
    )
    hf_config = LlamaConfig(**(fields | {"tie_word_embeddings": False, "use_cache": use_cache}))
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
    """Peak FLOP/s of one device for MFU and where it came from: train's `peak_flops` (the
    datasheet table on CUDA, in bf16 as the benches run there; the CPU's theoretical bound;
    else a measured matmul)."""
    return train_peak_flops(torch.device(device), bf16=torch.device(device).type == "cuda")


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
