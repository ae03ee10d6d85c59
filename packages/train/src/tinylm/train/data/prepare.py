"""From raw text to token files: split, train (or reuse) a BPE tokenizer, encode to .npy.

Three sources, one entry point (`prepare_data`): pre-encoded .npy files (used as they are); one
text file (`data.text`, read whole and split by documents into train and validation, below);
or two text files (`data.text` + `data.val_text`: no split, streamed, see `prepare_text_files`).

Results are cached in a directory named after a hash of everything that determines them (source
file identity, slice sizes, vocabulary), with `meta.json` written last as the completion marker:
a second run with the same data settings skips straight to training, and an interrupted
preparation is simply redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tinylm.bpe import Tokenizer, train_bpe
from tinylm.train.data.cache import (
    BUNDLED_CORPORA,
    PreparedData,
    cache_writes,
    make_cache_dir,
    text_source,
)
from tinylm.train.data.config import DataConfig
from tinylm.train.data.text_files import check_text_files, files_cache_dir, prepare_text_files
from tinylm.train.files import atomic_write

__all__ = ["decode_text", "prepare_data"]


def prepare_data(
    config: DataConfig, cache_root: str | os.PathLike, log=print, progress: bool = False
) -> PreparedData:
    """Return train/val token files (and the tokenizer) for `config`, building them if needed.

    Text must be UTF-8: an invalid byte is an error naming the file and its offset, unless
    `data.text_errors = "replace"` asks for U+FFFD instead (the policy `bpe-train` shares).
    `progress` shows the BPE training (and, for two files, encoding) bars. A file where the cache
    directory should be is bad input (ValueError); an I/O error while writing the cache names it
    (RunFailed)."""
    if config.train_tokens or config.val_tokens:
        if not (config.train_tokens and config.val_tokens):
            raise ValueError(
                "set both data.train_tokens and data.val_tokens (pre-encoded .npy files)"
            )
        for path in (config.train_tokens, config.val_tokens):
            if not Path(path).is_file():
                raise FileNotFoundError(f"token file not found: {path}")
        tok_dir = Path(config.tokenizer_dir) if config.tokenizer_dir else None
        return PreparedData(Path(config.train_tokens), Path(config.val_tokens), tok_dir)

    if config.val_text:
        if not config.text or config.text in BUNDLED_CORPORA:
            raise ValueError(
                "data.val_text needs data.text, the train file beside it (a file path: a bundled "
                "corpus is split by itself)"
            )
        check_text_files(config.text, config.val_text)  # before files_cache_dir reads them
        make_cache_dir(Path(cache_root))
        out = files_cache_dir(config, cache_root)
        return prepare_text_files(
            config.text, config.val_text, config, out, progress=progress, log=log
        )

    text_path = text_source(config.text)
    if not text_path.is_file():
        raise FileNotFoundError(f"text file not found: {text_path} (data.text)")
    if not 0 < config.val_fraction < 1:
        raise ValueError(f"data.val_fraction must be in (0, 1), got {config.val_fraction}")
    stat = text_path.stat()
    identity = {
        "text": str(text_path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "text_bytes": config.text_bytes,
        "val_fraction": config.val_fraction,
        "vocab_size": config.vocab_size,
        "tokenizer_bytes": config.tokenizer_bytes,
        "special_tokens": list(config.special_tokens),
        "text_errors": config.text_errors,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    out = Path(cache_root) / f"{text_path.stem}-v{config.vocab_size}-{key}"
    result = PreparedData(out / "train.npy", out / "val.npy", out)
    if (out / "meta.json").is_file():
        log(f"data: reusing tokenizer and tokens cached in {out}")
        return result
    make_cache_dir(out)
    with cache_writes(out):
        tokenizer = _build(text_path, config, out, identity, log, progress)
    return replace(result, tokenizer=tokenizer)


def _build(
    text_path: Path, config: DataConfig, out: Path, identity: dict[str, Any], log, progress: bool
) -> Tokenizer:
    """Split, train the BPE, encode; meta.json last (the completion mark)."""
    separator = config.special_tokens[0] if config.special_tokens else None
    train_text, val_text = _split(
        text_path, config.text_bytes, config.val_fraction, separator, config.text_errors
    )
    (out / "train.txt").write_text(train_text, encoding="utf-8")
    (out / "val.txt").write_text(val_text, encoding="utf-8")

    tok_text = _head(train_text, config.tokenizer_bytes, separator)
    (out / "tokenizer_train.txt").write_text(tok_text, encoding="utf-8")
    start = time.perf_counter()
    vocab, merges = train_bpe(
        out / "tokenizer_train.txt",
        config.vocab_size,
        list(config.special_tokens),
        progress=progress,
    )
    tokenizer = Tokenizer(vocab, merges, list(config.special_tokens))
    tokenizer.save(out / "vocab.json", out / "merges.txt")
    log(
        f"data: trained BPE, {len(vocab)} tokens on {len(tok_text.encode()) / 1e6:.2f} MB "
        f"in {time.perf_counter() - start:.1f} s"
    )

    start = time.perf_counter()
    # Small inputs encode in-process: a worker pool costs more to start than it saves, and forking
    # a process that already runs torch threads is best avoided when it buys nothing.
    small = len(train_text) + len(val_text) < 8_000_000
    workers = config.num_workers or (1 if small else None)
    train_ids = tokenizer.encode_file(out / "train.txt", out / "train.npy", num_workers=workers)
    val_ids = tokenizer.encode_file(out / "val.txt", out / "val.npy", num_workers=workers)
    log(
        f"data: encoded {len(train_ids):,} train and {len(val_ids):,} val tokens "
        f"in {time.perf_counter() - start:.1f} s"
    )
    (out / "tokenizer_train.txt").unlink()
    meta = {**identity, "train_tokens": len(train_ids), "val_tokens": len(val_ids)}
    atomic_write(out / "meta.json", json.dumps(meta, indent=2))
    return tokenizer


def decode_text(raw: bytes, path: Path, errors: str = "strict", cut: bool = False) -> str:
    """UTF-8 text of `raw` (read from `path`); "strict" names the first bad byte's offset.

    `cut`: `raw` is a prefix of the file, so an incomplete character at its very end is the cut,
    not bad data, and is dropped.
    """
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        if cut and e.end == len(raw) and e.reason == "unexpected end of data":
            return raw[: e.start].decode("utf-8")
        raise ValueError(
            f"{path}: not valid UTF-8 at byte {e.start} (0x{raw[e.start]:02x}); fix the file, "
            "or pass --data.text_errors replace to read invalid bytes as U+FFFD"
        ) from None


def _split(
    path: Path, max_bytes: int, val_fraction: float, separator: str | None, errors: str = "strict"
) -> tuple[str, str]:
    """First `max_bytes` of the file, cut to whole documents, split by documents: (train, val)."""
    with open(path, "rb") as f:
        raw = f.read(max_bytes) if max_bytes > 0 else f.read()
    text = decode_text(raw, path, errors, cut=max_bytes > 0 and len(raw) == max_bytes)
    docs = text.split(separator) if separator else [text]
    if separator and len(docs) > 2 and max_bytes > 0 and len(raw) == max_bytes:
        docs = docs[:-1]  # the last document was cut by the byte limit
    if len(docs) >= 2:
        total = sum(len(d) for d in docs)
        n_val, val_chars = 0, 0
        while n_val < len(docs) - 1 and val_chars < val_fraction * total:
            n_val += 1
            val_chars += len(docs[-n_val])
        return separator.join(docs[:-n_val]) + separator, separator.join(docs[-n_val:])
    cut = int(len(text) * (1 - val_fraction))  # one big document: split inside it
    return text[:cut], text[cut:]


def _head(text: str, max_bytes: int, separator: str | None) -> str:
    """Roughly the first `max_bytes` of text, ending at a document boundary when there is one."""
    if max_bytes <= 0 or len(text.encode()) <= max_bytes:
        return text
    head = text.encode()[:max_bytes].decode("utf-8", errors="ignore")
    if separator and separator in head:
        head = head[: head.rindex(separator) + len(separator)]
    return head
