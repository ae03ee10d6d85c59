"""The prepared GPU check: CUDA tests, tinylm vs HF Llama training and decoding, bf16 loss check.

Run through bench/gpu_check.sh (it sets PYTHONPATH and installs carried wheels). Phases, each
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
shape) / peak, the peak being 989 TFLOP/s bf16 dense on H100/H200 and a measured matmul elsewhere.
"""

import argparse
import contextlib
import inspect
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nn_bench import (
    FAST,
    TINY,
    TINYSTORIES,
    decode_fn,
    fast_compute,
    make_hf,
    make_tinylm,
    sync,
    time_decode,
    time_steps,
    train_step_fn,
    unchecked,
)

from tinylm.nn import ModelConfig, cross_entropy, default_d_ff, model_stats

ROOT = Path(__file__).resolve().parent.parent
GPT2_SMALL = ModelConfig(
    vocab_size=32_768,
    context_length=512,
    d_model=768,
    num_layers=12,
    num_heads=12,
    d_ff=default_d_ff(768),
)
TARGETS = {"train_vs_hf": 1.2, "decode_vs_hf": 3.0}
BF16_LOSS_RTOL = 0.03  # |loss_bf16 - loss_fp32| <= 3% of loss_fp32 after 50 steps


def peak_flops(device: str) -> tuple[float, str]:
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


class Budget:
    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> bool:
        return self.elapsed() < self.seconds


def run_pytest(device: str, budget: Budget) -> dict:
    if device != "cuda":
        return {"status": "skipped", "reason": "no CUDA device"}
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    cmd += ["packages", "tests"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "summary": "pytest -m gpu ran past 150 s"}
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    summary = lines[-1] if lines else ""
    ok = proc.returncode in (0, 5)  # 5 = no tests collected
    return {
        "status": "passed" if ok else "failed",
        "returncode": proc.returncode,
        "summary": summary,
        "tail": lines[-30:],
    }


def has_targets_forward() -> bool:
    """Whether TransformerLM.forward(ids, targets=...) (the fused loss) exists yet."""
    from tinylm.nn import TransformerLM

    return "targets" in inspect.signature(TransformerLM.forward).parameters


def train_rows(shape_name, config, batches, device, steps, compile_, amp, budget) -> list[dict]:
    stats = model_stats(config)
    rows = []
    for batch in batches:
        pair = {}
        for impl in ("tinylm", "hf"):
            if not budget.left():
                rows.append(
                    {
                        "shape": shape_name,
                        "batch": batch,
                        "impl": impl,
                        "status": "skipped: time budget",
                    }
                )
                continue
            torch.manual_seed(0)
            if impl == "tinylm":
                model = make_tinylm(config, fast_compute(compile_), device=device)
            else:
                model = make_hf(config, device=device)
            step = train_step_fn(model, impl, config, batch, device, amp, compiled=compile_)
            t0 = time.perf_counter()
            try:
                seconds = time_steps(step, steps, device)
            except torch.OutOfMemoryError:
                rows.append(
                    {"shape": shape_name, "batch": batch, "impl": impl, "status": "out of memory"}
                )
                continue
            finally:
                del model, step
                if device == "cuda":
                    torch.cuda.empty_cache()
            tps = batch * config.context_length / seconds
            pair[impl] = tps
            rows.append(
                {
                    "shape": shape_name,
                    "batch": batch,
                    "impl": impl,
                    "status": "ok",
                    "tokens_per_s": tps,
                    "flops_per_token": stats.train_flops_per_token,
                    "compiled": compile_,
                    "autocast": str(amp) if amp else None,
                    "wall_s_incl_compile": time.perf_counter() - t0,
                }
            )
        if len(pair) == 2:
            rows.append(
                {
                    "shape": shape_name,
                    "batch": batch,
                    "impl": "ratio",
                    "status": "ok",
                    "ratio": pair["tinylm"] / pair["hf"],
                }
            )
    return rows


