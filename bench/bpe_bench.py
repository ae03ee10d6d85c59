"""Benchmark tinylm.bpe against HF `tokenizers` (training) and tiktoken (encoding).

    uv run python bench/bpe_bench.py [--input PATH] [--vocab-size 10000] [--profile]

Everything is measured in one run on the same text and printed as a markdown table of ratios:

* training: our `train_bpe`, native and reference (TINYLM_BPE_NATIVE=0) paths, vs HF
  `BpeTrainer` (GPT-2 split regex + ByteLevel, same vocab size, `<|endoftext|>` special). Each
  trainer runs in its own subprocess, so peak RSS is per trainer (the child's own peak plus that
  of its worker processes); `--train-runs N` rounds (the three trainers in turn), medians with
  min-max, ratios to HF taken within each round. `--make-input MB` writes a corpus of that size
  by repeating the repository's corpora; `--scaling 50,200,500` trains once on each such size.
* encoding (`--encode-mb 5` MB of the repository's prose, or `--encode-input PATH`), native and
  reference paths vs tiktoken's `gpt2` encoding (built offline from the GPT-2 fixture files):
  `encode` single-threaded, "cold" (a fresh tokenizer's first pass) and "warm" (a second pass,
  our per-pre-token cache filled); `encode_batch` over the text's documents vs
  `encode_ordinary_batch`, and `encode_file` vs tiktoken's batch encoder over the same chunks
  (reading the file, writing a .npy), both with `--threads 2`. `--encode-runs N` rounds, each
  row's peer measured right beside it; medians with min-max, ratios taken within each round.
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


def _gpt2(native_on: bool):
    """GPT-2 with <|endoftext|>, built on the native core or on the reference path."""
    from tinylm.bpe import Tokenizer

    old = os.environ.get("TINYLM_BPE_NATIVE")
    os.environ["TINYLM_BPE_NATIVE"] = "1" if native_on else "0"
    try:
        tokenizer = Tokenizer.from_files(
            FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT]
        )
    finally:
        os.environ["TINYLM_BPE_NATIVE"] = old if old is not None else "1"
    assert tokenizer.is_native == native_on, "native core not built: run `uv sync`"
    return tokenizer


def _encode_round(path: Path, text: str, docs: list[str], tmp: Path, threads: int) -> dict:
    """One round of every encoding measurement (seconds), each peer right beside ours."""
    from tinylm.bpe import encode_file, find_chunk_boundaries

    encoding = _tiktoken_gpt2()
    encoding.encode("warm up tiktoken's regex")
    t = {}
    theirs, t["tiktoken"] = _timed(lambda: encoding.encode(text, allowed_special="all"))
    for name, native_on in (("native", True), ("reference", False)):
        tokenizer = _gpt2(native_on)
        ours, t[f"{name} cold"] = _timed(lambda: tokenizer.encode(text))  # noqa: B023
        _, t[f"{name} warm"] = _timed(lambda: tokenizer.encode(text))  # noqa: B023
        assert ours == theirs, f"{name} ids differ from tiktoken"
    theirs, t["tiktoken batch"] = _timed(
        lambda: encoding.encode_ordinary_batch(docs, num_threads=threads)
    )
    tokenizer = _gpt2(True)
    ours, t["native batch"] = _timed(lambda: tokenizer.encode_batch(docs, num_threads=threads))
    assert ours == theirs, "encode_batch ids differ from tiktoken"

    def tiktoken_file():  # what encode_file does: read, cut, encode in threads, write a .npy
        bounds = find_chunk_boundaries(path, 4 * threads, [EOT])
        with open(path, "rb") as f:
            chunks = [f.read(end - start).decode() for start, end in itertools.pairwise(bounds)]
        batches = encoding.encode_batch(chunks, num_threads=threads, allowed_special="all")
        ids = np.concatenate([np.asarray(b, dtype=np.uint16) for b in batches])
        np.save(tmp / "tiktoken.npy", ids)
        return ids

    theirs, t["tiktoken file"] = _timed(tiktoken_file)
    for name, native_on in (("native", True), ("reference", False)):
        tokenizer = _gpt2(native_on)
        ours, t[f"{name} file"] = _timed(
            lambda: encode_file(tokenizer, path, tmp / "ours.npy", num_workers=threads)  # noqa: B023
        )
        assert np.array_equal(ours, theirs), f"{name} encode_file ids differ from tiktoken"
    return t


# (row, ours, peer, target): keys of _encode_round's timings
_ENCODE_ROWS = [
    ("encode, native, cold", "native cold", "tiktoken", ">= 2.0"),
    ("encode, native, warm", "native warm", "tiktoken", ">= 2.0"),
    ("encode, reference, cold", "reference cold", "tiktoken", ""),
    ("encode, reference, warm", "reference warm", "tiktoken", ""),
    ("encode_batch, native, {n} threads", "native batch", "tiktoken batch", ">= 2.0"),
    ("encode_file, native, {n} threads", "native file", "tiktoken file", ">= 2.0"),
    ("encode_file, reference, {n} processes", "reference file", "tiktoken file", ""),
]


def _encode_table(input_path: Path | None, megabytes: float, runs: int, threads: int) -> None:
    """Encoding: native and reference vs tiktoken gpt2; medians (min–max) over `runs` rounds,
    ratios taken within each round. Peers: `encode` single-threaded; `encode_ordinary_batch`
    over the text's documents (split at <|endoftext|>); tiktoken's batch encoder reading the
    file in chunks and writing a .npy, beside `encode_file`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = input_path or make_input(Path(tmp) / "prose.txt", megabytes)
        text = path.read_text(encoding="utf-8")
        size = len(text.encode("utf-8")) / 1e6
        docs = text.split(EOT)
        rounds = [_encode_round(path, text, docs, Path(tmp), threads) for _ in range(runs)]
    print(f"encoding, {size:.1f} MB of prose, GPT-2, {runs} rounds: median (min–max)\n")
    print("| row | ours MB/s | tiktoken MB/s | ratio | target | pass |")
    print("|---|---|---|---|---|---|")
    for row, ours, peer, target in _ENCODE_ROWS:
        ours_mbs = [size / r[ours] for r in rounds]
        peer_mbs = [size / r[peer] for r in rounds]
        ratios = [r[peer] / r[ours] for r in rounds]
        median = sorted(ratios)[len(ratios) // 2]
        verdict = ("pass" if _passes(median, target) else "FAIL") if target else ""
        print(
            f"| {row.format(n=threads)} | {_median_range(ours_mbs)} | {_median_range(peer_mbs)} "
            f"| {_median_range(ratios)} | {target} | {verdict} |"
        )
    print()


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
    parser.add_argument(
        "--encode-input", type=Path, help="text for the encoding rows (default: --encode-mb MB)"
    )
    parser.add_argument(
        "--encode-mb", type=float, default=5.0, help="size of the encoding text (repo prose)"
    )
    parser.add_argument("--encode-runs", type=int, default=5, help="encoding rounds")
    parser.add_argument("--threads", type=int, default=2, help="threads of the batch/file rows")
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
    _encode_table(args.encode_input, args.encode_mb, args.encode_runs, args.threads)
    if args.profile:
        _profile(args.input, args.vocab_size)


if __name__ == "__main__":
    main()
