"""The native training path: pre-token counting in threads, the merge loop in C.

Same results as the reference in `train.py` (tested equal): pre-tokens are counted chunk by
chunk (the chunk planning and special-token splitting of `pretokenize`), each chunk in a thread
that calls the compiled scanner's `count_pretokens` (which releases the GIL), and the per-chunk
counts are added up in C. Only a few chunks are in flight at once, so memory grows with the
number of distinct pre-tokens, not with the file. `_train_core.merge_pairs` then runs the merge
loop without the GIL.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from types import ModuleType

from tinylm.bpe import native
from tinylm.bpe.pretokenize import (
    count_pretokens,
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
    core: ModuleType,
    train_core: ModuleType,
    path: Path,
    specials: tuple[str, ...],
    *,
    num_workers: int | None,
    progress: bool,
    errors: str,
) -> dict[bytes, int]:
    """{pre-token bytes: count} of a file, counted by `core.count_pretokens` in threads."""
    size = os.path.getsize(path)
    threads = resolve_num_threads(num_workers, size)
    wanted = max(-(-size // CHUNK_BYTES), 4 * threads if threads > 1 else 1)
    chunks = list(itertools.pairwise(find_chunk_boundaries(path, wanted, specials)))
    add_counts, count = train_core.add_counts, core.count_pretokens
    special_re = special_token_regex(specials)
    total: dict[bytes, int] = {}

    def count_chunk(start: int, end: int) -> int:
        """Adds the chunk's counts to `total`. Each add_counts is one C call under the GIL, so
        threads may add at once; only count() (the scan) runs in parallel."""
        text = read_text(path, start, end, errors)
        at = 0
        if special_re is not None:
            for match in special_re.finditer(text):  # one segment (a slice) at a time
                if match.start() > at:
                    add_counts(total, count(text[at : match.start()]))
                at = match.end()
        if at < len(text):
            add_counts(total, count(text[at:] if at else text))
        return end - start

    bar = progress_bar(progress, total=size, unit="B", unit_scale=True, desc="pre-tokenize")
    with bar:
        if threads == 1 or len(chunks) <= 1:
            for start, end in chunks:
                bar.update(count_chunk(start, end))
            return total
        with ThreadPoolExecutor(threads) as pool:
            pending: set = set()
            for start, end in chunks:
                pending.add(pool.submit(count_chunk, start, end))
                while len(pending) >= _IN_FLIGHT_PER_THREAD * threads or (pending and end == size):
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        bar.update(future.result())
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
    """(tokens by id, merges in order) as `train.merge_pairs` gives them, natively.

    Counts with the compiled scanner when it has `count_pretokens`, else with the reference
    counter (processes) and only the merge loop native."""
    core = native.load("_core")
    if core is not None and hasattr(core, "count_pretokens"):
        word_counts = count_pretokens_native(
            core, train_core, path, specials,
            num_workers=num_workers, progress=progress, errors=errors,
        )  # fmt: skip
    else:
        counted = count_pretokens(
            path, specials, num_workers=num_workers, progress=progress, errors=errors
        )
        word_counts = {word.encode("utf-8"): count for word, count in counted.items()}
        del counted
    total = max(0, num_tokens - 256)
    with progress_bar(progress, total=total, desc="merges", unit="merge") as bar:
        update: Callable[[int], object] | None = bar.update if progress else None
        return train_core.merge_pairs(word_counts, num_tokens, update, consume=True)
