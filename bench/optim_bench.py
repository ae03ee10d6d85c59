"""Benchmark one optimizer step: Muon batched vs per-matrix, and AdamW's update kernels vs torch's.

    uv run --no-sync python -m bench.optim_bench                        # default run's shape, CPU
    uv run --no-sync python -m bench.optim_bench --threads 1            # steadier on a busy box
    uv run --no-sync python -m bench.optim_bench --d-model 256 --layers 6 --d-ff 768
    uv run --no-sync python -m bench.optim_bench --device cuda --d-model 768 --layers 12 --d-ff 3072
    uv run --no-sync python -m bench.optim_bench --only adamw \
        --d-model 512 --d-ff 1344 --vocab 10000       # the TinyStories model's parameters

The matrices are those of a Llama block stack (q, k, v, o: d×d; SwiGLU w1, w3: d_ff×d; w2: d×d_ff),
with random gradients. Reports the median wall time of one `.step()` over `--repeats` steps after
warm-up for Muon `batched=True` (stacked, batched matmuls; w2ᵀ joins w1/w3), Muon `batched=False`
and AdamW (for scale), timed in alternation so a busy machine slows all three alike. On CUDA the
Newton–Schulz iteration runs in bf16.

The AdamW table times tinylm's AdamW under each update kernel (`adamw.UPDATES`: loop, foreach,
fused) against `torch.optim.AdamW` as constructed by default (what the nn_bench HF peer uses) and
with `fused=True` (HF Trainer's default `optim="adamw_torch_fused"` on torch >= 2.8), on the same
parameters (plus an embedding and an lm head of `--vocab` rows when given), also in alternation.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from bench.harness import interleave
from tinylm.optim import AdamW, Muon


def block_matrices(
    d: int, d_ff: int, layers: int, device: torch.device, vocab: int = 0
) -> list[torch.nn.Parameter]:
    """A block stack's matrices with random grads; `vocab > 0` adds an embedding and an lm head."""
    shapes = ([(d, d)] * 4 + [(d_ff, d), (d_ff, d), (d, d_ff)]) * layers
    shapes += [(vocab, d)] * 2 if vocab else []
    gen = torch.Generator().manual_seed(0)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=gen).to(device) * 0.02)
        p.grad = torch.randn(shape, generator=gen).to(device)
        params.append(p)
    return params


def time_steps(opts: dict[str, torch.optim.Optimizer], device: torch.device, repeats: int):
    """Median seconds per `.step()` of each optimizer, timed in alternation (fair on a busy box),
    after two warm-up steps each (state allocation, kernel selection)."""
    steps = {name: opt.step for name, opt in opts.items()}
    times = interleave(steps, repeats, device, warmup=2)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--d-ff", type=int, default=384)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=0, help="add embedding + head of this many rows")
    ap.add_argument("--only", choices=["muon", "adamw"], default=None, help="one table only")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # 1 is steadier on a box shared with other jobs
    device = torch.device(args.device)
    params = block_matrices(args.d_model, args.d_ff, args.layers, device, args.vocab)
    n = sum(p.numel() for p in params)
    print(
        f"{len(params)} matrices, {n / 1e6:.2f}M parameters (d={args.d_model}, d_ff={args.d_ff}, "
        f"{args.layers} layers, vocab {args.vocab}), device {device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    if args.only != "adamw":
        opts = {
            "muon batched": Muon(params, batched=True),
            "muon per-matrix": Muon(params, batched=False),
            "adamw (reference)": AdamW(params),
        }
        results = time_steps(opts, device, args.repeats)
        for name, seconds in results.items():
            print(f"{name:>18}: {seconds * 1e3:8.2f} ms/step")
        speedup = results["muon per-matrix"] / results["muon batched"]
        print(f"optim-bench: batched Newton–Schulz is {speedup:.2f}x the per-matrix step")
    if args.only != "muon":
        adamw_table(params, device, args.repeats)


def adamw_table(params: list[torch.nn.Parameter], device: torch.device, repeats: int) -> None:
    """tinylm AdamW per update kernel vs torch.optim.AdamW (default and fused), same params."""
    hp = dict(lr=1e-4, weight_decay=0.1)
    opts = {
        "tinylm AdamW, loop": AdamW(params, foreach=False, fused=False, **hp),
        "tinylm AdamW, foreach": AdamW(params, fused=False, **hp),
        "tinylm AdamW, default": AdamW(params, **hp),
        "torch AdamW()": torch.optim.AdamW(params, **hp),
        "torch AdamW(fused=True)": torch.optim.AdamW(params, fused=True, **hp),
    }
    kernel = opts["tinylm AdamW, default"].kernel(device, params[0].dtype)
    results = time_steps(opts, device, repeats)
    ref = results["torch AdamW()"]
    print("\n| AdamW step | ms/step (median) | speed vs torch AdamW() |")
    print("|---|---:|---:|")
    for name, seconds in results.items():
        label = f"{name} ({kernel})" if name.endswith("default") else name
        print(f"| {label} | {seconds * 1e3:.2f} | {ref / seconds:.2f}x |")


if __name__ == "__main__":
    main()
