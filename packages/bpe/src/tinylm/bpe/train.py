"""Byte-level BPE training.

Algorithm (Sennrich et al. 2016, byte-level as in GPT-2):

1. Pre-tokenize the corpus (see `pretokenize`) and count each distinct pre-token ("word").
2. Start with one token per byte; every word is a sequence of byte ids.
3. Repeat until the vocabulary is full: count adjacent token pairs inside words (weighted by word
   count), merge the most frequent pair into a new token everywhere. Ties go to the
   lexicographically greatest pair of byte strings.

Recounting all pairs after each merge is quadratic. Instead we keep `pair -> count`, an index
`pair -> words that contain it`, and a max-heap of (count, pair) with lazy invalidation: a merge
only touches the words holding the merged pair, and pushes the pairs whose count changed.

This module is the readable reference. By default `train_bpe` runs the native path
(`train_native`: threaded counting with the compiled scanner, the same merge loop in C), tested
equal to this one; `TINYLM_BPE_NATIVE=0` or a missing build runs the code here.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections import defaultdict

from tinylm.bpe import native
from tinylm.bpe.pretokenize import (
    check_input_file,
    count_pretokens,
    progress_bar,
    unique_special_tokens,
)
from tinylm.bpe.train_native import train_merges_native

# Python's heapq is a min-heap. To pop the *greatest* byte string first with plain C comparisons,
# key a token by its bytes inverted (255 - b), as a latin-1 string (code points 0..255) ended by
# U+0100, above every inverted byte: for any byte strings x < y (lexicographically, a prefix is
# smaller) we get key(x) > key(y). (A b"\xff" terminator fails on NUL bytes, which invert to
# 0xff: it made "a" rank above "a\x00".)
_INVERT = bytes(range(255, -1, -1))


def _descending_key(token: bytes) -> str:
    return token.translate(_INVERT).decode("latin-1") + "\u0100"


def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: list[str] | None,
    *,
    num_workers: int | None = None,
    progress: bool = False,
    errors: str = "strict",
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer on a UTF-8 text file.

    Returns `(vocab, merges)`: ids 0..255 are the single bytes, then one id per merge in creation
    order, then the special tokens. `len(vocab) <= vocab_size` (fewer if the corpus runs out of
    pairs). Special tokens never take part in merges. In the rare case that a merge recreates a
    byte string that is already a token, the merge is kept but reuses that token's id, so that
    `vocab.json` (keyed by token text) stays unambiguous, as in HF `tokenizers`.

    With the native core (the default; `TINYLM_BPE_NATIVE=0` or a missing build runs the
    reference below) pre-tokens are counted in `num_workers` threads and the merge loop runs in
    C, with the same results. The reference counts in `num_workers` processes. Either way the
    default is all cores, or one for inputs too small to repay starting workers, each reading
    its own byte range of the file;
    `progress=True` shows tqdm bars for both phases. Invalid UTF-8 is an error naming the file
    and byte offset unless `errors="replace"` (then U+FFFD), as in train-lm's data.text_errors.
    """
    input_path = check_input_file(input_path)
    specials = unique_special_tokens(special_tokens)
    if vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size {vocab_size} is too small: it must be at least 256 byte tokens "
            f"+ {len(specials)} special tokens = {256 + len(specials)}"
        )
    num_tokens = vocab_size - len(specials)
    train_core = native.load("_train_core")
    if train_core is not None:
        tokens, merges = train_merges_native(
            train_core, input_path, tuple(specials), num_tokens,
            num_workers=num_workers, progress=progress, errors=errors,
        )  # fmt: skip
    else:
        word_counts = count_pretokens(
            input_path, specials, num_workers=num_workers, progress=progress, errors=errors
        )
        tokens, merges = merge_pairs(word_counts, num_tokens, progress=progress)
    vocab = dict(enumerate(tokens))
    for token in specials:
        vocab[len(vocab)] = token.encode("utf-8")
    return vocab, merges


