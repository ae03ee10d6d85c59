"""Encode a text file to a `.npy` array of token ids, in parallel.

The file is cut at safe boundaries (see `pretokenize.find_chunk_boundaries`: special tokens first,
whitespace after printable ASCII otherwise), so encoding the chunks separately gives exactly the
ids of encoding the whole file. Each worker reads its own byte range and writes its ids to a
part file; the parent then copies the parts, in order, into one `.npy` written under a temporary
name and renamed at the end, so a crash never leaves a truncated output.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tinylm.bpe.pretokenize import check_input_file, plan_chunks, read_text

if TYPE_CHECKING:
    from tinylm.bpe.tokenizer import Tokenizer

_worker_tokenizer: Tokenizer | None = None
_COPY_BLOCK = 1 << 22  # ids copied at a time when assembling the output


def ids_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _init_worker(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_chunk(task: tuple[str, int, int, str, str]) -> tuple[int, int]:
    src, start, end, part_path, dtype = task
    ids = _worker_tokenizer.encode(read_text(src, start, end))
    np.asarray(ids, dtype=dtype).tofile(part_path)
    return len(ids), end - start


def encode_file(
    tokenizer: Tokenizer,
    src_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    *,
    num_workers: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Write the ids of `src_path` to `dst_path` (.npy); returns it opened with mmap_mode="r"."""
    from tqdm.auto import tqdm

    src = check_input_file(src_path)
    dst = Path(dst_path)
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"output directory not found: {dst.parent}")
    num_workers = num_workers or os.cpu_count() or 1
    dtype = ids_dtype(max(tokenizer.vocab) + 1)
    ranges = plan_chunks(src, num_workers, tokenizer.special_tokens)
    prefix = f".{dst.name}.{os.getpid()}"
    parts = [dst.parent / f"{prefix}.part{i}" for i in range(len(ranges))]
    tasks = [(str(src), s, e, str(p), dtype.str) for (s, e), p in zip(ranges, parts, strict=True)]
    tmp_path = None
    bar = tqdm(
        total=os.path.getsize(src), unit="B", unit_scale=True, desc="encode", disable=not progress
    )
    try:
        lengths = []
        with bar:
            if num_workers == 1 or len(tasks) == 1:
                _init_worker(tokenizer)
                results = map(_encode_chunk, tasks)
                for n_ids, n_bytes in results:
                    lengths.append(n_ids)
                    bar.update(n_bytes)
            else:
                pool = multiprocessing.get_context().Pool(
                    min(num_workers, len(tasks)), initializer=_init_worker, initargs=(tokenizer,)
                )
                with pool:
                    for n_ids, n_bytes in pool.imap(_encode_chunk, tasks):
                        lengths.append(n_ids)
                        bar.update(n_bytes)
        fd, tmp_path = tempfile.mkstemp(dir=dst.parent, prefix=prefix, suffix=".npy.tmp")
        os.close(fd)
        _concatenate_parts(parts, lengths, dtype, tmp_path)
        os.replace(tmp_path, dst)
        tmp_path = None
    finally:
        for path in [*parts, tmp_path]:
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
    return np.load(dst, mmap_mode="r")


def _concatenate_parts(parts: list[Path], lengths: list[int], dtype: np.dtype, out: str) -> None:
    total = sum(lengths)
    if total == 0:  # numpy cannot memory-map an empty array
        with open(out, "wb") as f:
            np.save(f, np.zeros(0, dtype=dtype), allow_pickle=False)
        return
    array = np.lib.format.open_memmap(out, mode="w+", dtype=dtype, shape=(total,))
    position = 0
    for part, length in zip(parts, lengths, strict=True):
        for offset in range(0, length, _COPY_BLOCK):
            count = min(_COPY_BLOCK, length - offset)
            block = np.fromfile(part, dtype=dtype, count=count, offset=offset * dtype.itemsize)
            array[position : position + count] = block
            position += count
    array.flush()
    del array
