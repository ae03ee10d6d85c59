"""Command-line entry points `bpe-train` and `bpe-encode` (thin wrappers over the library)."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from tinylm.bpe import native
from tinylm.bpe.tokenizer import Tokenizer
from tinylm.bpe.train import train_bpe

DEFAULT_SPECIAL_TOKENS = ["<|endoftext|>"]


def peak_rss_mib() -> float:
    """Peak resident memory of this process and of its (waited-for) children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return (own + children) * scale / 2**20


def _path_line(core: str) -> str:
    """Which implementation ran: the compiled `core` module, or the pure-Python reference."""
    if native.load(core) is not None:
        return "path         native (compiled core)"
    return "path         reference (pure Python; TINYLM_BPE_NATIVE=0 or the core is not built)"


def _run(main, argv) -> int:
    try:
        main(argv)
    except (FileNotFoundError, ValueError, OSError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows each option's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _out_dir(path: Path) -> None:
    """Refuse an --out-dir that cannot become a directory before any work is done."""
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise NotADirectoryError(f"--out-dir {path}: {part} is a file, not a directory")
            return


def _not_an_input(output: Path, **inputs: Path) -> None:
    """Refuse an output that is one of the inputs (the same file, also through a link): the
    atomic replace would destroy the input."""
    for name, path in inputs.items():
        if output.exists() and path.exists() and os.path.samefile(output, path):
            raise ValueError(f"output {output} is the {name} file {path}; choose another output")


def _train(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(
        prog="bpe-train",
        description="Train a byte-level BPE tokenizer on a UTF-8 text file.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("input", type=Path, help="training text (UTF-8)")
    parser.add_argument("--vocab-size", type=int, required=True, help="including special tokens")
    parser.add_argument(
        "--special-tokens",
        nargs="*",
        default=DEFAULT_SPECIAL_TOKENS,
        metavar="TOKEN",
        help="special tokens, given ids after the merged tokens",
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="gets vocab.json, merges.txt")
    parser.add_argument("--num-workers", type=int, default=None, help="(default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument(
        "--errors",
        choices=("strict", "replace"),
        default="strict",
        help="invalid UTF-8: strict = error naming the byte offset, replace = U+FFFD",
    )
    args = parser.parse_args(argv)
    _out_dir(args.out_dir)
    vocab_path, merges_path = args.out_dir / "vocab.json", args.out_dir / "merges.txt"
    _not_an_input(vocab_path, input=args.input)
    _not_an_input(merges_path, input=args.input)

    start = time.perf_counter()
    vocab, merges = train_bpe(
        args.input,
        args.vocab_size,
        args.special_tokens,
        num_workers=args.num_workers,
        progress=not args.no_progress,
        errors=args.errors,
    )
    elapsed = time.perf_counter() - start
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(vocab, merges, args.special_tokens)
    tokenizer.save(vocab_path, merges_path)

    special = set(tokenizer.special_tokens)
    longest = max(
        (t for t in vocab.values() if t.decode("utf-8", "replace") not in special),
        key=len,
        default=b"",
    )
    print(f"vocab size   {len(vocab)} ({len(merges)} merges)")
    print(f"elapsed      {elapsed:.2f} s")
    print(f"peak memory  {peak_rss_mib():.0f} MiB (self + workers)")
    print(f"longest      {len(longest)} bytes: {longest.decode('utf-8', 'replace')!r}")
    print(_path_line("_train_core"))
    print(f"wrote        {vocab_path} and {merges_path}")


def _encode(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(
        prog="bpe-encode",
        description="Encode a UTF-8 text file to a .npy array of token ids.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--vocab", type=Path, required=True, help="vocab.json")
    parser.add_argument("--merges", type=Path, required=True, help="merges.txt")
    parser.add_argument(
        "--special-tokens",
        nargs="*",
        default=DEFAULT_SPECIAL_TOKENS,
        metavar="TOKEN",
        help="special tokens, as given to bpe-train",
    )
    parser.add_argument("input", type=Path, help="text to encode (UTF-8)")
    parser.add_argument("output", type=Path, help="destination .npy")
    parser.add_argument(
        "--num-threads",
        "--num-workers",
        dest="num_workers",
        type=int,
        default=None,
        help="threads (native core; processes on the reference path) (default: all cores)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    _not_an_input(args.output, input=args.input, vocab=args.vocab, merges=args.merges)

    tokenizer = Tokenizer.from_files(args.vocab, args.merges, args.special_tokens)
    start = time.perf_counter()
    ids = tokenizer.encode_file(
        args.input, args.output, num_workers=args.num_workers, progress=not args.no_progress
    )
    elapsed = max(time.perf_counter() - start, 1e-9)
    size = os.path.getsize(args.input)
    print(f"tokens       {len(ids)} ({ids.dtype}), {size / max(len(ids), 1):.2f} bytes/token")
    print(f"elapsed      {elapsed:.2f} s, {size / elapsed / 1e6:.2f} MB/s")
    print(_path_line("_core"))
    print(f"wrote        {args.output}")


def train_main(argv: list[str] | None = None) -> int:
    """`bpe-train INPUT --vocab-size N --out-dir DIR [--special-tokens ...]`."""
    return _run(_train, argv)


def encode_main(argv: list[str] | None = None) -> int:
    """`bpe-encode --vocab V --merges M INPUT OUTPUT.npy [--special-tokens ...]`."""
    return _run(_encode, argv)
