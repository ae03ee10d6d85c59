"""`encode_file(tokenizer, src, dst)`: a text file to a `.npy` array of token ids, in parallel.

The file is cut at safe boundaries (see `chunking.find_chunk_boundaries`: special tokens first,
whitespace after printable ASCII otherwise), so encoding the chunks separately gives exactly the
ids of encoding the whole file. Each worker reads its own byte range and returns its ids as
raw bytes; we write them, in order, as they arrive, into a `.npy` under a temporary name
(header first, patched with the final length at the end) and rename it, so a crash never leaves
a truncated output and memory holds only the chunks in flight.

With the native core the workers are threads (the compiled encoder releases the GIL and gives
each running thread its own cache). On the reference path they are processes. On Linux they
are forked: they inherit the built tokenizer (tables and warm cache) instead
of unpickling it and rebuilding its tables. Elsewhere, or when the parent runs other threads, the
tokenizer is pickled once per worker. A few chunks per worker balance the load; each worker's
cache stays warm from one chunk to the next.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
from array import array
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tinylm.bpe.chunking import (
    check_input_file,
    plan_chunks,
    pool_start_method,
    progress_bar,
    read_text,
    resolve_num_workers,
)
from tinylm.bpe.files import new_file_mode

if TYPE_CHECKING:  # for annotations only: tokenizer.py imports this module
    from tinylm.bpe.tokenizer import Tokenizer

_worker_tokenizer: Tokenizer | None = None
_MIN_THREADED_BYTES = 1 << 18  # threads start in microseconds: only tiny files stay on one
_HEADER_BYTES = 128  # fixed .npy header size, room for any shape; a multiple of 64 as numpy wants


def ids_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _init_worker(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_chunk(task: tuple[str, int, int, str]) -> bytes:
    """Ids of bytes [start, end) of the file, as native-endian machine integers."""
    src, start, end, typecode = task
    return array(typecode, _worker_tokenizer.encode(read_text(src, start, end))).tobytes()


def _encode_chunk_native(tokenizer: Tokenizer, task: tuple[str, int, int, str]) -> bytes:
    src, start, end, typecode = task
    return tokenizer._native.encode_to_bytes(read_text(src, start, end), array(typecode).itemsize)


def _start_method() -> str | None:
    """See `pool_start_method`: fork only while this process is single-threaded."""
    return pool_start_method()


def _pool(num_workers: int, tokenizer: Tokenizer):
    """A pool whose workers hold `tokenizer`: inherited when forked, pickled otherwise."""
    method = _start_method()
    if method == "fork":
        _init_worker(tokenizer)  # the forked workers start with it set
        return multiprocessing.get_context("fork").Pool(num_workers)
    context = multiprocessing.get_context(method)
    return context.Pool(num_workers, initializer=_init_worker, initargs=(tokenizer,))


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    """A version 1.0 `.npy` header for a 1-D array, padded to `_HEADER_BYTES`."""
    fields = f"{{'descr': '{dtype.str}', 'fortran_order': False, 'shape': ({length},), }}"
    body = fields.ljust(_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


def encode_file(
    tokenizer: Tokenizer,
    src_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    *,
    num_workers: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Write the ids of `src_path` to `dst_path` (.npy); returns it opened with mmap_mode="r".

    `num_workers`: threads (native core) or processes (reference path); default all cores, or
    one for inputs too small to repay starting them. `Tokenizer.encode_file` is an alias.
    """
    src = check_input_file(src_path)
    dst = Path(dst_path)
    if dst.is_dir():
        raise ValueError(
            f"output {dst} is a directory; give the .npy file to write, e.g. {dst / 'ids.npy'}"
        )
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"output directory not found: {dst.parent}")
    size = os.path.getsize(src)
    threaded = tokenizer.is_native
    if threaded:
        num_workers = num_workers or ((os.cpu_count() or 1) if size >= _MIN_THREADED_BYTES else 1)
    else:
        num_workers = resolve_num_workers(num_workers, size)
    # Workers send array("H" or "I") bytes: the same C types as numpy's "H" and "I" dtypes.
    typecode = "H" if ids_dtype(max(tokenizer.vocab) + 1).itemsize == 2 else "I"
    dtype = np.dtype(typecode)
    ranges = plan_chunks(src, num_workers, tokenizer.special_tokens)
    tasks = [(str(src), start, end, typecode) for start, end in ranges]
    fd, tmp_path = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as out, contextlib.ExitStack() as stack:
            out.write(_npy_header(dtype, 0))
            if threaded:
                pool = ThreadPoolExecutor(min(num_workers, len(tasks)))
                stack.callback(pool.shutdown, cancel_futures=True)  # on an error, drop the rest
                # map() submits every task now; results come back in order as they finish
                results = pool.map(lambda task: _encode_chunk_native(tokenizer, task), tasks)
            elif num_workers == 1 or len(tasks) == 1:
                _init_worker(tokenizer)
                results = map(_encode_chunk, tasks)
            else:  # before the progress bar starts its monitor thread
                pool = stack.enter_context(_pool(min(num_workers, len(tasks)), tokenizer))
                results = pool.imap(_encode_chunk, tasks)
            bar = progress_bar(
                progress, total=os.path.getsize(src), unit="B", unit_scale=True, desc="encode"
            )
            n_bytes = 0
            with bar:
                for (start, end), blob in zip(ranges, results, strict=True):
                    out.write(blob)
                    n_bytes += len(blob)
                    bar.update(end - start)
            out.seek(0)
            out.write(_npy_header(dtype, n_bytes // dtype.itemsize))
            os.fchmod(out.fileno(), new_file_mode())  # mkstemp's 0600 -> what open() gives
        os.replace(tmp_path, dst)
        tmp_path = None
    finally:
        _init_worker(None)  # don't keep a reference to the tokenizer alive
        if tmp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_path)
    if n_bytes == 0:  # numpy cannot memory-map an empty array
        return np.zeros(0, dtype=dtype)
    return np.load(dst, mmap_mode="r")