def decode_rows(shape_name, config, device, new_tokens, budget, rounds=2) -> list[dict]:
    prompt = torch.randint(
        0, config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(1)
    )
    prompt = prompt.to(device)
    result = {}
    rows = []
    for impl in ("tinylm", "hf"):
        if not budget.left():
            rows.append({"shape": shape_name, "impl": impl, "status": "skipped: time budget"})
            continue
        torch.manual_seed(0)
        if impl == "tinylm":
            model = make_tinylm(config, FAST, device=device).eval()
            run = decode_fn(model, "tinylm", prompt, new_tokens)
        else:
            model = make_hf(config, device=device).eval()
            run = decode_fn(model, "hf", prompt, new_tokens, cache_implementation="static")
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model.to(dtype)
        tps = max(time_decode(run, new_tokens, device) for _ in range(rounds))
        result[impl] = tps
        rows.append(
            {
                "shape": shape_name,
                "impl": impl,
                "status": "ok",
                "tokens_per_s": tps,
                "dtype": str(dtype),
                "new_tokens": new_tokens,
                "note": "HF: static cache (auto-compiled on CUDA)" if impl == "hf" else "",
            }
        )
        del model, run
    if len(result) == 2:
        rows.append(
            {
                "shape": shape_name,
                "impl": "ratio",
                "status": "ok",
                "ratio": result["tinylm"] / result["hf"],
            }
        )
    return rows


