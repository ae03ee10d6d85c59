"""Token data on disk: opening and validating id arrays, and sampling training batches.

Token files are `.npy` arrays of unsigned ids (what `Tokenizer.encode_file` writes), opened with
`np.load(mmap_mode="r")` so a corpus larger than RAM costs only the pages a batch touches. Raw
nanoGPT-style `.bin` files work too when their dtype is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jaxtyping import Int

from tinylm.nn import typechecked
from tinylm.train.errors import one_line

__all__ = ["check_tokens", "get_batch", "open_tokens"]

ID_DTYPES = (np.uint16, np.uint32, np.int32, np.int64, np.uint8)
NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file


@typechecked
def get_batch(
    tokens: np.ndarray,
    batch_size: int,
    context_length: int,
    device: str | torch.device,
    generator: torch.Generator | None = None,
) -> tuple[Int[torch.Tensor, "batch seq"], Int[torch.Tensor, "batch seq"]]:
    """Sample `batch_size` windows uniformly: x = tokens[s:s+T], y = tokens[s+1:s+T+1].

    Starts s are uniform in [0, len − T − 1] and drawn from `generator` (a CPU generator), so the
    batch is a pure function of the generator state. Only the sampled windows are read, which
    keeps memmaps lazy. Returns int64 tensors on `device`; on CUDA the host copy is pinned and the
    transfer asynchronous.
    """
    n = len(tokens)
    if n < context_length + 1:
        raise ValueError(
            f"token array has {n} tokens, fewer than context_length + 1 = {context_length + 1}"
        )
    starts = torch.randint(0, n - context_length, (batch_size,), generator=generator).numpy()
    # One fancy-index gather of (batch, T+1) ids: memmaps read just these pages.
    window = np.asarray(tokens[starts[:, None] + np.arange(context_length + 1)], dtype=np.int64)
    batch = torch.from_numpy(window)
    device = torch.device(device)
    if device.type == "cuda":
        batch = batch.pin_memory().to(device, non_blocking=True)
    elif device.type != "cpu":
        batch = batch.to(device)
    return batch[:, :-1], batch[:, 1:]


def open_tokens(path: str | Path, dtype: str = "") -> np.ndarray:
    """Open a token file lazily: `.npy` via `np.load(mmap_mode="r")`, else raw ids of `dtype`.

    Raises FileNotFoundError for a missing file and ValueError for a dtype that cannot hold ids.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token file not found: {path}")
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            magic = f.read(len(NPY_MAGIC))
        if magic != NPY_MAGIC:
            raise ValueError(
                f"{path} is not a .npy file (it does not start with the .npy magic bytes); "
                "raw ids need another suffix and data.dtype"
            )
        try:
            tokens = np.load(path, mmap_mode="r")
        except OSError:
            raise  # unreadable (permissions, I/O): its message names the file
        except Exception as e:
            # numpy parses the header as a Python literal: a damaged one raises whatever the
            # tokenizer or ast hits first (TokenError, SyntaxError, ...), not only ValueError.
            reason = one_line(e) if isinstance(e, ValueError) else "its header is damaged"
            raise ValueError(f"{path} is not a readable .npy file: {reason}") from None
        if dtype and tokens.dtype != np.dtype(dtype):
            raise ValueError(f"{path} holds {tokens.dtype} ids, but data.dtype says {dtype}")
    else:
        if not dtype:
            raise ValueError(
                f"{path} is not a .npy file; set data.dtype (e.g. uint16) to read raw ids"
            )
        itemsize = np.dtype(dtype).itemsize
        if path.stat().st_size % itemsize:
            raise ValueError(
                f"{path} is {path.stat().st_size} bytes, not a whole number of {dtype} ids; "
                "is data.dtype right?"
            )
        tokens = np.memmap(path, dtype=dtype, mode="r")
    if tokens.dtype not in [np.dtype(d) for d in ID_DTYPES] or tokens.ndim != 1:
        raise ValueError(
            f"{path} holds a {tokens.ndim}-d {tokens.dtype} array; "
            "token ids must be a 1-d array of "
            "unsigned ints (uint16 or uint32, as Tokenizer.encode_file writes)"
        )
    return tokens


def check_tokens(
    tokens: np.ndarray, name: str, vocab_size: int, context_length: int, chunk: int = 1 << 24
) -> None:
    """Checks before training: enough tokens for one window, every id in [0, vocab_size).

    One streaming pass of min/max over chunks of `chunk` ids (a memmap is read once, never held
    whole); a chunk out of range is searched for the first bad offset, which the error names.
    Cost: see the README (a 1 GB uint16 file is read at memory/disk speed).
    """
    n = len(tokens)
    if n < context_length + 1:
        raise ValueError(
            f"{name} has {n} tokens, fewer than model.context_length + 1 = {context_length + 1}; "
            "use more data or a smaller --model.context_length"
        )
    signed = np.issubdtype(tokens.dtype, np.signedinteger)
    for start in range(0, n, chunk):
        part = np.asarray(tokens[start : start + chunk])
        high = int(part.max())
        low = int(part.min()) if signed else 0
        if high < vocab_size and low >= 0:
            continue
        offset = start + int(np.argmax((part >= vocab_size) | (part < 0)))
        value = int(tokens[offset])
        if value < 0:
            raise ValueError(f"{name} contains negative token id {value} at offset {offset}")
        raise ValueError(
            f"{name} contains token id {value} >= model.vocab_size {vocab_size} at offset "
            f"{offset} (first bad id); the data was encoded with a different tokenizer or "
            "--model.vocab_size is too small"
        )
