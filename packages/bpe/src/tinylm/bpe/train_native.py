"""The native training path: pre-token counting in threads, the merge loop in C.

Same results as the reference in `train.py` (tested equal). The file is cut into small chunks
(`find_chunk_boundaries`, the reference's safe cuts); each chunk is read, decoded, split at the
special tokens (the reference's `special_token_regex`) and counted by `_train_core.count_text`
into a C table of its own: the native GPT-2 scanner (the one `_core` encodes with), no Python
object per pre-token, GIL released, so the threads count in parallel. The main thread adds each
chunk's table into the total (`merge_counts`, GIL released) as it arrives, with only a few chunks
in flight: memory grows with the number of distinct pre-tokens, not with the file.
`_train_core.merge_pairs` then runs the merge loop on the total, also without the GIL.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from types import ModuleType

from tinylm.bpe.pretokenize import (
    find_chunk_boundaries,
    progress_bar,
    read_text,
    special_token_regex,
)

# Below this size one thread does it: planning and starting threads would cost more than it saves.
_MIN_PARALLEL_BYTES = 1 << 20
# Chunks are small, and only a few are in flight (read, decoded, counted) at once: the memory of
# counting is then a few MiB plus the counts, whatever the file size.
CHUNK_BYTES = 1 << 20
_IN_FLIGHT_PER_THREAD = 2


def resolve_num_threads(num_workers: int | None, nbytes: int) -> int:
    """`num_workers` if given; else all cores, or 1 for small inputs."""
    if num_workers:
        return num_workers
    return 1 if nbytes < _MIN_PARALLEL_BYTES else os.cpu_count() or 1


def count_pretokens_native(
    train_core: ModuleType,
    path: Path,
    specials: tuple[str, ...],
    *,
    num_workers: int | None,
    progress: bool,
    errors: str,
):
    """The pre-token counts of a file as a `_train_core` counts table, counted in threads.

    (`train_core.counts_to_dict(table)` gives {pre-token bytes: count}.)"""
    size = os.path.getsize(path)
    threads = resolve_num_threads(num_workers, size)
    wanted = max(-(-size // CHUNK_BYTES), 4 * threads if threads > 1 else 1)
    chunks = list(itertools.pairwise(find_chunk_boundaries(path, wanted, specials)))
    special_re = special_token_regex(specials)
    total = train_core.new_counts()

    def count_chunk(start: int, end: int):
        text = read_text(path, start, end, errors)
        segments = [text] if special_re is None else special_re.split(text)
        del text
        table = train_core.new_counts()
        train_core.count_text(table, segments)
        return table, end - start

    def add(result) -> None:
        table, nbytes = result
        train_core.merge_counts(total, table)
        bar.update(nbytes)

    bar = progress_bar(progress, total=size, unit="B", unit_scale=True, desc="pre-tokenize")
    with bar:
        if threads == 1 or len(chunks) <= 1:
            for start, end in chunks:
                add(count_chunk(start, end))
            return total
        with ThreadPoolExecutor(threads) as pool:
            pending: set = set()
            for start, end in chunks:
                pending.add(pool.submit(count_chunk, start, end))
                while len(pending) >= _IN_FLIGHT_PER_THREAD * threads or (pending and end == size):
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        add(future.result())
    return total


def train_merges_native(
    train_core: ModuleType,
    path: Path,
    specials: tuple[str, ...],
    num_tokens: int,
    *,
    num_workers: int | None,
    progress: bool,
    errors: str,
) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    """(tokens by id, merges in order) as `train.merge_pairs` gives them, natively."""
    counts = count_pretokens_native(
        train_core, path, specials, num_workers=num_workers, progress=progress, errors=errors
    )
    total = max(0, num_tokens - 256)
    with progress_bar(progress, total=total, desc="merges", unit="merge") as bar:
        update: Callable[[int], object] | None = bar.update if progress else None
        return train_core.merge_pairs(counts, num_tokens, update, consume=True)
