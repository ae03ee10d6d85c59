"""Benchmark tinylm.nn: training throughput (forward+backward tokens/s, MFU) and generation speed.

Model: the TinyStories shape (vocab 10,000, ctx 256, d_model 512, 4 layers, 16 heads, d_ff 1344).

    uv run --no-sync python bench/nn_bench.py                      # CPU, small defaults (~2 min)
    uv run --no-sync python bench/nn_bench.py --device cuda --batch-size 64 --steps 20

CPU: eager and torch.compile'd float32. CUDA: eager float32, then bf16 autocast + torch.compile on
the fast path (attention="sdpa", fused_qkv=True). MFU = tokens/s × train FLOPs/token
(`model_stats`) / peak FLOP/s, where the peak is measured in this run with a large matmul in the
same dtype (so MFU is against what this machine's matmul achieves, not a datasheet number);
`--peak-tflops` overrides it (e.g. 989 for an H100 SXM in bf16, dense).
"""

import argparse
import os
import statistics
import time

import torch

from tinylm.nn import (
    ComputeConfig,
    ModelConfig,
    TransformerLM,
    cross_entropy,
    generate,
    model_stats,
)

TINYSTORIES = ModelConfig(
    vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344
)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure_matmul_peak(device: str, dtype: torch.dtype, size: int, windows: int = 8) -> float:
    """FLOP/s of a square matmul, the practical peak of this device/dtype.

    Best of several short windows, so a neighbour's burst of CPU use does not lower the peak.
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = 0.0
    for _ in range(windows):
        n, start = 0, time.perf_counter()
        while n < 4 or time.perf_counter() - start < 0.25:
            a @ b
            n += 1
            if n % 8 == 0:
                sync(device)
        sync(device)
        best = max(best, 2 * size**3 * n / (time.perf_counter() - start))
    return best


def train_tokens_per_s(model, config, batch_size, steps, device, autocast_dtype=None) -> float:
    """Forward + loss + backward tokens/s (median step), after two warm-up steps (compilation)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(
        0, config.vocab_size, (batch_size, config.context_length + 1), generator=gen
    )
    x, y = ids[:, :-1].to(device), ids[:, 1:].to(device)
    params = [p for p in model.parameters()]

    def step():
        for p in params:
            p.grad = None
        with torch.autocast(device, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = cross_entropy(model(x), y)
        loss.backward()

    for _ in range(2):
        step()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    # Median step: robust to a neighbour's burst of CPU use on a shared machine.
    return batch_size * config.context_length / statistics.median(times)


def generate_tokens_per_s(model, batch_size, prompt_len, new_tokens, use_kv_cache) -> float:
    device = next(model.parameters()).device
    prompt = torch.randint(0, model.config.vocab_size, (batch_size, prompt_len), device=device)
    generate(model, prompt, 8, temperature=0, use_kv_cache=use_kv_cache)  # warm-up
    sync(device.type)
    start = time.perf_counter()
    generate(model, prompt, new_tokens, temperature=0, use_kv_cache=use_kv_cache)
    sync(device.type)
    return batch_size * new_tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per variant")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    parser.add_argument("--gen-tokens", type=int, default=128, help="new tokens for generate")
    parser.add_argument("--gen-batch-size", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=None, help="override measured peak")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    device = args.device
    if os.environ.get("TINYLM_TYPECHECK", "1") != "0":
        print("note: runtime type checks are on; set TINYLM_TYPECHECK=0 for the fastest eager path")

    config = TINYSTORIES
    stats = model_stats(config)
    name = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"device: {name}; torch {torch.__version__}")
    print(
        f"model: {stats.params / 1e6:.2f}M params ({stats.non_embedding_params / 1e6:.2f}M "
        f"non-embedding), {stats.train_flops_per_token / 1e6:.1f} MFLOP/token fwd+bwd; "
        f"batch {args.batch_size} x ctx {config.context_length}"
    )

    def measure_peaks() -> dict[torch.dtype, float]:
        peaks = {torch.float32: measure_matmul_peak(device, torch.float32, 1024 * (1 + 3 * cuda))}
        if cuda:
            peaks[torch.bfloat16] = measure_matmul_peak(device, torch.bfloat16, 8192)
        return peaks

    cuda = device == "cuda"
    # Measured before and after the training runs, best kept: a shared CPU's neighbours can
    # depress any one measurement, and an MFU against a depressed peak would read too high.
    peaks = measure_peaks() if args.peak_tflops is None else {}

    plain = ComputeConfig()
    variants = [("eager fp32", plain, False, None)]
    if not args.no_compile:
        variants.append(("compiled fp32", plain, True, None))
        if cuda:
            fast = ComputeConfig(attention="sdpa", fused_qkv=True)
            variants.append(("compiled bf16 autocast, sdpa+fused qkv", fast, True, torch.bfloat16))
    results = []
    for label, compute, compiled, amp in variants:
        cfg = config
        torch.manual_seed(0)
        model = TransformerLM(cfg, compute, device=device)
        runner = torch.compile(model) if compiled else model
        t0 = time.perf_counter()
        tps = train_tokens_per_s(runner, cfg, args.batch_size, args.steps, device, amp)
        results.append((label, amp or torch.float32, tps, time.perf_counter() - t0))
        del model, runner

    if args.peak_tflops is not None:
        peaks = dict.fromkeys((torch.float32, torch.bfloat16), args.peak_tflops * 1e12)
        print(f"peak: {args.peak_tflops:.1f} TFLOP/s (given)")
    else:
        peaks = {k: max(v, peaks[k]) for k, v in measure_peaks().items()}
        for dtype, flops in peaks.items():
            print(f"peak (measured square matmul, {dtype}): {flops / 1e12:.3f} TFLOP/s")

    print(f"\n{'training (fwd+bwd)':<42} {'tokens/s':>12} {'MFU':>8}")
    for label, dtype, tps, total in results:
        mfu = tps * stats.train_flops_per_token / peaks[dtype]
        print(f"{label:<42} {tps:>12,.0f} {mfu:>8.1%}   ({total:.0f}s incl. warm-up)")

    print(f"\n{'generate (greedy, batch ' + str(args.gen_batch_size) + ')':<42} {'tokens/s':>12}")
    torch.manual_seed(0)
    model = TransformerLM(config, device=device)
    for use_cache in (True, False):
        tps = generate_tokens_per_s(model, args.gen_batch_size, 16, args.gen_tokens, use_cache)
        label = f"{args.gen_tokens} new tokens, KV cache {'on' if use_cache else 'off'}"
        print(f"{label:<42} {tps:>12,.1f}")


if __name__ == "__main__":
    main()