def merge_pairs(
    word_counts: dict[str, int], num_tokens: int, *, progress: bool = False
) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    """Merge pairs until there are `num_tokens` tokens; returns (tokens by id, merges in order).

    Tokens are identified by their bytes, as in the GPT-2 file format: a merge whose result
    already exists (say "a"+"bc" after "ab"+"c") is recorded but reuses the existing token.
    """
    # Words of one byte hold no pair; they can never change the merges.
    words = [list(w.encode("utf-8")) for w in word_counts]
    counts = list(word_counts.values())
    keep = [i for i, w in enumerate(words) if len(w) > 1]
    words, counts = [words[i] for i in keep], [counts[i] for i in keep]

    token_bytes = [bytes([i]) for i in range(256)]
    token_key = [_descending_key(t) for t in token_bytes]
    token_id = {t: i for i, t in enumerate(token_bytes)}
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    pair_words: dict[tuple[int, int], set[int]] = defaultdict(set)
    for index, (word, count) in enumerate(zip(words, counts, strict=True)):
        for pair in itertools.pairwise(word):
            pair_counts[pair] += count
            pair_words[pair].add(index)
    heap = [(-c, token_key[a], token_key[b], a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[bytes, bytes]] = []
    total = max(0, num_tokens - len(token_bytes))
    with progress_bar(progress, total=total, desc="merges", unit="merge") as bar:
        while len(token_bytes) < num_tokens and heap:
            neg_count, _, _, a, b = heapq.heappop(heap)
            if pair_counts.get((a, b), 0) != -neg_count:
                continue  # stale entry: the count changed after it was pushed
            merged = token_bytes[a] + token_bytes[b]
            merges.append((token_bytes[a], token_bytes[b]))
            new_id = token_id.get(merged, len(token_bytes))
            if new_id == len(token_bytes):
                token_bytes.append(merged)
                token_key.append(_descending_key(merged))
                token_id[merged] = new_id
                bar.update()
            for pair in _merge_everywhere(words, counts, a, b, new_id, pair_counts, pair_words):
                count = pair_counts[pair]
                if count > 0:
                    heapq.heappush(heap, (-count, token_key[pair[0]], token_key[pair[1]], *pair))
                else:
                    del pair_counts[pair]
                    pair_words.pop(pair, None)
    return token_bytes, merges


def _merge_everywhere(words, counts, a, b, new_id, pair_counts, pair_words) -> set:
    """Replace (a, b) by new_id in every word holding it; update the pair counts and index.

    Only the neighbours of each occurrence change: (prev, a) becomes (prev, new) and (b, next)
    becomes (new, next). With back-to-back occurrences ("a b a b") the second one sees the
    already merged token as `prev`, which turns the first one's (new, a) into (new, new).
    Returns the pairs whose count changed. Index entries of pairs that vanish from a word are
    left in place (a later merge of such a pair just finds nothing to do in that word).
    """
    delta: dict[tuple[int, int], int] = defaultdict(int)
    for index in pair_words.pop((a, b), ()):
        word = words[index]
        count = counts[index]
        i = 0
        while True:
            try:
                i = word.index(a, i)  # C-speed scan; words hold the pair once or twice at most
            except ValueError:
                break
            if i + 1 < len(word) and word[i + 1] == b:
                if i > 0:
                    prev = word[i - 1]
                    delta[prev, a] -= count
                    delta[prev, new_id] += count
                    pair_words[prev, new_id].add(index)
                if i + 2 < len(word):
                    after = word[i + 2]
                    delta[b, after] -= count
                    delta[new_id, after] += count
                    pair_words[new_id, after].add(index)
                word[i : i + 2] = (new_id,)
            i += 1
    changed = set()
    for pair, d in delta.items():
        if d:
            pair_counts[pair] += d
            changed.add(pair)
    pair_counts.pop((a, b), None)
    changed.discard((a, b))
    return changed
