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

    uv run --no-sync python bench/nn_bench.py                  # training + decoding, 3 rounds
    uv run --no-sync python bench/nn_bench.py --decode-only    # decoding only
    uv run --no-sync python bench/nn_bench.py --decode-only --decode-dtype bfloat16  # both bf16
    uv run --no-sync python bench/nn_bench.py --quick          # tiny shape, 1 round: smoke test
    uv run --no-sync python bench/nn_bench.py --train-only --headline --rounds 20 --steps 1
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
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from tinylm.nn import (
    TYPECHECK,
    ComputeConfig,
    Linear,
    ModelConfig,
    TransformerLM,
    generate,
    unchecked,
)

TINYSTORIES = ModelConfig(
    vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344
)
TINY = ModelConfig(
    vocab_size=256, context_length=32, d_model=64, num_layers=2, num_heads=4, d_ff=96
)


# --- adapters: one place that knows how kernels are chosen and how HF spells the same model -----


# Kernel sets (tinylm.nn.ComputeConfig; the model's function is the same under each).
REFERENCE = ComputeConfig()  # every op from scratch: naive attention, pointwise, full-logits CE
SDPA = ComputeConfig(attention="sdpa")  # the previous default: only attention fused
FAST = ComputeConfig(attention="sdpa", fused_qkv=True, pointwise="torch", loss="fused_linear")
NAIVE_ATTENTION_FAST = dataclasses.replace(FAST, attention="naive")  # from-scratch attention
# Under torch.compile inductor fuses the full-logits log-softmax itself, and that measured faster
# than the traced chunk loop of "fused_linear" (nn README, loss section): compiled rows use it.
FAST_COMPILED = dataclasses.replace(FAST, loss="fused")
# Compiled under bf16 autocast on a CPU, our from-scratch blocked attention (inductor fuses its
# softmax, AMX runs its bf16 matmuls) beat torch's CPU flash-attention kernel, whose bf16 backward
# is slow: fwd+bwd of one 4x16x256x32 layer 11.2 vs 18.6 ms, whole step +10% (nn README). In fp32
# it measured 3% slower than sdpa, and on CUDA flash attention is the one to use.
FAST_COMPILED_CPU_BF16 = dataclasses.replace(FAST_COMPILED, attention="naive")


def fast_compute(compiled: bool, cpu_bf16: bool = False) -> ComputeConfig:
    """tinylm's fastest kernel set: eager, compiled, or compiled under CPU bf16 autocast."""
    if not compiled:
        return FAST
    return FAST_COMPILED_CPU_BF16 if cpu_bf16 else FAST_COMPILED


def make_tinylm(config: ModelConfig, compute: ComputeConfig = FAST, device=None, dtype=None):
    """TransformerLM on the given kernels."""
    return TransformerLM(config, compute=compute, device=device, dtype=dtype)


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


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# --- timed pieces, shared with bench/gpu_check.py ------------------------------------------------


@dataclasses.dataclass
class TrainVariant:
    """One training setup: `step()` runs forward+loss+backward+optimizer step and returns loss."""

    label: str
    step: object
    tokens_per_step: int
    context: object = contextlib.nullcontext
    table: str = "models"  # which printed table: "models" (same optimizer) or "stacks"
    seconds: list = dataclasses.field(default_factory=list)  # every timed step, all rounds

    @property
    def rate(self) -> float:
        """Tokens/s at the median step time over all rounds."""
        return self.tokens_per_step / statistics.median(self.seconds)


ADAMW_HPARAMS = dict(lr=1e-4, weight_decay=0.1)  # every optimizer below: only the kernel differs


def torch_adamw(params):
    """The models table's optimizer for both: `torch.optim.AdamW` as constructed by default."""
    return torch.optim.AdamW(params, **ADAMW_HPARAMS)


