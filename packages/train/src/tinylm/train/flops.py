"""Model FLOPs utilisation: how much of the hardware's peak a run's matmuls use.

    MFU = tokens/s × train FLOPs/token ÷ (peak FLOP/s per device × devices)

FLOPs/token is `tinylm.nn.model_stats(config).train_flops_per_token` (the matmuls, 3× forward).
The peak, per device, comes from the first of:

1. `train.peak_flops` when > 0 (a datasheet number you trust);
2. on CUDA, `GPU_PEAK_FLOPS` by device name: dense tensor-core peaks (no 2:4 sparsity), bf16 when
   the run autocasts to bf16, TF32 otherwise (train enables TF32 for float32 matmuls on CUDA);
3. on a CPU, its theoretical peak `cpu_peak_flops`: threads × clock × FLOPs per cycle per core of
   its widest vector unit (`CPU_FLOPS_PER_CYCLE`, e.g. AVX-512: 2 FMA pipes × 16 fp32 lanes × 2).
   No core issues more, so MFU ≤ 100 % by construction, and the figure is the same for every
   run on the machine (a matmul measured per run varied 3× on a shared box and gave 133 %);
4. otherwise (MPS, an unknown GPU, a CPU whose clock cannot be read) a measurement: the best of a
   few square matmuls in the run's dtype, taken once per process. That is what the device gives
   at that moment, not a bound, so its source says so (MFU can then exceed 100 %).

The peak is looked up once, before the loop, and its source printed once; in the loop MFU is
host arithmetic on the tokens/s that the progress display already shows (no device sync).
"""

from __future__ import annotations

import functools
import glob
import time
from pathlib import Path

import torch

__all__ = [
    "CPU_FLOPS_PER_CYCLE",
    "GPU_PEAK_FLOPS",
    "cpu_peak_flops",
    "measure_matmul_flops",
    "peak_flops",
]

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


# CPU feature flag (/proc/cpuinfo) -> (fp32, bf16) FLOPs per cycle per core, widest first (the
# first flag the CPU has wins). The upper end of each ISA: two FMA pipes × lanes × 2 FLOPs (an
# FMA). Zen 4 splits AVX-512 over 256-bit pipes (half of this); Intel server cores have two
# 512-bit pipes. bf16: AVX512-BF16 dot products do twice fp32's work per instruction; AMX tiles
# 1024 FLOPs/cycle; without either, bf16 matmuls run at the fp32 rate (or slower).
CPU_FLOPS_PER_CYCLE: dict[str, tuple[int, int]] = {
    "avx512f": (64, 64),
    "avx2": (32, 32),  # with FMA3
    "avx": (16, 16),  # one mul + one add pipe, 8 lanes
    "sve": (64, 64),  # aarch64, up to 2 × 512-bit
    "asimd": (32, 32),  # aarch64 NEON: up to 4 × 128-bit FMA pipes
}
_BF16_FLOPS_PER_CYCLE = {"amx_bf16": 1024, "avx512_bf16": 128, "bf16": 64}


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _max_clock_hz(cpuinfo: str) -> float:
    """The highest clock the kernel reports: cpufreq's maximum, else /proc/cpuinfo's MHz."""
    khz = []
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        try:
            khz.append(int(Path(path).read_text().strip()))
        except (OSError, ValueError):
            continue
    if khz:
        return max(khz) * 1e3
    mhz = []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "cpu mhz":
            try:
                mhz.append(float(value))
            except ValueError:
                continue
    return max(mhz) * 1e6 if mhz else 0.0


def cpu_peak_flops(
    bf16: bool, threads: int | None = None, cpuinfo: str | None = None, clock_hz: float = 0.0
) -> tuple[float, str] | None:
    """(theoretical peak FLOP/s of this CPU for the run, how it was computed), or None when its
    clock or vector unit cannot be read. `threads` defaults to torch's intra-op threads (what
    the run's matmuls use); `cpuinfo` and `clock_hz` stand in for /proc/cpuinfo and cpufreq."""
    cpuinfo = _cpuinfo() if cpuinfo is None else cpuinfo
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags |= set(value.split())
    clock = clock_hz or _max_clock_hz(cpuinfo)
    unit = next((flag for flag in CPU_FLOPS_PER_CYCLE if flag in flags), None)
    if unit is None or clock <= 0:
        return None
    per_cycle = CPU_FLOPS_PER_CYCLE[unit][1 if bf16 else 0]
    kind = "fp32"
    if bf16:
        fast = next((flag for flag in _BF16_FLOPS_PER_CYCLE if flag in flags), None)
        if fast is not None and _BF16_FLOPS_PER_CYCLE[fast] > per_cycle:
            unit, per_cycle = fast, _BF16_FLOPS_PER_CYCLE[fast]
        kind = "bf16"
    threads = threads or torch.get_num_threads()
    peak = threads * clock * per_cycle
    source = (
        f"CPU bound: {threads} thread(s) × {clock / 1e9:.2f} GHz × {per_cycle} {kind} "
        f"FLOP/cycle ({unit})"
    )
    return peak, source


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
    if device.type == "cpu":
        bound = cpu_peak_flops(bf16)
        if bound is not None:
            return bound
    dtype = torch.bfloat16 if bf16 else torch.float32
    measured = measure_matmul_flops(device.type, dtype)
    name = str(dtype).removeprefix("torch.")
    return measured, f"measured {name} matmul on {device.type}, not a bound (MFU may exceed 100%)"
