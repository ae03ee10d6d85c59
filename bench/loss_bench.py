"""Peak memory and time of the lm-head + loss, per `tinylm.nn.LOSS_KERNELS` entry.

Kernels: "full" (the from-scratch reference on all logits), "fused" (the same logits into
torch's fused cross-entropy), "chunked" (linear_cross_entropy: never the full logits, the backward
recomputes each chunk) and "fused_linear" (the same chunks, gradients computed in the forward).
Each runs forward+backward in its own subprocess; peak resident memory is that process's
`ru_maxrss` minus its resident size just before the loss (so the inputs, the weight and torch
itself are not counted). CPU only; numbers are MiB of host memory; the time is one call.

    uv run --no-sync python -m bench.loss_bench                    # 8x512 tokens, 32K vocab, d 768
    uv run --no-sync python -m bench.loss_bench --tokens 1024 --vocab 4096 --d-model 64   # quick
"""

import argparse
import json
import resource
import subprocess
import sys
import time

KERNELS = ("full", "fused", "chunked", "fused_linear")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run_one(variant: str, tokens: int, vocab: int, d_model: int, chunk_size: int) -> dict:
    import torch

    from tinylm.nn import LOSS_KERNELS

    torch.manual_seed(0)
    hidden = torch.randn(tokens, d_model, requires_grad=True)
    weight = (torch.randn(vocab, d_model) * d_model**-0.5).requires_grad_(True)
    targets = torch.randint(0, vocab, (tokens,))
    # Touch the gradient buffers first so every variant counts the same resident baseline.
    hidden.grad, weight.grad = torch.zeros_like(hidden), torch.zeros_like(weight)
    kwargs = {"chunk_size": chunk_size} if variant == "chunked" else {}
    base = _rss_mib()
    start = time.perf_counter()
    loss = LOSS_KERNELS[variant](hidden, weight, targets, **kwargs)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"variant": variant, "loss": float(loss), "peak_mib": peak - base, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=8 * 512)
    parser.add_argument("--vocab", type=int, default=32_768)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--chunk-size", type=int, default=1024, help='rows per "chunked" chunk')
    parser.add_argument("--variant", choices=KERNELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process
        print(
            json.dumps(
                run_one(args.variant, args.tokens, args.vocab, args.d_model, args.chunk_size)
            )
        )
        return
    logits_mib = args.tokens * args.vocab * 4 / 2**20
    print(
        f"{args.tokens} tokens x vocab {args.vocab}, d_model {args.d_model}, fp32; "
        f"full logits = {logits_mib:.0f} MiB; chunked: {args.chunk_size} rows"
    )
    results = {}
    for variant in KERNELS:
        cmd = [sys.executable, __file__, "--variant", variant]
        cmd += ["--tokens", str(args.tokens), "--vocab", str(args.vocab)]
        cmd += ["--d-model", str(args.d_model), "--chunk-size", str(args.chunk_size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    print("| loss kernel | loss | peak extra MiB | fwd+bwd s |")
    print("|---|---|---|---|")
    for key in KERNELS:
        r = results[key]
        print(f"| `{key}` | {r['loss']:.5f} | {r['peak_mib']:.0f} | {r['seconds']:.2f} |")
    for key in ("chunked", "fused_linear"):
        ratio = results["full"]["peak_mib"] / max(results[key]["peak_mib"], 1e-9)
        print(f"peak memory ratio full/{key}: {ratio:.1f}x")


if __name__ == "__main__":
    main()