def torch_adamw_fused(params):
    """HF Trainer's default optimizer (`optim="adamw_torch_fused"`, torch >= 2.8)."""
    return torch.optim.AdamW(params, fused=True, **ADAMW_HPARAMS)


def tinylm_adamw(params):
    """train's optimizer: `tinylm.optim.AdamW` with its default kernel for the device."""
    from tinylm.optim import AdamW

    return AdamW(params, **ADAMW_HPARAMS)


def train_step_fn(
    model, kind, config, batch, device, autocast_dtype=None, compiled=False, optimizer=torch_adamw
):
    """A closure doing one optimizer step of `model` ("tinylm" or "hf") on a fixed random batch;
    `optimizer(params)` builds the optimizer."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch, config.context_length + 1), generator=gen)
    x, y = ids[:, :-1].to(device), ids[:, 1:].to(device)
    opt = optimizer(model.parameters())
    runner = torch.compile(model) if compiled else model
    dev_type = torch.device(device).type

    def step() -> Tensor:
        with torch.autocast(dev_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            if kind == "hf":
                logits = runner(input_ids=x).logits
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            else:
                loss = runner(x, targets=y)  # the ComputeConfig's loss kernel
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return step


def time_steps(step, steps: int, device, context=contextlib.nullcontext) -> float:
    """Seconds per step, median of `steps` (after one warm-up step)."""
    return statistics.median(step_times(step, steps, device, context))


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


def decode_fn(model, kind, prompt, new_tokens, **kwargs):
    """A closure that greedily decodes `new_tokens` tokens after `prompt` (batch 1); `kwargs` go
    to HF `generate` or to `tinylm.nn.generate` (e.g. `compile=True`)."""
    if kind == "hf":

        def run():
            with torch.no_grad():
                return model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    do_sample=False,
                    pad_token_id=0,
                    **kwargs,
                )

    else:

        def run():
            return generate(model, prompt[0], new_tokens, temperature=0, **kwargs)

    return run


def time_decode(run, new_tokens: int, device, context=contextlib.nullcontext, first=None) -> float:
    """Tokens/s of one call after a warm-up call (compilation, where there is one); the warm-up's
    seconds are appended to `first` when given."""
    with context():
        start = time.perf_counter()
        run()
        sync(device)
        if first is not None:
            first.append(time.perf_counter() - start)
        start = time.perf_counter()
        out = run()
        sync(device)
    assert out.shape[-1] >= new_tokens
    return new_tokens / (time.perf_counter() - start)


def weight_floor_fn(model, new_tokens: int):
    """The memory floor of batch-1 decoding: per token, one vector times every weight matrix of
    `model` (blocks and lm_head; no attention, norms or Python modules). fp32 weights that do not
    fit in cache stream from RAM once per token, whatever the framework."""
    weights = [m.weight.detach() for m in model.modules() if isinstance(m, Linear)]
    inputs = {w.shape[1]: torch.randn(1, w.shape[1], dtype=w.dtype) for w in weights}

    def run():
        with torch.no_grad():
            for _ in range(new_tokens):
                for w in weights:
                    inputs[w.shape[1]] @ w.t()
        return torch.empty(1, new_tokens)

    return run


def hf_static_compiled_kwargs() -> dict:
    """HF `generate` kwargs: static cache, compiled forward even on CPU (HF compiles by itself
    only on accelerators; `_compile_all_devices` is its documented testing switch)."""
    from transformers import CompileConfig

    config = CompileConfig(mode="default", fullgraph=True, dynamic=False)
    config._compile_all_devices = True
    return {"cache_implementation": "static", "compile_config": config}


# The eager rows behind the CPU targets; `--headline` builds and times only these (7 rows instead
# of 20 alternate, so each row's steps are closer together in time).
HEADLINE = (
    "HF Llama eager (sdpa)",
    "tinylm eager fast (train default), checks on",
    "tinylm eager fast + tinylm AdamW, checks on",
    "tinylm eager from-scratch attention + fast ops + tinylm AdamW, checks on",
    "HF Llama eager + AdamW(fused=True)",
    "tinylm eager fast + tinylm AdamW, bf16 autocast",
    "HF Llama eager + AdamW(fused=True), bf16 autocast",
)


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


# --- the CPU table -------------------------------------------------------------------------------


def main() -> None:
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
    args = parser.parse_args()
    config = TINY if args.quick else TINYSTORIES
    rounds = args.rounds or (1 if args.quick else 3)
    steps = args.steps or (2 if args.quick else 3)
    device = "cpu"
    batch = args.batch_size
    tokens = batch * config.context_length
    if not TYPECHECK:
        print("note: TINYLM_TYPECHECK=0 in the environment: 'checks on' rows are really off")
    print(
        f"CPU, {torch.get_num_threads()} threads; torch {torch.__version__}; {config}; batch "
        f"{batch}; {rounds} interleaved rounds x {steps} steps; training: median step over all "
        "rounds, decoding: best round"
    )

    variants: list[TrainVariant] = []

    def add(
        label,
        kind,
        compute=None,
        *,
        context=contextlib.nullcontext,
        compiled=False,
        optimizer=torch_adamw,
        autocast_dtype=None,
    ):
        """One training row: builds its model ("tinylm" under `compute`, default the fast set
        for eager or compiled, or "hf") unless `--headline` leaves the row out."""
        if args.headline and label not in HEADLINE:
            return
        compute = compute or fast_compute(compiled)
        model = make_tinylm(config, compute) if kind == "tinylm" else make_hf(config)
        step = train_step_fn(
            model, kind, config, batch, device, autocast_dtype, compiled, optimizer
        )
        table = "models" if optimizer is torch_adamw else "stacks"
        variants.append(TrainVariant(label, step, tokens, context, table))

    if args.cold_compile:
        import torch._inductor.config as inductor_config

        inductor_config.force_disable_caches = True
    torch.manual_seed(0)
    bf16 = torch.bfloat16  # autocast (this CPU has avx512_bf16): each side's fastest eager path
    if not args.decode_only:
        for label, compute in (
            ("every op from scratch", REFERENCE),
            ("sdpa only (previous default)", SDPA),
            ("from-scratch attention + fast ops", NAIVE_ATTENTION_FAST),
            ("fast (train default)", FAST),
        ):
            add(f"tinylm eager {label}, checks on", "tinylm", compute)
            add(f"tinylm eager {label}, checks off", "tinylm", compute, context=unchecked)
        add("HF Llama eager (sdpa)", "hf")
        add("tinylm eager fast + tinylm AdamW, checks on", "tinylm", optimizer=tinylm_adamw)
        add(
            "tinylm eager from-scratch attention + fast ops + tinylm AdamW, checks on",
            "tinylm",
            NAIVE_ATTENTION_FAST,
            optimizer=tinylm_adamw,
        )
        add("HF Llama eager + AdamW(fused=True)", "hf", optimizer=torch_adamw_fused)
        add(
            "tinylm eager fast + tinylm AdamW, bf16 autocast",
            "tinylm",
            optimizer=tinylm_adamw,
            autocast_dtype=bf16,
        )
        add(
            "HF Llama eager + AdamW(fused=True), bf16 autocast",
            "hf",
            optimizer=torch_adamw_fused,
            autocast_dtype=bf16,
        )
    if not args.no_compile and not args.decode_only:
        add("tinylm compiled fast", "tinylm", compiled=True)
        add("HF Llama compiled (sdpa)", "hf", compiled=True)
        add("tinylm compiled fast + tinylm AdamW", "tinylm", compiled=True, optimizer=tinylm_adamw)
        add(
            "HF Llama compiled + AdamW(fused=True)",
            "hf",
            compiled=True,
            optimizer=torch_adamw_fused,
        )
        # Each side's fastest path on a CPU with bf16 matmuls: compiled under bf16 autocast
        # (tinylm's with sdpa too, to show what the from-scratch attention gains there).
        add(
            "tinylm compiled fast + tinylm AdamW, bf16 autocast",
            "tinylm",
            compiled=True,
            optimizer=tinylm_adamw,
            autocast_dtype=bf16,
        )
        add(
            "tinylm compiled fast, from-scratch attention + tinylm AdamW, bf16 autocast",
            "tinylm",
            fast_compute(compiled=True, cpu_bf16=True),
            compiled=True,
            optimizer=tinylm_adamw,
            autocast_dtype=bf16,
        )
        add(
            "HF Llama compiled + AdamW(fused=True), bf16 autocast",
            "hf",
            compiled=True,
            optimizer=torch_adamw_fused,
            autocast_dtype=bf16,
        )

    for r in range(rounds if variants else 0):
        for v in variants:
            v.seconds += step_times(v.step, steps, device, v.context, warmup=r == 0)
        print(f"round {r + 1}/{rounds} done")

    decoders: dict = {}
    if not args.train_only:
        prompt = torch.randint(
            0, config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(1)
        )
        n = args.gen_tokens or (16 if args.quick else 128)
        # Room for prompt + n tokens, so every timed token is a decode step (past the window tinylm
        # re-encodes it each token, HF runs RoPE past its table: two different workloads).
        dec_config = dataclasses.replace(
            config, context_length=max(config.context_length, prompt.shape[1] + n)
        )
        torch.manual_seed(0)
        dec_dtype = getattr(torch, args.decode_dtype)
        tiny_sdpa = make_tinylm(dec_config, FAST, dtype=dec_dtype).eval()
        hf = make_hf(dec_config, dtype=dec_dtype).eval()
        decoders = {
            "tinylm generate, eager": decode_fn(tiny_sdpa, "tinylm", prompt, n, compile=False),
            "HF generate (dynamic cache)": decode_fn(hf, "hf", prompt, n),
            "HF generate (static cache)": decode_fn(
                hf, "hf", prompt, n, cache_implementation="static"
            ),
            "floor: the weight matvecs alone": weight_floor_fn(tiny_sdpa, n),
        }
        if not args.no_compile:
            decoders["tinylm generate, compiled step"] = decode_fn(
                tiny_sdpa, "tinylm", prompt, n, compile=True
            )
            try:
                hf_compiled_kwargs = hf_static_compiled_kwargs()
            except ImportError:  # transformers without CompileConfig (< 4.47)
                print("note: this transformers has no CompileConfig: no HF static + compile row")
            else:
                decoders["HF generate (static cache + compile)"] = decode_fn(
                    hf, "hf", prompt, n, **hf_compiled_kwargs
                )
    decode_best = dict.fromkeys(decoders, 0.0)
    first_call: dict[str, list[float]] = {label: [] for label in decoders}
    for r in range(rounds if decoders else 0):
        for label, run in decoders.items():
            decode_best[label] = max(
                decode_best[label], time_decode(run, n, device, first=first_call[label])
            )
        print(f"decode round {r + 1}/{rounds} done", flush=True)

    by_label = {v.label: v.rate for v in variants}
    if variants:
        print_train_tables(variants, by_label, batch, config.context_length)
    if decoders:
        hf_dec = decode_best["HF generate (dynamic cache)"]
        print(
            f"\n| decoding, greedy, batch 1, {n} new tokens, ctx {dec_config.context_length}, "
            f"{args.decode_dtype} weights "
            "| tokens/s (best) | vs HF generate "
            "| first call s (round 1) |"
        )
        print("|---|---:|---:|---:|")
        for label, tps in decode_best.items():
            print(f"| {label} | {tps:,.1f} | {tps / hf_dec:.2f}x | {first_call[label][0]:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "train_tokens_per_s": by_label,
                    "decode_tokens_per_s": decode_best,
                    "decode_first_call_s": first_call,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
