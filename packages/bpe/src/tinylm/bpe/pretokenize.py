"""Counting the pre-tokens of a file in parallel processes (the reference for training).

The names this module had before the package was split (the GPT-2 pattern and special-token
splitting, now in `scanner`; chunk planning, `read_text` and worker pools, now in `chunking`)
are re-exported here, so existing imports keep working.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable

from tinylm.bpe.chunking import (
    MAX_CHUNK_BYTES,
    TEXT_ERRORS,
    check_input_file,
    find_chunk_boundaries,
    plan_chunks,
    pool_start_method,
    progress_bar,
    read_text,
    resolve_num_workers,
)
from tinylm.bpe.scanner import (
    GPT2_PATTERN,
    PRETOKEN_RE,
    iter_pretokens,
    special_token_regex,
    split_on_special_tokens,
    split_pretokens,
    unique_special_tokens,
)

__all__ = [
    "GPT2_PATTERN",
    "MAX_CHUNK_BYTES",
    "PRETOKEN_RE",
    "TEXT_ERRORS",
    "check_input_file",
    "count_pretokens",
    "find_chunk_boundaries",
    "iter_pretokens",
    "plan_chunks",
    "pool_start_method",
    "progress_bar",
    "read_text",
    "resolve_num_workers",
    "special_token_regex",
    "split_on_special_tokens",
    "split_pretokens",
    "unique_special_tokens",
]


def _count_chunk(
    task: tuple[str, int, int, tuple[str, ...], str],
) -> tuple[dict[str, int], int]:
    path, start, end, special_tokens, errors = task
    counts: Counter[str] = Counter()
    text = read_text(path, start, end, errors)
    for segment in split_on_special_tokens(text, special_tokens):
        counts.update(split_pretokens(segment))
    return counts, end - start


def count_pretokens(
    path: str | os.PathLike,
    special_tokens: Iterable[str] | None,
    *,
    num_workers: int | None = None,
    progress: bool = False,
    errors: str = "strict",
) -> Counter[str]:
    """Count the pre-tokens of a file in parallel; the parent never holds the whole file.

    `errors` is the invalid-UTF-8 policy of `read_text` ("strict" or "replace")."""
    path = check_input_file(path)
    specials = tuple(unique_special_tokens(special_tokens))
    num_workers = resolve_num_workers(num_workers, os.path.getsize(path))
    chunks = plan_chunks(path, num_workers, specials)
    tasks = [(str(path), s, e, specials, errors) for s, e in chunks]
    total: Counter[str] = Counter()
    bar = progress_bar(
        progress, total=os.path.getsize(path), unit="B", unit_scale=True, desc="pre-tokenize"
    )
    with bar:
        if num_workers == 1 or len(tasks) <= 1:
            results = map(_count_chunk, tasks)
            for counts, nbytes in results:
                total.update(counts)
                bar.update(nbytes)
        else:
            with multiprocessing.get_context(pool_start_method()).Pool(
                min(num_workers, len(tasks))
            ) as pool:
                for counts, nbytes in pool.imap_unordered(_count_chunk, tasks):
                    total.update(counts)
                    bar.update(nbytes)
    return total