def loss_check(config, device, batch, steps, budget) -> dict:
    """Same init, same batches, fp32 vs bf16 autocast: both finite and close after `steps`."""
    if not budget.left():
        return {"status": "skipped: time budget"}
    gen = torch.Generator().manual_seed(0)
    # A learnable stream (a fixed random bigram walk), so the loss actually moves in 50 steps.
    table = torch.randint(0, config.vocab_size, (config.vocab_size,), generator=gen)
    starts = torch.randint(0, config.vocab_size, (steps, batch), generator=gen)
    seqs = []
    for i in range(steps):
        ids = [starts[i]]
        for _ in range(config.context_length):
            ids.append(table[ids[-1]])
        seqs.append(torch.stack(ids, dim=1))
    losses = {}
    for label, amp in (("fp32", None), ("bf16", torch.bfloat16)):
        torch.manual_seed(0)
        model = make_tinylm(config, FAST, device=device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
        dev_type = torch.device(device).type
        # unchecked(): this phase measures numerics, not the (sync-free) type checks.
        with unchecked():
            for ids in seqs:
                ids = ids.to(device)
                with torch.autocast(dev_type, dtype=amp, enabled=amp is not None):
                    loss = cross_entropy(model(ids[:, :-1]), ids[:, 1:])
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        losses[label] = float(loss.detach())
        del model, opt
    diff = abs(losses["fp32"] - losses["bf16"])
    tolerance = BF16_LOSS_RTOL * abs(losses["fp32"])
    finite = all(math.isfinite(v) for v in losses.values())
    return {
        "status": "ok",
        "steps": steps,
        "loss_fp32": losses["fp32"],
        "loss_bf16": losses["bf16"],
        "abs_diff": diff,
        "tolerance": tolerance,
        "initial_loss_ln_vocab": math.log(config.vocab_size),
        "finite": finite,
        "passed": finite and diff <= tolerance,
    }


def markdown(report: dict) -> str:
    lines = [
        f"# gpu_check: {report['device_name']}",
        "",
        f"torch {report['torch']}; tiny={report['tiny']}; {report['peak']}; "
        f"{report['elapsed_s']:.0f} s",
        "",
        f"pytest -m gpu: {report['pytest'].get('status')} {report['pytest'].get('summary', '')}",
        "",
        "| training (fwd+bwd+AdamW) | batch | tinylm tok/s | tinylm MFU | HF tok/s | "
        "HF MFU | tinylm/HF |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    peak = report["peak_flops"]
    by_key = {}
    for r in report["train"]:
        by_key.setdefault((r["shape"], r["batch"]), {})[r["impl"]] = r

    def cell(r, key):
        if r is None or r.get("status") != "ok":
            return r.get("status", "-") if r else "-"
        if key == "tps":
            return f"{r['tokens_per_s']:,.0f}"
        return f"{r['tokens_per_s'] * r['flops_per_token'] / peak:.1%}"

    for (shape, batch), d in by_key.items():
        t, h, ratio = d.get("tinylm"), d.get("hf"), d.get("ratio")
        lines.append(
            f"| {shape} | {batch} | {cell(t, 'tps')} | {cell(t, 'mfu')} | "
            f"{cell(h, 'tps')} | {cell(h, 'mfu')} | "
            f"{ratio['ratio']:.2f}x |"
            if ratio
            else f"| {shape} | {batch} | {cell(t, 'tps')} | {cell(t, 'mfu')} | "
            f"{cell(h, 'tps')} | {cell(h, 'mfu')} | - |"
        )
    lines += [
        "",
        "| decoding, batch 1, greedy | tinylm tok/s | HF generate (static) tok/s | tinylm/HF |",
        "|---|---:|---:|---:|",
    ]
    dec = {}
    for r in report["decode"]:
        dec.setdefault(r["shape"], {})[r["impl"]] = r
    for shape, d in dec.items():
        t, h, ratio = d.get("tinylm"), d.get("hf"), d.get("ratio")
        lines.append(
            f"| {shape} | {cell(t, 'tps')} | {cell(h, 'tps')} | {ratio['ratio']:.2f}x |"
            if ratio
            else f"| {shape} | {cell(t, 'tps')} | {cell(h, 'tps')} | - |"
        )
    lc = report["loss_check"]
    if lc.get("status") == "ok":
        lines += [
            "",
            f"loss after {lc['steps']} steps: fp32 {lc['loss_fp32']:.4f}, bf16 "
            f"{lc['loss_bf16']:.4f}, |diff| {lc['abs_diff']:.4f} (tolerance "
            f"{lc['tolerance']}): {'PASS' if lc['passed'] else 'FAIL'}",
        ]
    else:
        lines += ["", f"loss check: {lc.get('status')}"]
    lines += [
        "",
        f"targets: training >= {TARGETS['train_vs_hf']}x HF compiled; decoding >= "
        f"{TARGETS['decode_vs_hf']}x HF generate (static cache)",
    ]
    return "\n".join(lines) + "\n"


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
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
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: --device cuda but CUDA is not available (use --device cpu --tiny)",
            file=sys.stderr,
        )
        return 2
    device = args.device
    compile_ = args.compile_ if args.compile_ is not None else device == "cuda"
    amp = torch.bfloat16 if device == "cuda" else None
    steps = args.steps or (2 if args.tiny else 10)
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

    report["pytest"] = run_pytest(device, budget)
    print(f"pytest -m gpu: {report['pytest']}", flush=True)

    if args.tiny:
        shapes = [("tiny 2x64", TINY, (2, 4))]
        decode_shapes = [("tiny 2x64", TINY)]
        loss_cfg = ModelConfig(64, 16, 32, 1, 2, 64)  # bf16 on a CPU is slow: keep it tiny
        new_tokens, loss_batch = 8, 2
    else:
        shapes = [
            ("TinyStories 4x512 ctx256", TINYSTORIES, (128, 256)),
            ("12x768 ctx512 vocab32K", GPT2_SMALL, (64,)),
        ]
        decode_shapes = [("TinyStories 4x512", TINYSTORIES), ("12x768", GPT2_SMALL)]
        new_tokens, loss_cfg, loss_batch = 128, TINYSTORIES, 32
    report["train"] = []
    for shape_name, config, batches in shapes:
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

    atomic_write(out / "gpu_check.json", json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    atomic_write(out / "gpu_check.md", table)
    print(table)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
