"""Model FLOPs utilisation: how much of the hardware's peak a run's matmuls use.

    MFU = tokens/s × train FLOPs/token ÷ (peak FLOP/s per device × devices)

FLOPs/token is `tinylm.nn.model_stats(config).train_flops_per_token` (the matmuls, 3× forward).
The peak, per device, comes from the first of:

1. `train.peak_flops` when > 0 (a datasheet number you trust);
2. on CUDA, `GPU_PEAK_FLOPS` by device name: dense tensor-core peaks (no 2:4 sparsity), bf16 when
   the run autocasts to bf16, TF32 otherwise (train enables TF32 for float32 matmuls on CUDA);
3. otherwise (CPU, MPS, an unknown GPU) a measurement: the best of a few square matmuls in the
   run's dtype, taken once per process and cached. On a shared or throttled machine that is what
   the hardware gives now, not a datasheet number, so CPU MFU reads "fraction of what a plain
   matmul reaches here" (it can even exceed 1 when the measurement caught a busy moment).

The peak is looked up once, before the loop; in the loop MFU is host arithmetic on the tokens/s
that the progress bar already shows (no device sync).
"""

from __future__ import annotations

import functools
import time

import torch

__all__ = ["GPU_PEAK_FLOPS", "measure_matmul_flops", "peak_flops"]

# Substring of torch.cuda.get_device_name() -> (bf16 dense, tf32 dense) FLOP/s, most specific
# first (the first match wins). NVIDIA datasheets.
GPU_PEAK_FLOPS: dict[str, tuple[float, float]] = {
    "H100 PCIe": (756e12, 378e12),
    "H100": (989e12, 494.7e12),  # SXM
    "H200": (989e12, 494.7e12),
    "GH200": (989e12, 494.7e12),
    "A100": (312e12, 156e12),
    "L40S": (362e12, 183e12),
    "L4": (121e12, 60e12),
    "A10G": (70e12, 35e12),
    "A10": (125e12, 62.5e12),
}


@functools.cache
def measure_matmul_flops(device_type: str, dtype: torch.dtype, size: int = 1024) -> float:
    """Best FLOP/s of a few `size`² matmuls on this device type (cached per process)."""
    device = torch.device(device_type)
    gen = torch.Generator().manual_seed(0)  # its own generator: the run's RNG streams stay put
    a = torch.randn(size, size, generator=gen).to(device, dtype)
    b = torch.randn(size, size, generator=gen).to(device, dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        elif device.type == "mps":
            torch.mps.synchronize()

    (a @ b).sum().item()  # warm-up (allocations, kernel selection)
    best = float("inf")
    reps = 3
    for _ in range(3):
        sync()
        start = time.perf_counter()
        for _ in range(reps):
            c = a @ b
        sync()
        best = min(best, (time.perf_counter() - start) / reps)
        del c
    return 2 * size**3 / best


def peak_flops(device: torch.device, bf16: bool, configured: float = 0.0) -> tuple[float, str]:
    """(peak FLOP/s of one device, where it came from) for a run on `device`."""
    if configured > 0:
        return configured, "train.peak_flops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, (bf16_peak, tf32_peak) in GPU_PEAK_FLOPS.items():
            if key in name:
                kind = "bf16" if bf16 else "tf32"
                return (bf16_peak if bf16 else tf32_peak), f"{name} {kind} datasheet"
    dtype = torch.bfloat16 if bf16 else torch.float32
    measured = measure_matmul_flops(device.type, dtype)
    return measured, f"measured {str(dtype).removeprefix('torch.')} matmul on {device.type}"
