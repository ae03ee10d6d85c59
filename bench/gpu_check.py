"""The prepared GPU check: CUDA tests, tinylm vs HF Llama training and decoding, bf16 loss check.

Run through bench/gpu_check.sh (it sets PYTHONPATH and installs carried wheels), which runs
`python -m bench.gpu_check` from the repository root. Phases, each
timed against an overall budget (`--budget-s`, default 420 s) so the script ends in under
8 minutes on one H100/H200; a phase that would start past the budget is recorded as skipped:

1. `pytest -m gpu` (CUDA only; on CPU recorded as skipped).
2. Training tokens/s and MFU, fwd+bwd+AdamW, tinylm's fastest path (bf16 autocast +
   torch.compile + sdpa + fused QKV) vs HF LlamaForCausalLM (sdpa, bf16 autocast +
   torch.compile), at the TinyStories shape (batch 128 and 256) and at 12 layers x 768, ctx 512,
   vocab 32K (batch 64). Target: tinylm >= 1.2x HF.
3. Batch-1 greedy decoding, 128 new tokens: tinylm `generate` vs HF `generate` with a static
   cache (which HF compiles on CUDA). Target: >= 3x.
4. 50 training steps in fp32 and in bf16 autocast from the same init on the same batches: both
   losses finite and within bf16 tolerance of each other.

Writes gpu_check.json and gpu_check.md to $OUT if set, else ./out. `--device cpu --tiny` runs
every phase at a tiny shape without compile (the CI test), so the script is known to work before
a GPU is lent. MFU = tokens/s x train FLOPs/token (`model_stats`, same for both models: same
shape) / peak, the peak being train's `peak_flops` (bf16 dense datasheet figure by GPU name,
e.g. 989 TFLOP/s on H100 SXM/H200; a CPU's theoretical peak; else a measured matmul).
"""

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import torch

from bench.gpu_phases import decode_rows, has_targets_forward, loss_check, run_pytest, train_rows
from bench.gpu_report import TARGETS, markdown
from bench.harness import Budget, peak_flops
from bench.nn_parts import TINY, TINYSTORIES
from tinylm.nn import ModelConfig, default_d_ff
from tinylm.train import atomic_write

GPT2_SMALL = ModelConfig(
    vocab_size=32_768,
    context_length=512,
    d_model=768,
    num_layers=12,
    num_heads=12,
    d_ff=default_d_ff(768),
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, few steps (CI smoke)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "out")
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant")
    parser.add_argument(
        "--compile",
        dest="compile_",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the training runs (default: on CUDA)",
    )
    return parser.parse_args(argv)


def shapes(tiny: bool):
    """(training shapes with their batches, decoding shapes, loss-check config, new tokens,
    loss-check batch)."""
    if tiny:
        loss_cfg = ModelConfig(64, 16, 32, 1, 2, 64)  # bf16 on a CPU is slow: keep it tiny
        return [("tiny 2x64", TINY, (2, 4))], [("tiny 2x64", TINY)], loss_cfg, 8, 2
    train = [
        ("TinyStories 4x512 ctx256", TINYSTORIES, (128, 256)),
        ("12x768 ctx512 vocab32K", GPT2_SMALL, (64,)),
    ]
    decode = [("TinyStories 4x512", TINYSTORIES), ("12x768", GPT2_SMALL)]
    return train, decode, TINYSTORIES, 128, 32


def run_phases(report: dict, args, device: str, compile_: bool, budget: Budget) -> None:
    """Every phase in order, each one's rows into `report` (and a line on stdout)."""
    amp = torch.bfloat16 if device == "cuda" else None
    steps = args.steps or (2 if args.tiny else 10)
    report["pytest"] = run_pytest(device, budget)
    print(f"pytest -m gpu: {report['pytest']}", flush=True)
    train_shapes, decode_shapes, loss_cfg, new_tokens, loss_batch = shapes(args.tiny)
    report["train"] = []
    for shape_name, config, batches in train_shapes:
        report["train"] += train_rows(
            shape_name, config, batches, device, steps, compile_, amp, budget
        )
        print(json.dumps(report["train"][-1]), flush=True)
    report["decode"] = []
    for shape_name, config in decode_shapes:
        report["decode"] += decode_rows(
            shape_name, config, device, new_tokens, budget, rounds=1 if args.tiny else 2
        )
        print(json.dumps(report["decode"][-1]), flush=True)
    report["loss_check"] = loss_check(loss_cfg, device, loss_batch, 50, budget)
    print(f"loss check: {report['loss_check']}", flush=True)
    report["elapsed_s"] = budget.elapsed()


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: --device cuda but CUDA is not available (use --device cpu --tiny)",
            file=sys.stderr,
        )
        return 2
    device = args.device
    compile_ = args.compile_ if args.compile_ is not None else device == "cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budget = Budget(args.budget_s)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak, peak_note = peak_flops(device)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    report = {
        "device": device,
        "device_name": name,
        "torch": torch.__version__,
        "tiny": args.tiny,
        "compiled": compile_,
        "peak_flops": peak,
        "peak": peak_note,
        "targets": TARGETS,
        "fused_loss_available": has_targets_forward(),
    }
    print(f"gpu_check on {name}, torch {torch.__version__}; {peak_note}", flush=True)
    run_phases(report, args, device, compile_, budget)
    atomic_write(out / "gpu_check.json", json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    atomic_write(out / "gpu_check.md", table)
    print(table)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
