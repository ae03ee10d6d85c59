"""Benchmark tinylm.bpe against HF `tokenizers` (training) and tiktoken (encoding).

    uv run python bench/bpe_bench.py [--input PATH] [--vocab-size 10000] [--profile]

Everything is measured in one run on the same text and printed as a markdown table of ratios:

* training: our `train_bpe` vs HF `BpeTrainer` (GPT-2 split regex + ByteLevel, same vocab size,
  `<|endoftext|>` special). Each trainer runs in its own subprocess, so peak RSS is per trainer
  (the child's own peak plus that of its worker processes).
* encoding, one process: `Tokenizer.encode` vs tiktoken's `gpt2` encoding (built offline from the
  GPT-2 fixture files), both handling `<|endoftext|>`. "cold" is a fresh tokenizer's first pass,
  "warm" a second pass (our per-pre-token cache filled, as it is for most of a large file).
* encoding, all cores: `encode_file` vs tiktoken `encode_batch(num_threads=cpu_count)` over the
  same chunks, both reading the file and writing a .npy.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = ROOT / "packages/train/src/tinylm/train/data/openprose_4M.txt"
FIXTURES = ROOT / "packages/bpe/tests/fixtures"
EOT = "<|endoftext|>"


def _peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) * (1 if sys.platform == "darwin" else 1024) / 2**20


def _train_child(which: str, input_path: str, vocab_size: int) -> None:
    """Runs in a subprocess: train once, print {"seconds": ..., "peak_mib": ...} as JSON."""
    if which == "ours":
        from tinylm.bpe import train_bpe

        start = time.perf_counter()
        vocab, _ = train_bpe(input_path, vocab_size, [EOT])
        seconds = time.perf_counter() - start
    else:
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

        from tinylm.bpe import GPT2_PATTERN

        start = time.perf_counter()
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train([input_path], trainer)
        seconds = time.perf_counter() - start
        vocab = tokenizer.get_vocab()
    print(json.dumps({"seconds": seconds, "peak_mib": _peak_rss_mib(), "vocab": len(vocab)}))


def _run_trainer(which: str, input_path: Path, vocab_size: int) -> dict:
    command = [sys.executable, __file__, "--_train-child", which, "--input", str(input_path)]
    command += ["--vocab-size", str(vocab_size)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _tiktoken_gpt2():
    import tiktoken

    from tinylm.bpe import GPT2_PATTERN, bytes_to_unicode

    byte_of = {char: b for b, char in bytes_to_unicode().items()}
    vocab = json.loads((FIXTURES / "gpt2_vocab.json").read_text(encoding="utf-8"))
    ranks = {
        bytes(byte_of[c] for c in token): rank for token, rank in vocab.items() if token != EOT
    }
    return tiktoken.Encoding(
        name="gpt2-offline",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={EOT: 50256},
    )


def _gpt2_ours():
    from tinylm.bpe import Tokenizer

    return Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT])


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _encode_single(input_path: Path) -> list[tuple]:
    text = input_path.read_text(encoding="utf-8")
    megabytes = len(text.encode()) / 1e6
    encoding = _tiktoken_gpt2()
    theirs, their_seconds = _timed(lambda: encoding.encode(text, allowed_special="all"))
    ours_tokenizer = _gpt2_ours()
    ours, cold_seconds = _timed(lambda: ours_tokenizer.encode(text))
    _, warm_seconds = _timed(lambda: ours_tokenizer.encode(text))
    assert ours == theirs, "ids differ from tiktoken"
    peer = megabytes / their_seconds
    return [
        ("encode, 1 process, cold (MB/s)", megabytes / cold_seconds, peer, ">= 0.4"),
        ("encode, 1 process, warm (MB/s)", megabytes / warm_seconds, peer, ">= 0.4"),
    ]


def _encode_parallel(input_path: Path) -> list[tuple]:
    from tinylm.bpe import find_chunk_boundaries

    cores = os.cpu_count() or 1
    megabytes = input_path.stat().st_size / 1e6
    encoding = _tiktoken_gpt2()
    ours_tokenizer = _gpt2_ours()
    with tempfile.TemporaryDirectory() as tmp:

        def tiktoken_file():
            bounds = find_chunk_boundaries(input_path, 4 * cores, [EOT])
            with open(input_path, "rb") as f:
                chunks = [f.read(end - start).decode() for start, end in itertools.pairwise(bounds)]
            batches = encoding.encode_batch(chunks, num_threads=cores, allowed_special="all")
            ids = np.concatenate([np.asarray(b, dtype=np.uint16) for b in batches])
            np.save(Path(tmp) / "tiktoken.npy", ids)
            return ids

        theirs, their_seconds = _timed(tiktoken_file)
        ours, our_seconds = _timed(
            lambda: ours_tokenizer.encode_file(
                input_path, Path(tmp) / "ours.npy", num_workers=cores
            )
        )
        assert np.array_equal(ours, theirs), "ids differ from tiktoken"
    return [
        (
            f"encode_file, {cores} processes (MB/s)",
            megabytes / our_seconds,
            megabytes / their_seconds,
            ">= 0.7",
        )
    ]


def _train_rows(input_path: Path, vocab_size: int) -> list[tuple]:
    ours = _run_trainer("ours", input_path, vocab_size)
    theirs = _run_trainer("hf", input_path, vocab_size)
    return [
        (f"train wall time, vocab {vocab_size} (s)", ours["seconds"], theirs["seconds"], "<= 1.5"),
        ("train peak RSS (MiB)", ours["peak_mib"], theirs["peak_mib"], "<= 2.0"),
    ]


def _passes(ratio: float, target: str) -> bool:
    op, bound = target.split()
    return ratio <= float(bound) if op == "<=" else ratio >= float(bound)


def _profile(input_path: Path, vocab_size: int) -> None:
    from tinylm.bpe import train_bpe

    text = input_path.read_text(encoding="utf-8")
    tokenizer = _gpt2_ours()
    # What one of `encode_file`'s 2 workers does: a cold encode of half of the file.
    half = _gpt2_ours()
    for title, call in [
        (
            "train_bpe (num_workers=1)",
            lambda: train_bpe(input_path, vocab_size, [EOT], num_workers=1),
        ),
        ("Tokenizer.encode, cold", lambda: tokenizer.encode(text)),
        ("Tokenizer.encode, warm", lambda: tokenizer.encode(text)),
        ("Tokenizer.encode of half the file, cold (one worker's share)",
         lambda: half.encode(text[: len(text) // 2])),
    ]:  # fmt: skip
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.runcall(call)
        seconds = time.perf_counter() - start
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(10)
        print(f"\n### cProfile: {title} ({seconds:.2f} s under the profiler)")
        print(f"```\n{out.getvalue().strip()}\n```")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--vocab-size", type=int, default=10_000)
    parser.add_argument("--profile", action="store_true", help="also print cProfile top functions")
    parser.add_argument("--_train-child", choices=["ours", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._train_child:
        _train_child(args._train_child, str(args.input), args.vocab_size)
        return

    size_mb = args.input.stat().st_size / 1e6
    load = os.getloadavg()[0]
    print(f"input {args.input} ({size_mb:.1f} MB), {os.cpu_count()} cores, load {load:.2f}\n")
    rows = _train_rows(args.input, args.vocab_size)
    rows += _encode_single(args.input)
    rows += _encode_parallel(args.input)
    print("| metric | ours | peer | ratio | target | pass |")
    print("|---|---|---|---|---|---|")
    for name, ours, peer, target in rows:
        ratio = ours / peer
        verdict = "pass" if _passes(ratio, target) else "FAIL"
        print(f"| {name} | {ours:.2f} | {peer:.2f} | {ratio:.2f} | {target} | {verdict} |")
    print("\npeers: HF tokenizers BpeTrainer (training), tiktoken gpt2 (encoding)")
    if args.profile:
        _profile(args.input, args.vocab_size)


if __name__ == "__main__":
    main()
