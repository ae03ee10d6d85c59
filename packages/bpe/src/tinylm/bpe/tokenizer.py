"""The `Tokenizer`: encode text to token ids and back, GPT-2 style.

Encoding: split on special tokens (longest match wins), cut each piece of ordinary text into
pre-tokens with the GPT-2 regex, then inside each pre-token repeatedly merge the adjacent pair of
lowest merge rank (all its occurrences, left to right) until no pair has a rank (see `merge`).
Results are cached per pre-token: natural text repeats its words a lot. When a long text brings
many pre-tokens the cache lacks, they are merged together in one numpy batch first.

That is the reference path. With the native core (`native.encoder`, the default unless
`TINYLM_BPE_NATIVE=0` or the extension is not built) the same steps run in C with the GIL
released, so `encode_batch` and `encode_file` run them in threads; the ids are the same.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

from tinylm.bpe import native
from tinylm.bpe.file_encoding import encode_file
from tinylm.bpe.files import load_merges, load_vocab, save_vocab_and_merges
from tinylm.bpe.hf import read_hf_tokenizer, tokenizer_json_path, write_hf_tokenizer
from tinylm.bpe.merge import BatchMerger, piece_encoder
from tinylm.bpe.scanner import (
    PRETOKEN_RE,
    special_token_regex,
    split_pretokens,
    unique_special_tokens,
)

if TYPE_CHECKING:
    import numpy as np

# Batch-merge a text's uncached pre-tokens when it has at least this many pre-tokens and a sample
# of them shows at least _BATCH_MIN_SAMPLE_MISSES misses out of _BATCH_SAMPLE: below that, the
# set difference costs more than merging the few new ones one by one.
_BATCH_MIN_PIECES = 4096
_BATCH_SAMPLE = 256
_BATCH_MIN_SAMPLE_MISSES = 4
_BATCH_MAX_PIECES = 1 << 16
# A pre-token starting within this many characters of the end of a buffer may still change when
# more text arrives: the longest pattern branch that can fail for lack of input is "'ll".
_LOOKAHEAD_CHARS = 3


class _PieceCache(dict):
    """pre-token -> ids; computes missing entries, and empties itself when it grows too big."""

    def __init__(self, encode_piece, max_entries: int) -> None:
        super().__init__()
        self._encode_piece = encode_piece
        self.max_entries = max_entries

    def __missing__(self, piece: str) -> list[int]:
        if len(self) >= self.max_entries:
            self.clear()
        ids = self[piece] = self._encode_piece(piece)
        return ids


class Tokenizer:
    """Byte-level BPE tokenizer: `vocab` {id: bytes}, `merges` [(bytes, bytes)] in rank order."""

    cache_entries = 1 << 16

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[str] | None = None,
    ) -> None:
        self.vocab = dict(vocab)
        self.merges = list(merges)
        self.special_tokens = unique_special_tokens(special_tokens)
        self._bytes_to_id = {token: token_id for token_id, token in sorted(self.vocab.items())}
        self._special_ids = {}
        next_id = max(self.vocab, default=-1) + 1
        for token in self.special_tokens:
            token_bytes = token.encode("utf-8")
            if token_bytes not in self._bytes_to_id:  # new specials go after everything else
                new_id, next_id = next_id, next_id + 1
                self.vocab[new_id] = token_bytes
                self._bytes_to_id[token_bytes] = new_id
            self._special_ids[token] = self._bytes_to_id[token_bytes]
        self._special_re = special_token_regex(tuple(self.special_tokens))
        self._longest_special = max(map(len, self.special_tokens), default=0)

        missing = [b for b in range(256) if bytes([b]) not in self._bytes_to_id]
        if missing:
            raise ValueError(f"vocab lacks single-byte tokens for bytes {missing[:8]}")
        self._byte_ids = [self._bytes_to_id[bytes([b])] for b in range(256)]
        self._ranks: dict[tuple[int, int], int] = {}
        self._merged_id_by_rank: list[int] = [-1] * len(self.merges)
        for rank, (a, b) in enumerate(self.merges):
            for part in (a, b, a + b):
                if part not in self._bytes_to_id:
                    raise ValueError(f"merge {rank} ({a!r}, {b!r}): token {part!r} not in vocab")
            pair = (self._bytes_to_id[a], self._bytes_to_id[b])
            if pair not in self._ranks:  # a repeated merge can never apply again
                self._ranks[pair] = rank
                self._merged_id_by_rank[rank] = self._bytes_to_id[a + b]
        self._encode_piece = piece_encoder(self._byte_ids, self._ranks, self._merged_id_by_rank)
        self._cache = _PieceCache(self._encode_piece, self.cache_entries)
        self._batch_merger: BatchMerger | None = None  # built on first use
        # Its pair keys (left * id_bound + right) must fit in int64; the C tables hold such ids too.
        self._can_batch = min(self.vocab) >= 0 and max(self.vocab) < 1 << 31
        self._native = None  # the compiled encoder, when the native core is in use
        if self._can_batch:
            self._native = native.encoder(
                self._byte_ids,
                self._ranks,
                self._merged_id_by_rank,
                self._special_ids,
                self.cache_entries,
            )

    @property
    def is_native(self) -> bool:
        """True when this tokenizer encodes with the native core, False on the reference path."""
        return self._native is not None

    # -- files -------------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        vocab_path: str | os.PathLike,
        merges_path: str | os.PathLike,
        special_tokens: list[str] | None = None,
    ) -> Tokenizer:
        """Load GPT-2 style `vocab.json` + `merges.txt` (see `files`)."""
        vocab, merges = load_vocab(vocab_path), load_merges(merges_path)
        try:
            return cls(vocab, merges, special_tokens)
        except ValueError as err:
            raise ValueError(f"{vocab_path}, {merges_path}: {err}") from None

    def save(self, vocab_path: str | os.PathLike, merges_path: str | os.PathLike) -> None:
        save_vocab_and_merges(self.vocab, self.merges, vocab_path, merges_path)

    def save_hf(self, path: str | os.PathLike) -> Path:
        """Write a Hugging Face `tokenizer.json` (a file, or into a directory); see `hf`."""
        return write_hf_tokenizer(self.vocab, self.merges, self._special_ids, path)

    @classmethod
    def from_hf(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a byte-level BPE `tokenizer.json` (ours or GPT-2's; a file or its directory)."""
        vocab, merges, special_tokens = read_hf_tokenizer(path)
        try:
            return cls(vocab, merges, special_tokens)
        except ValueError as err:
            raise ValueError(f"{tokenizer_json_path(path)}: {err}") from None

    def __getstate__(self):  # compiled tables are rebuilt: smaller to send to worker processes
        return (self.vocab, self.merges, self.special_tokens)

    def __setstate__(self, state) -> None:
        self.__init__(*state)

    # -- encoding ----------------------------------------------------------------------------

    def _encode_ordinary(self, text: str, out: list[int]) -> None:
        """Append the ids of text that holds no special token."""
        if self._native is not None:
            out.extend(self._native.encode(text, specials=False))
        else:
            out.extend(self._encode_segments([text], []))

    def _encode_segments(self, segments: list[str], special_ids: list[int]) -> list[int]:
        """Ids of segments[0], special_ids[0], segments[1], ...; no segment holds a special."""
        piece_lists = [split_pretokens(segment) for segment in segments]
        lookup = self._lookup_for(piece_lists)
        out: list[int] = []
        for pieces, special_id in zip(piece_lists, [*special_ids, None], strict=True):
            out.extend(chain.from_iterable(map(lookup, pieces)))
            if special_id is not None:
                out.append(special_id)
        return out

    def _lookup_for(self, piece_lists: list[list[str]]):
        """pre-token -> ids; first merges the uncached pre-tokens in one batch if there are many.

        Deciding costs a sample: a mostly warm cache skips the set difference over all pieces.
        """
        cache = self._cache
        total = sum(map(len, piece_lists))
        if not self._can_batch or total < _BATCH_MIN_PIECES:
            return cache.__getitem__
        sample = itertools.islice(chain.from_iterable(piece_lists), 0, None, total // _BATCH_SAMPLE)
        if sum(piece not in cache for piece in sample) < _BATCH_MIN_SAMPLE_MISSES:
            return cache.__getitem__
        new = list(set(chain.from_iterable(piece_lists)).difference(cache))
        if self._batch_merger is None:
            self._batch_merger = BatchMerger(self._byte_ids, self._ranks, self._merged_id_by_rank)
        encoded = {}
        for start in range(0, len(new), _BATCH_MAX_PIECES):  # bounds the numpy temporaries
            batch = new[start : start + _BATCH_MAX_PIECES]
            encoded.update(zip(batch, self._batch_merger(batch), strict=True))
        if len(encoded) > cache.max_entries:  # too many to keep: use them for this text only
            encoded.update(cache)
            return encoded.__getitem__
        if len(cache) + len(encoded) > cache.max_entries:
            cache.clear()
        cache.update(encoded)
        return cache.__getitem__

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; registered special tokens map to their own id."""
        if self._native is not None:
            return self._native.encode(text)
        segments: list[str] = []
        special_ids: list[int] = []
        start = 0
        if self._special_re is not None:
            for match in self._special_re.finditer(text):
                segments.append(text[start : match.start()])
                special_ids.append(self._special_ids[match.group()])
                start = match.end()
        segments.append(text[start:])
        return self._encode_segments(segments, special_ids)

    def encode_batch(self, texts: Iterable[str], num_threads: int | None = None) -> list[list[int]]:
        """`[self.encode(t) for t in texts]`, in `num_threads` threads (default: all cores).

        Like tiktoken's `encode_ordinary_batch`, but special tokens count as `encode` counts
        them. Threads run in parallel only with the native core (it releases the GIL); the
        reference path encodes one text after another.
        """
        texts = texts if isinstance(texts, list) else list(texts)
        if self._native is None:
            return [self.encode(text) for text in texts]
        threads = min(num_threads or os.cpu_count() or 1, len(texts))
        if threads <= 1:
            return self._native.encode_many(texts)
        # Contiguous groups of about equal length, a few per thread (load balance): one native
        # call, so one GIL release, per group rather than per text.
        groups, bounds = 4 * threads, [0]
        total, running = sum(map(len, texts)) or 1, 0
        for i, text in enumerate(texts):
            running += len(text)
            if running * groups >= total * len(bounds) and i + 1 < len(texts):
                bounds.append(i + 1)
        bounds.append(len(texts))
        parts = [texts[a:b] for a, b in itertools.pairwise(bounds)]
        with ThreadPoolExecutor(threads) as pool:
            return list(chain.from_iterable(pool.map(self._native.encode_many, parts)))

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Lazily encode a stream of strings (e.g. a file's lines) as if they were one string.

        Memory stays bounded by the longest pre-token: after each chunk we emit everything up to
        the last position that no future text can change, and keep only the rest.
        """
        buffer = ""
        for chunk in iterable:
            buffer += chunk
            out: list[int] = []
            settled = self._encode_settled_prefix(buffer, out)
            buffer = buffer[settled:]
            yield from out
        yield from self.encode(buffer)

    def _encode_settled_prefix(self, buffer: str, out: list[int]) -> int:
        """Encode the longest prefix of `buffer` that no continuation can change; return its end.

        Special tokens: a match starting at least `longest special` characters before the end
        is final (a longer token starting there would have fitted in the buffer). Ordinary text:
        a pre-token is final if it is not the last one and starts at least `_LOOKAHEAD_CHARS`
        before the end (only the contraction branch can fail for lack of input; the others stop
        at a character already in the buffer).
        """
        text_start = 0
        # Any special token match must lie wholly before `horizon` to be certain.
        horizon = max(0, len(buffer) - self._longest_special + 1)
        if self._special_re is not None:
            for match in self._special_re.finditer(buffer, 0, len(buffer)):
                if match.start() >= horizon:
                    break
                self._encode_ordinary(buffer[text_start : match.start()], out)
                out.append(self._special_ids[match.group()])
                text_start = match.end()
        text = buffer[text_start:horizon] if self._special_re is not None else buffer
        if not text:
            return text_start
        if self._native is not None:
            ids, cut = self._native.encode_settled(text, _LOOKAHEAD_CHARS)
            out.extend(ids)
            return text_start + cut
        cut = 0
        limit = len(text) - _LOOKAHEAD_CHARS
        pieces = []
        for match in PRETOKEN_RE.finditer(text):
            if match.end() == len(text) or match.start() > limit:
                break
            pieces.append(match.group())
            cut = match.end()
        out.extend(chain.from_iterable(map(self._cache.__getitem__, pieces)))
        return text_start + cut

    # -- decoding ----------------------------------------------------------------------------

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; malformed UTF-8 becomes U+FFFD. Unknown ids raise ValueError."""
        vocab = self.vocab
        ids = ids if isinstance(ids, list | tuple) else list(ids)
        try:
            data = b"".join([vocab[i] for i in ids])
        except (KeyError, TypeError):
            bad = next(i for i in ids if i not in vocab)
            raise ValueError(f"unknown token id {bad!r} (vocab has {len(vocab)} tokens)") from None
        return data.decode("utf-8", errors="replace")

    # -- files of ids ------------------------------------------------------------------------

    def encode_file(
        self,
        src_path: str | os.PathLike,
        dst_path: str | os.PathLike,
        *,
        num_workers: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Encode a UTF-8 text file to a `.npy` of ids: `tinylm.bpe.encode_file(self, ...)`."""
        return encode_file(self, src_path, dst_path, num_workers=num_workers, progress=progress)

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={len(self.vocab)}, merges={len(self.merges)}, "
            f"special_tokens={self.special_tokens!r})"
        )
