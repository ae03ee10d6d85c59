"""`study accounting`: the handout's resource answers as markdown tables, computed, not typed.

The model tables come from `accounting` (closed forms over `model_stats`); the tokenizer table is
measured here: bytes per token on documents sampled from a corpus (default: the bundled one) and
encoding throughput, with a tokenizer given as a directory (vocab.json + merges.txt) or trained
here on the first MiB of the corpus (vocab 2,000 by default, as train-lm's default run).
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tinylm.apps.accounting import (
    A100_FP32_PEAK_FLOPS,
    GPT2_SIZES,
    activation_floats,
    adamw_step_flops,
    forward_flops,
    gpt2_config,
    largest_batch,
    training_days,
    training_memory,
    with_context,
)
from tinylm.bpe import Tokenizer, train_bpe
from tinylm.nn import model_stats
from tinylm.train import bundled_corpus, load_tokenizer

__all__ = ["PILE_BYTES", "accounting_markdown", "model_tables", "tokenizer_experiment"]

PILE_BYTES = 825e9
SPECIAL = "<|endoftext|>"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _shares(config) -> list[str]:
    groups = forward_flops(config)
    total = sum(groups.values())
    return [f"{total / 1e12:.3f}"] + [f"{100 * v / total:.1f}%" for v in groups.values()]


def model_tables(memory_gb: float = 80.0, batch: int = 1024, steps: int = 400_000) -> list[str]:
    """Markdown lines: parameters, FLOPs and their shares, memory, MFU-days for GPT-2 sizes."""
    configs = {name: gpt2_config(name) for name in GPT2_SIZES}
    groups = list(forward_flops(configs["XL"]))
    lines = ["## Parameters, memory and forward FLOPs (context 1,024, d_ff = 4·d_model)", ""]
    header = ["model", "d/L/heads", "parameters", "fp32 GB", "fwd TFLOPs/seq", *groups]
    rows = []
    for name, c in configs.items():
        p = model_stats(c).params
        shape = f"{c.d_model}/{c.num_layers}/{c.num_heads}"
        rows.append([f"GPT-2 {name}", shape, f"{p:,}", f"{4 * p / 1e9:.2f}", *_shares(c)])
    lines += [*_table(header, rows), ""]

    xl = configs["XL"]
    lines += ["## GPT-2 XL at context 16,384", ""]
    rows = [[f"{t:,}", *_shares(with_context(xl, t))] for t in (1024, 16_384)]
    lines += _table(["context", "fwd TFLOPs/seq", *groups], rows)
    ratio = sum(forward_flops(with_context(xl, 16_384)).values()) / sum(forward_flops(xl).values())
    lines += ["", f"16× the context costs {ratio:.1f}× the forward FLOPs per sequence.", ""]

    lines += [f"## AdamW training memory (fp32) and the largest batch in {memory_gb:g} GB", ""]
    header = ["model", "params+grads+moments GB", "activations GB/sequence", "largest batch"]
    rows = []
    for name, c in configs.items():
        fixed = training_memory(c, 0)["total"] / 1e9
        per_seq = 4 * activation_floats(c) / 1e9
        rows.append(
            [
                f"GPT-2 {name}",
                f"{fixed:.2f}",
                f"{per_seq:.3f}",
                f"{largest_batch(c, memory_gb * 1e9)}",
            ]
        )
    lines += _table(header, rows)
    split = training_memory(xl, 1)
    lines += [
        "",
        "GPT-2 XL, batch 1: " + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in split.items()),
        f"(peak GB = {4 * activation_floats(xl) / 1e9:.3f}·batch + "
        f"{training_memory(xl, 0)['total'] / 1e9:.2f}).",
        "",
    ]

    lines += [f"## AdamW step FLOPs and days for {steps:,} steps at batch {batch:,}", ""]
    header = ["model", "PFLOPs/step", "days at 50% MFU on one A100"]
    rows = []
    for name, c in configs.items():
        flops = adamw_step_flops(c, batch)
        rows.append(
            [f"GPT-2 {name}", f"{flops / 1e15:.1f}", f"{training_days(c, batch, steps):,.0f}"]
        )
    lines += _table(header, rows)
    lines += [
        "",
        f"A100 fp32 peak {A100_FP32_PEAK_FLOPS / 1e12:g} TFLOP/s; a step = 3× the forward "
        "matmuls (backward is two forwards) + 14 FLOPs per parameter for the AdamW update.",
        "",
    ]
    return lines


def tokenizer_experiment(
    tokenizer: Tokenizer,
    text: str,
    *,
    documents: int = 10,
    throughput_bytes: int = 1 << 20,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Bytes per token on `documents` sampled documents; encoding bytes/s on a slice of `text`."""
    docs = [d for d in text.split(SPECIAL) if d.strip()]
    sample = random.Random(seed).sample(docs, min(documents, len(docs)))
    n_bytes = sum(len(d.encode()) for d in sample)
    n_tokens = sum(len(tokenizer.encode(d)) for d in sample)
    chunk = text.encode()[:throughput_bytes].decode(errors="ignore")
    start = clock()
    tokenizer.encode(chunk)
    seconds = max(clock() - start, 1e-9)
    rate = len(chunk.encode()) / seconds
    return {
        "documents": len(sample),
        "bytes_per_token": n_bytes / max(n_tokens, 1),
        "bytes_per_second": rate,
        "pile_days": PILE_BYTES / rate / 86_400,
        "timed_bytes": len(chunk.encode()),
    }


def accounting_markdown(
    tokenizer_dir: str | None = None,
    corpus: str | None = None,
    *,
    vocab_size: int = 2000,
    log=print,
) -> str:
    """The whole accounting report as markdown."""
    lines = ["# Resource accounting (CS336 assignment 1)", ""]
    lines += [
        "Computed by `tinylm.apps.accounting` from `model_stats` and the formulas in its module "
        "doc: SwiGLU FFN (three matrices), untied lm_head, vocab 50,257, d_ff = 4·d_model.",
        "",
    ]
    lines += model_tables()
    path = Path(corpus) if corpus else bundled_corpus("openprose")
    text = path.read_text(encoding="utf-8", errors="ignore")
    if tokenizer_dir:
        tokenizer, where = load_tokenizer(tokenizer_dir, (SPECIAL,)), f"`{tokenizer_dir}`"
    else:
        log(f"accounting: training a {vocab_size}-token BPE on the first MiB of {path.name}")
        with tempfile.TemporaryDirectory() as tmp:
            head = Path(tmp) / "head.txt"
            head.write_bytes(text.encode()[: 1 << 20])
            vocab, merges = train_bpe(head, vocab_size, [SPECIAL])
        tokenizer = Tokenizer(vocab, merges, [SPECIAL])
        where = f"trained here: {vocab_size:,} tokens on the first MiB of `{path.name}`"
    r = tokenizer_experiment(tokenizer, text)
    lines += ["## Tokenizer experiments", ""]
    lines += _table(
        ["tokenizer", "bytes/token", "throughput", "825 GB Pile at that rate"],
        [
            [
                where,
                f"{r['bytes_per_token']:.2f} ({r['documents']} sampled documents)",
                f"{r['bytes_per_second'] / 1e6:.2f} MB/s (one process, {r['timed_bytes']:,} B)",
                f"{r['pile_days']:.1f} days",
            ]
        ],
    )
    lines += ["", f"Corpus: `{path}`. Throughput measured on this machine, single process.", ""]
    return "\n".join(lines)
