"""Benchmark tinylm.bpe against HF `tokenizers` (training) and tiktoken (encoding).

    uv run python bench/bpe_bench.py [--input PATH] [--vocab-size 10000] [--profile]

Everything is measured in one run on the same text and printed as a markdown table of ratios:

* training: our `train_bpe`, native and reference (TINYLM_BPE_NATIVE=0) paths, vs HF
  `BpeTrainer` (GPT-2 split regex + ByteLevel, same vocab size, `<|endoftext|>` special). Each
  trainer runs in its own subprocess, so peak RSS is per trainer (the child's own peak plus that
  of its worker processes); `--train-runs N` rounds (the three trainers in turn), medians with
  min-max, ratios to HF taken within each round. `--make-input MB` writes a corpus of that size
  by repeating the repository's corpora; `--scaling 50,200,500` trains once on each such size.
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
    """Runs in a subprocess: train once, print {"seconds": ..., "peak_mib": ...} as JSON.

    "native" / "reference": our train_bpe on that path (the parent sets TINYLM_BPE_NATIVE)."""
    if which in ("native", "reference"):
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


TRAINERS = ("hf", "native", "reference")
# Repository corpora repeated to the sizes of --make-input / --scaling (distinct pre-tokens stay
# those of the ~4.3 MB base text, whatever the size).
_BASE_CORPORA = [DEFAULT_INPUT, FIXTURES / "corpus.en", FIXTURES / "tinystories_sample.txt"]


def _run_trainer(which: str, input_path: Path, vocab_size: int) -> dict:
    command = [sys.executable, __file__, "--_train-child", which, "--input", str(input_path)]
    command += ["--vocab-size", str(vocab_size)]
    env = {**os.environ, "TINYLM_BPE_NATIVE": "0" if which == "reference" else "1"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_input(path: Path, megabytes: float) -> Path:
    """Write `megabytes` MB of text: the repository's corpora concatenated and repeated."""
    base = b"".join(p.read_bytes() for p in _BASE_CORPORA)
    size = int(megabytes * 1e6)
    with open(path, "wb") as f:
        for _ in range(size // len(base)):
            f.write(base)
        rest = base[: size % len(base)]
        f.write(rest[: rest.rfind(b" ") + 1] if b" " in rest else rest)  # end between words
    return path


def _median_range(values: list[float]) -> str:
    values = sorted(values)
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return (
        f"{median:.2f} ({values[0]:.2f}–{values[-1]:.2f})" if len(values) > 1 else f"{median:.2f}"
    )


def _train_table(input_path: Path, vocab_size: int, runs: int) -> None:
    """Rounds of (HF, native, reference), each in its own process; medians, min-max, ratios."""
    results = {which: [] for which in TRAINERS}
    for _ in range(runs):
        for which in TRAINERS:
            results[which].append(_run_trainer(which, input_path, vocab_size))
    hf = results["hf"]
    print(f"training, vocab {vocab_size}, {runs} rounds: median (min–max)\n")
    print("| trainer | wall time (s) | vs HF | peak RSS (MiB) | vs HF | target |")
    print("|---|---|---|---|---|---|")
    for which in TRAINERS:
        rows = results[which]
        seconds = [r["seconds"] for r in rows]
        mib = [r["peak_mib"] for r in rows]
        time_ratio = [r["seconds"] / h["seconds"] for r, h in zip(rows, hf, strict=True)]
        rss_ratio = [r["peak_mib"] / h["peak_mib"] for r, h in zip(rows, hf, strict=True)]
        target = "<= 0.5x time, <= 1.0x RSS" if which == "native" else ""
        print(
            f"| {which} | {_median_range(seconds)} | {_median_range(time_ratio)} "
            f"| {_median_range(mib)} | {_median_range(rss_ratio)} | {target} |"
        )
    print()


def _scaling_table(sizes_mb: list[float], vocab_size: int) -> None:
    """One run per trainer and size on repeated repository text (a table, not a test)."""
    print(f"scaling, vocab {vocab_size}, one run each (text: the repo's corpora repeated)\n")
    print("| MB | HF s | HF MiB | native s | native MiB | reference s | reference MiB |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for megabytes in sizes_mb:
            path = make_input(Path(tmp) / f"text_{megabytes:g}MB.txt", megabytes)
            cells = [f"{megabytes:g}"]
            for which in TRAINERS:
                r = _run_trainer(which, path, vocab_size)
                cells += [f"{r['seconds']:.1f}", f"{r['peak_mib']:.0f}"]
            path.unlink()
            print("| " + " | ".join(cells) + " |", flush=True)
    print()


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
    parser.add_argument("--_train-child", choices=TRAINERS, help=argparse.SUPPRESS)
    parser.add_argument("--train-runs", type=int, default=3, help="training rounds (0: none)")
    parser.add_argument("--scaling", help="comma-separated MB sizes for the training scaling table")
    parser.add_argument("--train-only", action="store_true", help="skip the encoding rows")
    parser.add_argument("--make-input", type=float, metavar="MB", help="write --input and exit")
    args = parser.parse_args(argv)
    if args._train_child:
        _train_child(args._train_child, str(args.input), args.vocab_size)
        return
    if args.make_input:
        make_input(args.input, args.make_input)
        return
    if args.scaling:  # its own mode: the table, then exit
        _scaling_table([float(x) for x in args.scaling.split(",")], args.vocab_size)
        return

    size_mb = args.input.stat().st_size / 1e6
    load = os.getloadavg()[0]
    print(f"input {args.input} ({size_mb:.1f} MB), {os.cpu_count()} cores, load {load:.2f}\n")
    if args.train_runs:
        _train_table(args.input, args.vocab_size, args.train_runs)
    if args.train_only:
        return
    rows = _encode_single(args.input)
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
