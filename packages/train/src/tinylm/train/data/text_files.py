"""Two text files (train, validation) to token files, streamed: corpora of many GB.

TinyStories and OpenWebText come as separate train and validation files, too big to read whole.
`prepare_text_files` writes into one directory:

    tokenizer/vocab.json, merges.txt, meta.json    meta.json is written last: the completion mark
    train.npy, train.meta.json, val.npy, val.meta.json

Nothing holds a file in memory: the BPE trains on the train file's first `data.tokenizer_bytes`
(streamed to a temporary file, cut after its last whole document), encoding streams chunks
(a worker pool above 8 MB). A step is skipped when its meta.json matches what it would be built
from: the source file's fingerprint (size + SHA-256 of its first and last MiB: cheap on multi-GB
files, and unchanged by a copy or `touch`), the tokenizer settings, and for token files the
tokenizer files' own hash. So a new validation file re-encodes only itself.

`prepare_data` calls this for `data.text` + `data.val_text`, in a cache directory named after
both fingerprints and the tokenizer settings (`files_cache_dir`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from tinylm.bpe import Tokenizer, train_bpe
from tinylm.train.data.cache import PreparedData, cache_writes, load_tokenizer, make_cache_dir
from tinylm.train.data.config import DataConfig
from tinylm.train.files import atomic_open, atomic_write

__all__ = [
    "check_text_files",
    "file_fingerprint",
    "files_cache_dir",
    "prepare_text_files",
    "utf8_prefix",
]

_EDGE = 1 << 20  # bytes hashed at each end of a source file
_SMALL = 8_000_000  # below this, encode in-process (a worker pool costs more than it saves)


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """{"size", "sha256_edges"}: the size and a hash of the first and last MiB of the file."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_EDGE))
        if size > _EDGE:
            f.seek(max(_EDGE, size - _EDGE))
            digest.update(f.read(_EDGE))
    return {"size": size, "sha256_edges": digest.hexdigest()}


def check_text_files(train_text: str | os.PathLike, val_text: str | os.PathLike) -> None:
    """FileNotFoundError naming the config key of the first of the two files that is missing."""
    for path, key in ((train_text, "data.text"), (val_text, "data.val_text")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"text file not found: {path} ({key})")


def files_cache_dir(data: DataConfig, cache_root: str | os.PathLike) -> Path:
    """`<cache_root>/<train>+<val>-v<vocab>-<hash>`: one entry per file pair and tokenizer."""
    train, val = Path(data.text), Path(data.val_text)
    identity = {
        "train": file_fingerprint(train),
        "val": file_fingerprint(val),
        "vocab_size": data.vocab_size,
        "tokenizer_bytes": data.tokenizer_bytes,
        "special_tokens": list(data.special_tokens),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_root) / f"{train.stem}+{val.stem}-v{data.vocab_size}-{key}"


def prepare_text_files(
    train_text: str | os.PathLike,
    val_text: str | os.PathLike,
    data: DataConfig,
    out_dir: str | os.PathLike,
    *,
    progress: bool = False,
    log=print,
) -> PreparedData:
    """Train (or reuse) the tokenizer on `train_text`, encode (or reuse) both files into `out_dir`.

    Returns the paths, each step's meta (`steps`: "tokenizer", "train", "val", each with
    "cached": bool) and the tokenizer in memory (just trained, or loaded once from the cache)."""
    train_text, val_text = Path(train_text), Path(val_text)
    check_text_files(train_text, val_text)
    if data.text_errors != "strict":
        raise ValueError(
            "data.text_errors = 'replace' needs a single data.text: the streamed encoding of "
            "data.text + data.val_text reads strict UTF-8"
        )
    out = Path(out_dir)
    tok_dir = out / "tokenizer"
    make_cache_dir(tok_dir)
    prints = {src: file_fingerprint(src) for src in (train_text, val_text)}  # once per file
    with cache_writes(out):
        meta, tokenizer = _tokenizer(train_text, prints[train_text], data, tok_dir, progress, log)
        steps = {"tokenizer": meta}
        tok_hash = _files_hash(tok_dir / "vocab.json", tok_dir / "merges.txt")
        for split, src in (("train", train_text), ("val", val_text)):
            dst = out / f"{split}.npy"
            steps[split] = _encode(tokenizer, tok_hash, src, prints[src], dst, data, progress, log)
    return PreparedData(out / "train.npy", out / "val.npy", tok_dir, steps, tokenizer)


