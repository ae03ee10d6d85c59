"""tinylm vs Hugging Face Llama, side by side in one run: training steps and batch-1 decoding.

Training = forward + cross-entropy + backward + AdamW step, fp32, TinyStories shape (vocab 10K,
ctx 256, d 512, 4 layers, 16 heads, d_ff 1344), batch 4. Variants, each timed in every round,
rounds interleaved (a shared machine's noise hits all variants alike); a row's tokens/s is at the
median of all its timed steps over all rounds (`--rounds 15 --steps 1` interleaves step by step,
the steadiest setting on this box). Two tables:

    models (the same `torch.optim.AdamW()` for both, so only the model differs):
      tinylm eager under each kernel set below, type checks on (the default) and off; compiled
      HF LlamaForCausalLM (attn_implementation="sdpa", untied) eager and compiled
    stacks (each with its own optimizer): tinylm FAST + `tinylm.optim.AdamW` (what train runs;
      its fused kernel on CPU) vs HF + `torch.optim.AdamW(fused=True)` (HF Trainer's default
      `optim` on torch >= 2.8), eager and compiled, each also under bf16 autocast (both sides);
      ratios also vs the models table's HF eager

Decoding: greedy, batch 1, 16-token prompt, 128 new tokens, same rounds: `tinylm.nn.generate`
eager (type checks at their default) and with the decode step compiled (`compile=True`) vs HF
`generate` with its dynamic cache (the CPU default), a static cache, and a static cache plus
`torch.compile` (forced on CPU with `CompileConfig._compile_all_devices`). Each variant's first
call (warm-up; includes compilation) is reported apart from its best timed call.

    uv run --no-sync python -m bench.nn_bench                  # training + decoding, 3 rounds
    uv run --no-sync python -m bench.nn_bench --decode-only    # decoding only
    uv run --no-sync python -m bench.nn_bench --decode-only --decode-dtype bfloat16  # both bf16
    uv run --no-sync python -m bench.nn_bench --quick          # tiny shape, 1 round: smoke test
    uv run --no-sync python -m bench.nn_bench --train-only --headline --rounds 20 --steps 1
    ... --no-compile        # skip the compiled variants;  --cold-compile: no inductor caches

"Checks off" runs inside `tinylm.nn.typecheck.unchecked()`, which skips exactly what
TINYLM_TYPECHECK=0 skips (the wrapper's remaining cost is one int test per call). Kernel sets
(`ComputeConfig`, same function under each): REFERENCE (every op from scratch), SDPA (fused
attention only: the previous default), NAIVE_ATTENTION_FAST and FAST (sdpa, fused QKV, torch's
pointwise kernels, the "fused_linear" lm-head + loss: train's default `[compute]`); compiled rows
run FAST_COMPILED (FAST with loss "fused", faster under inductor), and under bf16 autocast on a
CPU FAST_COMPILED_CPU_BF16 (attention "naive": compiled, it beats the CPU SDPA kernel there, see
fast_compute). tinylm's loss is
`model(x, targets=y)` (its loss kernel); HF's is F.cross_entropy on its float32 logits.
"""

import argparse
import contextlib
import dataclasses
import json

import torch

from bench.harness import hf_static_compiled_kwargs, interleave, make_hf
from bench.nn_parts import (
    FAST,
    NAIVE_ATTENTION_FAST,
    REFERENCE,
    SDPA,
    TINY,
    TINYSTORIES,
    TrainVariant,
    decode_fn,
    fast_compute,
    make_tinylm,
    time_decode,
    tinylm_adamw,
    torch_adamw,
    torch_adamw_fused,
    train_step_fn,
    weight_floor_fn,
)
from tinylm.nn import TYPECHECK, unchecked
from tinylm.train import atomic_write

# The eager rows behind the CPU targets; `--headline` builds and times only these (7 rows instead
# of 20 alternate, so each row's steps are closer together in time).
HEADLINE = (
    "HF Llama eager (sdpa)",
    "tinylm eager fast (train default + fused QKV), checks on",
    "tinylm eager fast + tinylm AdamW, checks on",
    "tinylm eager from-scratch attention + fast ops + tinylm AdamW, checks on",
    "HF Llama eager + AdamW(fused=True)",
    "tinylm eager fast + tinylm AdamW, bf16 autocast",
    "HF Llama eager + AdamW(fused=True), bf16 autocast",
)


@dataclasses.dataclass(frozen=True)
class Row:
    """One training row of the tables: which model ("tinylm" under `compute`, default the fast
    set for eager or compiled, or "hf"), optimizer, autocast dtype and context."""

    label: str
    kind: str
    compute: object = None
    context: object = contextlib.nullcontext
    compiled: bool = False
    optimizer: object = torch_adamw
    autocast: object = None


