"""Rank-ordered BPE inside pre-tokens: one pre-token at a time, or many at once with numpy.

Both give exactly the same ids. Inside a pre-token, repeatedly merge the leftmost adjacent pair of
lowest merge rank until no pair has a rank (as tiktoken does). For trained merge tables, where a
merge only creates pairs of higher rank than its own, this equals GPT-2's "merge every occurrence";
for any table, both functions here follow the leftmost-lowest rule, one merge at a time.

`piece_encoder` is the reference: a closure over the tables, with exact shortcuts for 1- and
2-byte pieces (a 2-byte piece is one token iff its pair has a rank). `BatchMerger` runs the same
steps for many pre-tokens side by side: each step merges, in every pre-token at once, its
leftmost lowest-rank pair, which is the step the reference takes for that pre-token. It pays off
when a text brings thousands of new pre-tokens (a cold cache).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable

import numpy as np

_NO_RANK = sys.maxsize
_NO_RANKS = itertools.repeat(_NO_RANK)
_INF = np.iinfo(np.int64).max


def piece_encoder(
    byte_ids: list[int], ranks: dict[tuple[int, int], int], merged_id_by_rank: list[int]
) -> Callable[[str], list[int]]:
    """A function: pre-token -> ids. `ranks[(a, b)]` merges into `merged_id_by_rank[rank]`."""
    rank_of = ranks.get
    byte_id = byte_ids.__getitem__
    pairwise = itertools.pairwise

    def encode_piece(piece: str) -> list[int]:
        data = piece.encode("utf-8")
        if len(data) < 3:  # shortcuts: nothing to merge, or exactly one pair
            if len(data) < 2:
                return [byte_ids[data[0]]] if data else []
            first, second = byte_ids[data[0]], byte_ids[data[1]]
            rank = rank_of((first, second))
            return [first, second] if rank is None else [merged_id_by_rank[rank]]
        ids = list(map(byte_id, data))
        # pair_ranks[i] is the rank of (ids[i], ids[i + 1]); min/index run in C.
        pair_ranks = list(map(rank_of, pairwise(ids), _NO_RANKS))
        while True:
            rank = min(pair_ranks)
            if rank == _NO_RANK:
                return ids
            i = pair_ranks.index(rank)
            new_id = ids[i] = merged_id_by_rank[rank]
            del ids[i + 1], pair_ranks[i]
            if i:
                pair_ranks[i - 1] = rank_of((ids[i - 1], new_id), _NO_RANK)
            if i < len(pair_ranks):
                pair_ranks[i] = rank_of((new_id, ids[i + 1]), _NO_RANK)
            elif not i:
                return ids

    return encode_piece


class BatchMerger:
    """Encode many pre-tokens at once: one numpy pass per merge step, all pre-tokens in step.

    All pre-tokens' bytes lie in one flat array; `seg` says which pre-token each position belongs
    to and `pair_rank[k]` is the rank of (ids[k], ids[k + 1]) inside one pre-token (else INF).
    A step finds each pre-token's minimum (`minimum.reduceat`), takes its leftmost occurrence,
    writes the merged id there, deletes the right half, and re-ranks only the two pairs around
    each merge. Pair ranks are looked up in a sorted array of keys `left * id_bound + right`, and
    byte-byte pairs (all of the first step's) in a dense 256 x 256 table.
    """

    def __init__(
        self,
        byte_ids: list[int],
        ranks: dict[tuple[int, int], int],
        merged_id_by_rank: list[int],
    ) -> None:
        self.byte_ids = np.array(byte_ids, dtype=np.int64)
        self.merged = np.array(merged_id_by_rank, dtype=np.int64)
        pairs = np.array(list(ranks), dtype=np.int64).reshape(-1, 2)
        pair_ranks = np.fromiter(ranks.values(), dtype=np.int64, count=len(ranks))
        largest_id = max(pairs.max(initial=0), self.byte_ids.max(), self.merged.max(initial=0))
        self.id_bound = int(largest_id) + 1
        keys = pairs[:, 0] * self.id_bound + pairs[:, 1]
        order = np.argsort(keys)
        self.keys, self.key_ranks = keys[order], pair_ranks[order]
        left, right = _byte_of(self.byte_ids, pairs[:, 0]), _byte_of(self.byte_ids, pairs[:, 1])
        both = (left >= 0) & (right >= 0)
        self.byte_pair_ranks = np.full(256 * 256, _INF, dtype=np.int64)
        self.byte_pair_ranks[left[both] * 256 + right[both]] = pair_ranks[both]

    def _pair_ranks(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        keys = left * self.id_bound + right
        at = np.searchsorted(self.keys, keys)
        at[at == len(self.keys)] = 0
        return np.where(self.keys[at] == keys, self.key_ranks[at], _INF)

    def __call__(self, pieces: list[str]) -> list[list[int]]:
        """The ids of each (non-empty) pre-token, as `piece_encoder` would give them."""
        results: list[list[int]] = [None] * len(pieces)  # type: ignore[list-item]
        encoded = [piece.encode("utf-8") for piece in pieces]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        raw = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.int64)
        ids = self.byte_ids[raw]
        pair_rank = np.full(len(ids), _INF, dtype=np.int64)
        pair_rank[:-1] = self.byte_pair_ranks[raw[:-1] * 256 + raw[1:]]
        pair_rank[np.cumsum(lengths)[:-1] - 1] = _INF  # no pair across pre-tokens
        live = np.arange(len(pieces))  # the pre-token (index into `pieces`) of each segment
        while len(live):
            starts = np.cumsum(lengths) - lengths
            seg_min = np.minimum.reduceat(pair_rank, starts)
            done = seg_min == _INF
            if done.any():  # hand finished pre-tokens over, keep working on the others
                done_at = np.repeat(done, lengths)
                _collect(results, live[done], lengths[done], ids[done_at])
                kept = ~done
                ids, pair_rank = ids[~done_at], pair_rank[~done_at]
                live, lengths, seg_min = live[kept], lengths[kept], seg_min[kept]
                if not len(live):
                    break
                starts = np.cumsum(lengths) - lengths
            # Every segment merges once, at its leftmost position holding its minimum rank: the
            # first such position at or after the segment's start.
            at_min = np.flatnonzero(pair_rank == np.repeat(seg_min, lengths))
            merge_at = at_min[np.searchsorted(at_min, starts)]
            ids[merge_at] = self.merged[pair_rank[merge_at]]
            keep = np.ones(len(ids), dtype=bool)
            keep[merge_at + 1] = False
            ids, pair_rank = ids[keep], pair_rank[keep]
            lengths -= 1
            # Segment s lost one position in each of the s segments before it.
            shift = np.arange(len(merge_at))
            merged_at, seg_start = merge_at - shift, starts - shift
            left = merged_at[merged_at > seg_start] - 1
            right = merged_at[merged_at + 1 < seg_start + lengths]
            around = np.concatenate([left, right])
            pair_rank[merged_at] = _INF
            pair_rank[around] = self._pair_ranks(ids[around], ids[around + 1])
        return results


def _byte_of(byte_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The byte whose token each id is, or -1."""
    order = np.argsort(byte_ids)
    at = np.searchsorted(byte_ids[order], ids).clip(max=255)
    return np.where(byte_ids[order][at] == ids, order[at], -1)


def _collect(results: list, pieces: np.ndarray, lengths: np.ndarray, ids: np.ndarray) -> None:
    """results[pieces[k]] = the k-th run of `lengths[k]` ids."""
    flat = ids.tolist()
    ends = np.cumsum(lengths).tolist()
    for piece, start, end in zip(pieces.tolist(), [0, *ends], ends, strict=False):
        results[piece] = flat[start:end]