def _tokenizer(
    text: Path, fingerprint: dict[str, Any], data: DataConfig, tok_dir: Path, progress: bool, log
) -> tuple[dict[str, Any], Tokenizer]:
    wanted = {
        "source": str(text.resolve()),
        "fingerprint": fingerprint,
        "vocab_size": data.vocab_size,
        "special_tokens": list(data.special_tokens),
        "tokenizer_bytes": data.tokenizer_bytes,
    }
    meta = _read_meta(tok_dir / "meta.json")
    if meta is not None and _same(meta, wanted, skip=("source",)):
        log(f"tokenizer: reusing {tok_dir} ({meta['vocab_len']} tokens, cached)")
        return {**meta, "cached": True}, load_tokenizer(tok_dir, data.special_tokens)

    start = time.perf_counter()
    source = text
    if data.tokenizer_bytes > 0 and text.stat().st_size > data.tokenizer_bytes:
        source = tok_dir / "tokenizer_train.txt"
        separator = data.special_tokens[0] if data.special_tokens else None
        _write_head(text, source, data.tokenizer_bytes, separator)
    used = source.stat().st_size
    log(f"tokenizer: training a {data.vocab_size}-token BPE on {used / 1e6:,.1f} MB of {text}")
    vocab, merges = train_bpe(source, data.vocab_size, list(data.special_tokens), progress=progress)
    tokenizer = Tokenizer(vocab, merges, list(data.special_tokens))
    tokenizer.save(tok_dir / "vocab.json", tok_dir / "merges.txt")
    if source != text:
        source.unlink()
    meta = {
        **wanted,
        "vocab_len": len(vocab),
        "trained_on_bytes": used,
        "seconds": round(time.perf_counter() - start, 3),
    }
    atomic_write(tok_dir / "meta.json", json.dumps(meta, indent=2))
    log(f"tokenizer: {len(vocab)} tokens in {meta['seconds']:.1f} s -> {tok_dir}")
    return {**meta, "cached": False}, tokenizer


def _encode(
    tokenizer: Tokenizer,
    tok_hash: str,
    src: Path,
    fingerprint: dict[str, Any],
    dst: Path,
    data: DataConfig,
    progress,
    log,
) -> dict[str, Any]:
    wanted = {
        "source": str(src.resolve()),
        "fingerprint": fingerprint,
        "tokenizer": tok_hash,
    }
    meta_path = dst.with_suffix(".meta.json")
    meta = _read_meta(meta_path)
    if meta is not None and dst.is_file() and _same(meta, wanted, skip=("source",)):
        log(f"encode: reusing {dst} ({meta['tokens']:,} tokens, cached)")
        return {**meta, "cached": True}
    start = time.perf_counter()
    size = src.stat().st_size
    workers = data.num_workers or (1 if size < _SMALL else None)
    log(f"encode: {src} ({size / 1e6:,.1f} MB) -> {dst}")
    ids = tokenizer.encode_file(src, dst, num_workers=workers, progress=progress)
    seconds = time.perf_counter() - start
    meta = {**wanted, "tokens": len(ids), "bytes": size, "seconds": round(seconds, 3)}
    atomic_write(meta_path, json.dumps(meta, indent=2))
    log(
        f"encode: {len(ids):,} tokens ({size / max(len(ids), 1):.2f} bytes/token) "
        f"in {seconds:.1f} s ({size / 1e6 / max(seconds, 1e-9):.1f} MB/s)"
    )
    return {**meta, "cached": False}


def _write_head(src: Path, dst: Path, max_bytes: int, separator: str | None) -> None:
    """The first `max_bytes` of `src`, streamed, then cut after its last whole document.

    Falls back to the last newline, then to the last whole UTF-8 character, when the tail
    window (16 MiB) holds no separator.
    """
    size = min(max_bytes, src.stat().st_size)
    window = min(size, 16 << 20)
    with open(src, "rb") as f:
        f.seek(size - window)
        tail = f.read(window)
        mark = separator.encode() if separator else b"\n"
        if (cut := tail.rfind(mark)) >= 0:
            keep = cut + len(mark)
        elif (cut := tail.rfind(b"\n")) >= 0:
            keep = cut + 1
        else:
            keep = utf8_prefix(tail)
        f.seek(0)
        left = size - window + keep
        with atomic_open(dst) as g:
            while left > 0 and (block := f.read(min(left, 64 << 20))):
                g.write(block)
                left -= len(block)


def utf8_prefix(data: bytes) -> int:
    """Length of `data` without a multi-byte UTF-8 character cut in half at its end."""
    i = len(data)
    while i > 0 and len(data) - i < 3 and (data[i - 1] & 0xC0) == 0x80:
        i -= 1  # continuation bytes
    if i > 0 and data[i - 1] >= 0xC0:  # a lead byte: is its character complete?
        lead = data[i - 1]
        need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        return len(data) if len(data) - (i - 1) >= need else i - 1
    return len(data)


def _files_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _same(meta: dict[str, Any], wanted: dict[str, Any], skip: tuple[str, ...]) -> bool:
    return all(meta.get(k) == v for k, v in wanted.items() if k not in skip)


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