BF16 = torch.bfloat16  # autocast (this CPU has avx512_bf16): each side's fastest eager path
KERNEL_ROWS = (
    ("every op from scratch", REFERENCE),
    ("sdpa only (previous default)", SDPA),
    ("from-scratch attention + fast ops", NAIVE_ATTENTION_FAST),
    ("fast (train default + fused QKV)", FAST),
)
EAGER_ROWS = (
    *(
        row
        for label, compute in KERNEL_ROWS
        for row in (
            Row(f"tinylm eager {label}, checks on", "tinylm", compute),
            Row(f"tinylm eager {label}, checks off", "tinylm", compute, context=unchecked),
        )
    ),
    Row("HF Llama eager (sdpa)", "hf"),
    Row("tinylm eager fast + tinylm AdamW, checks on", "tinylm", optimizer=tinylm_adamw),
    Row(
        "tinylm eager from-scratch attention + fast ops + tinylm AdamW, checks on",
        "tinylm",
        NAIVE_ATTENTION_FAST,
        optimizer=tinylm_adamw,
    ),
    Row("HF Llama eager + AdamW(fused=True)", "hf", optimizer=torch_adamw_fused),
    Row(
        "tinylm eager fast + tinylm AdamW, bf16 autocast",
        "tinylm",
        optimizer=tinylm_adamw,
        autocast=BF16,
    ),
    Row(
        "HF Llama eager + AdamW(fused=True), bf16 autocast",
        "hf",
        optimizer=torch_adamw_fused,
        autocast=BF16,
    ),
)
COMPILED_ROWS = (
    Row("tinylm compiled fast", "tinylm", compiled=True),
    Row("HF Llama compiled (sdpa)", "hf", compiled=True),
    Row("tinylm compiled fast + tinylm AdamW", "tinylm", compiled=True, optimizer=tinylm_adamw),
    Row("HF Llama compiled + AdamW(fused=True)", "hf", compiled=True, optimizer=torch_adamw_fused),
    # Each side's fastest path on a CPU with bf16 matmuls: compiled under bf16 autocast
    # (tinylm's with sdpa too, to show what the from-scratch attention gains there).
    Row(
        "tinylm compiled fast + tinylm AdamW, bf16 autocast",
        "tinylm",
        compiled=True,
        optimizer=tinylm_adamw,
        autocast=BF16,
    ),
    Row(
        "tinylm compiled fast, from-scratch attention + tinylm AdamW, bf16 autocast",
        "tinylm",
        fast_compute(compiled=True, cpu_bf16=True),
        compiled=True,
        optimizer=tinylm_adamw,
        autocast=BF16,
    ),
    Row(
        "HF Llama compiled + AdamW(fused=True), bf16 autocast",
        "hf",
        compiled=True,
        optimizer=torch_adamw_fused,
        autocast=BF16,
    ),
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shape, 1 round, few steps")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant/round")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--gen-tokens", type=int, default=None, help="new tokens (default 128, --quick 16)"
    )
    parser.add_argument("--no-compile", action="store_true", help="skip compiled variants")
    parser.add_argument("--decode-only", action="store_true", help="skip the training table")
    parser.add_argument("--train-only", action="store_true", help="skip the decoding table")
    parser.add_argument(
        "--decode-dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="weights (and compute) of both models in the decoding table",
    )
    parser.add_argument(
        "--headline",
        action="store_true",
        help="only the eager rows the targets compare (HEADLINE), for a tighter interleave",
    )
    parser.add_argument(
        "--cold-compile", action="store_true", help="disable inductor's caches (cold compile)"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser.parse_args(argv)


def train_variants(args, config, batch: int, device) -> list[TrainVariant]:
    """The training rows the flags ask for, each with its model built (in table order)."""
    rows = [] if args.decode_only else list(EAGER_ROWS)
    if not args.no_compile and not args.decode_only:
        rows += COMPILED_ROWS
    variants = []
    for row in rows:
        if args.headline and row.label not in HEADLINE:
            continue
        compute = row.compute or fast_compute(row.compiled)
        model = make_tinylm(config, compute) if row.kind == "tinylm" else make_hf(config)
        step = train_step_fn(
            model, row.kind, config, batch, device, row.autocast, row.compiled, row.optimizer
        )
        table = "models" if row.optimizer is torch_adamw else "stacks"
        tokens = batch * config.context_length
        variants.append(TrainVariant(row.label, step, tokens, row.context, table))
    return variants


def decoders(args, config, new_tokens: int):
    """The decoding rows (label -> closure) and the config they decode with."""
    prompt = torch.randint(
        0, config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(1)
    )
    n = new_tokens
    # Room for prompt + n tokens, so every timed token is a decode step (past the window tinylm
    # re-encodes it each token, HF runs RoPE past its table: two different workloads).
    dec_config = dataclasses.replace(
        config, context_length=max(config.context_length, prompt.shape[1] + n)
    )
    torch.manual_seed(0)
    dec_dtype = getattr(torch, args.decode_dtype)
    tiny_sdpa = make_tinylm(dec_config, FAST, dtype=dec_dtype).eval()
    hf = make_hf(dec_config, dtype=dec_dtype).eval()
    runs = {
        "tinylm generate, eager": decode_fn(tiny_sdpa, "tinylm", prompt, n, compile=False),
        "HF generate (dynamic cache)": decode_fn(hf, "hf", prompt, n),
        "HF generate (static cache)": decode_fn(hf, "hf", prompt, n, cache_implementation="static"),
        "floor: the weight matvecs alone": weight_floor_fn(tiny_sdpa, n),
    }
    if not args.no_compile:
        runs["tinylm generate, compiled step"] = decode_fn(
            tiny_sdpa, "tinylm", prompt, n, compile=True
        )
        try:
            hf_compiled_kwargs = hf_static_compiled_kwargs()
        except ImportError:  # transformers without CompileConfig (< 4.47)
            print("note: this transformers has no CompileConfig: no HF static + compile row")
        else:
            runs["HF generate (static cache + compile)"] = decode_fn(
                hf, "hf", prompt, n, **hf_compiled_kwargs
            )
    return runs, dec_config


def print_train_tables(variants, by_label, batch, context) -> None:
    """The models table (vs HF with the same torch AdamW()) and the stacks table (vs HF with the
    fused AdamW, and vs the models table's HF eager: the issue's peer)."""
    hf_eager = by_label["HF Llama eager (sdpa)"]
    peers = {
        "models": ("HF Llama eager (sdpa)", "HF Llama compiled (sdpa)"),
        "stacks": ("HF Llama eager + AdamW(fused=True)", "HF Llama compiled + AdamW(fused=True)"),
    }
    for table, (eager_label, compiled_label) in peers.items():
        rows = [v for v in variants if v.table == table]
        if not rows:
            continue
        eager, compiled = by_label[eager_label], by_label.get(compiled_label)
        title = "same torch AdamW() for both" if table == "models" else "each with its optimizer"
        extra = " vs HF eager + AdamW() |" if table == "stacks" else ""
        print(
            f"\n| training, fwd+bwd+AdamW (batch {batch} x {context}), {title} | tokens/s "
            f"| vs HF eager | vs HF compiled |{extra}"
        )
        print("|---|---:|---:|---:|" + ("---:|" if extra else ""))
        for v in rows:
            vs_c = f"{v.rate / compiled:.2f}x" if compiled else "-"
            tail = f" {v.rate / hf_eager:.2f}x |" if extra else ""
            print(f"| {v.label} | {v.rate:,.0f} | {v.rate / eager:.2f}x | {vs_c} |{tail}")


def print_decode_table(decode_best, first_call, n, dec_config, dtype_name) -> None:
    hf_dec = decode_best["HF generate (dynamic cache)"]
    print(
        f"\n| decoding, greedy, batch 1, {n} new tokens, ctx {dec_config.context_length}, "
        f"{dtype_name} weights "
        "| tokens/s (best) | vs HF generate "
        "| first call s (round 1) |"
    )
    print("|---|---:|---:|---:|")
    for label, tps in decode_best.items():
        print(f"| {label} | {tps:,.1f} | {tps / hf_dec:.2f}x | {first_call[label][0]:.1f} |")


def time_decoders(runs, rounds: int, n: int, device):
    """Best tokens/s of each decoder over `rounds` interleaved rounds, and its warm-up seconds."""
    decode_best = dict.fromkeys(runs, 0.0)
    first_call: dict[str, list[float]] = {label: [] for label in runs}
    for r in range(rounds if runs else 0):
        for label, run in runs.items():
            decode_best[label] = max(
                decode_best[label], time_decode(run, n, device, first=first_call[label])
            )
        print(f"decode round {r + 1}/{rounds} done", flush=True)
    return decode_best, first_call


# --- the CPU table -------------------------------------------------------------------------------


def main(argv=None) -> None:
    args = parse_args(argv)
    config = TINY if args.quick else TINYSTORIES
    rounds = args.rounds or (1 if args.quick else 3)
    steps = args.steps or (2 if args.quick else 3)
    device, batch = "cpu", args.batch_size
    if not TYPECHECK:
        print("note: TINYLM_TYPECHECK=0 in the environment: 'checks on' rows are really off")
    print(
        f"CPU, {torch.get_num_threads()} threads; torch {torch.__version__}; {config}; batch "
        f"{batch}; {rounds} interleaved rounds x {steps} steps; training: median step over all "
        "rounds, decoding: best round"
    )
    if args.cold_compile:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
    torch.manual_seed(0)
    variants = train_variants(args, config, batch, device)
    seconds = interleave(
        {v.label: v.step for v in variants},
        rounds if variants else 0,
        device,
        steps=steps,
        contexts={v.label: v.context for v in variants},
        on_round=lambda r: print(f"round {r + 1}/{rounds} done"),
    )
    for v in variants:
        v.seconds = seconds[v.label]

    runs, dec_config, n = {}, config, 0
    if not args.train_only:
        n = args.gen_tokens or (16 if args.quick else 128)
        runs, dec_config = decoders(args, config, n)
    decode_best, first_call = time_decoders(runs, rounds, n, device)

    by_label = {v.label: v.rate for v in variants}
    if variants:
        print_train_tables(variants, by_label, batch, config.context_length)
    if runs:
        print_decode_table(decode_best, first_call, n, dec_config, args.decode_dtype)
    if args.json:
        results = {
            "train_tokens_per_s": by_label,
            "decode_tokens_per_s": decode_best,
            "decode_first_call_s": first_call,
        }
        atomic_write(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
