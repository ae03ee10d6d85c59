/* Pair table, rank-ordered BPE inside a pre-token, and the pre-token -> ids cache. */
#include <stdlib.h>
#include <string.h>

#include "bpe_core.h"
#include "hashing.h"

int idvec_reserve(IdVec *vec, size_t extra) {
    if (vec->oom) return -1;
    if (vec->n + extra <= vec->cap) return 0;
    size_t cap = vec->cap ? vec->cap : 256;
    while (cap < vec->n + extra) {
        if (cap > SIZE_MAX / 2 / sizeof(uint32_t)) {
            vec->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    uint32_t *v = realloc(vec->v, cap * sizeof(uint32_t));
    if (!v) {
        vec->oom = 1;
        return -1;
    }
    vec->v = v;
    vec->cap = cap;
    return 0;
}

void idvec_free(IdVec *vec) {
    free(vec->v);
    vec->v = NULL;
    vec->n = vec->cap = 0;
}

/* -- pair table ------------------------------------------------------------------------------ */

int pairs_init(PairTable *t, size_t count) {
    size_t cap = 16;
    while (cap < 2 * count + 2) {
        if (cap > SIZE_MAX / 32) return -1;
        cap *= 2;
    }
    t->keys = malloc(cap * sizeof(uint64_t));
    t->ranks = malloc(cap * sizeof(int32_t));
    t->merged = malloc(cap * sizeof(uint32_t));
    if (!t->keys || !t->ranks || !t->merged) {
        pairs_free(t);
        return -1;
    }
    for (size_t i = 0; i < cap; i++) t->keys[i] = BPE_EMPTY_PAIR;
    t->mask = cap - 1;
    return 0;
}

int pairs_insert(PairTable *t, uint32_t left, uint32_t right, int32_t rank, uint32_t merged) {
    uint64_t key = ((uint64_t)left << 32) | right;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & t->mask;
    while (t->keys[i] != BPE_EMPTY_PAIR) {
        if (t->keys[i] == key) return 0; /* the first (lowest) rank given wins */
        i = (i + 1) & t->mask;
    }
    t->keys[i] = key;
    t->ranks[i] = rank;
    t->merged[i] = merged;
    return 0;
}

void pairs_free(PairTable *t) {
    free(t->keys);
    free(t->ranks);
    free(t->merged);
    t->keys = NULL;
    t->ranks = NULL;
    t->merged = NULL;
}

/* -- BPE inside one pre-token ---------------------------------------------------------------- */

#define SMALL_PIECE 64 /* up to this many bytes: arrays on the stack, a linear scan per merge */

static int merge_small(const PairTable *pairs, const uint32_t byte_ids[256], const uint8_t *p,
                       size_t m, IdVec *out) {
    uint32_t ids[SMALL_PIECE], merged[SMALL_PIECE];
    int32_t ranks[SMALL_PIECE];
    for (size_t k = 0; k < m; k++) ids[k] = byte_ids[p[k]];
    for (size_t k = 0; k + 1 < m; k++) ranks[k] = pairs_rank(pairs, ids[k], ids[k + 1], &merged[k]);
    while (m > 1) {
        size_t best = 0;
        for (size_t k = 1; k + 1 < m; k++)
            if (ranks[k] < ranks[best]) best = k;
        if (ranks[best] == BPE_NO_RANK) break;
        ids[best] = merged[best];
        m--;
        for (size_t k = best + 1; k < m; k++) ids[k] = ids[k + 1];
        for (size_t k = best; k + 1 < m; k++) {
            ranks[k] = ranks[k + 1];
            merged[k] = merged[k + 1];
        }
        if (best > 0) ranks[best - 1] = pairs_rank(pairs, ids[best - 1], ids[best], &merged[best - 1]);
        if (best + 1 < m) ranks[best] = pairs_rank(pairs, ids[best], ids[best + 1], &merged[best]);
    }
    if (idvec_reserve(out, m) < 0) return -1;
    memcpy(out->v + out->n, ids, m * sizeof(uint32_t));
    out->n += m;
    return 0;
}

/* Long pieces: a linked list of tokens and a min-heap of (rank, position) with lazy
   invalidation. Positions keep their order, so the heap's minimum is the leftmost lowest-rank
   pair, the same step the linear scan takes. */
typedef struct {
    int32_t rank;
    uint32_t pos, left, right;
} HeapItem;

static inline int heap_less(const HeapItem *a, const HeapItem *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(HeapItem *heap, size_t *n, HeapItem item) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&item, &heap[parent])) break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = item;
}

static HeapItem heap_pop(HeapItem *heap, size_t *n) {
    HeapItem top = heap[0], last = heap[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= *n) break;
        if (child + 1 < *n && heap_less(&heap[child + 1], &heap[child])) child++;
        if (!heap_less(&heap[child], &last)) break;
        heap[i] = heap[child];
        i = child;
    }
    if (*n) heap[i] = last;
    return top;
}

#define NONE UINT32_MAX

static int merge_large(const PairTable *pairs, const uint32_t byte_ids[256], const uint8_t *p,
                       size_t m, IdVec *out) {
    /* positions are uint32; the heap holds up to 3m items */
    if (m >= NONE / 3 || m > SIZE_MAX / (3 * sizeof(HeapItem))) return -1;
    uint32_t *ids = malloc(m * sizeof(uint32_t));
    uint32_t *next = malloc(m * sizeof(uint32_t));
    uint32_t *prev = malloc(m * sizeof(uint32_t));
    HeapItem *heap = malloc(3 * m * sizeof(HeapItem)); /* m - 1 pairs + 2 per merge */
    int status = -1;
    if (!ids || !next || !prev || !heap) goto done;
    size_t nheap = 0;
    for (size_t k = 0; k < m; k++) {
        ids[k] = byte_ids[p[k]];
        next[k] = k + 1 < m ? (uint32_t)(k + 1) : NONE;
        prev[k] = k ? (uint32_t)(k - 1) : NONE;
    }
    uint32_t merged;
    for (size_t k = 0; k + 1 < m; k++) {
        int32_t rank = pairs_rank(pairs, ids[k], ids[k + 1], &merged);
        if (rank != BPE_NO_RANK) heap_push(heap, &nheap, (HeapItem){rank, (uint32_t)k, ids[k], ids[k + 1]});
    }
    while (nheap) {
        HeapItem top = heap_pop(heap, &nheap);
        uint32_t pos = top.pos, right = next[pos];
        /* stale: the left token was merged away (prev == pos marks it) or the pair changed */
        if (prev[pos] == pos || right == NONE || ids[pos] != top.left || ids[right] != top.right) continue;
        pairs_rank(pairs, top.left, top.right, &merged);
        ids[pos] = merged;
        next[pos] = next[right];
        if (next[right] != NONE) prev[next[right]] = pos;
        prev[right] = right; /* dead */
        if (prev[pos] != NONE) {
            uint32_t l = prev[pos];
            int32_t rank = pairs_rank(pairs, ids[l], ids[pos], &merged);
            if (rank != BPE_NO_RANK) heap_push(heap, &nheap, (HeapItem){rank, l, ids[l], ids[pos]});
        }
        if (next[pos] != NONE) {
            uint32_t r = next[pos];
            int32_t rank = pairs_rank(pairs, ids[pos], ids[r], &merged);
            if (rank != BPE_NO_RANK) heap_push(heap, &nheap, (HeapItem){rank, pos, ids[pos], ids[r]});
        }
    }
    for (uint32_t k = 0; k != NONE; k = next[k]) idvec_push(out, ids[k]);
    status = out->oom ? -1 : 0;
done:
    free(ids);
    free(next);
    free(prev);
    free(heap);
    return status;
}

int bpe_merge(const PairTable *pairs, const uint32_t byte_ids[256], const uint8_t *p, size_t len,
              IdVec *out) {
    if (len == 0) return 0;
    if (len == 1) {
        idvec_push(out, byte_ids[p[0]]);
        return out->oom ? -1 : 0;
    }
    if (len <= SMALL_PIECE) return merge_small(pairs, byte_ids, p, len, out);
    return merge_large(pairs, byte_ids, p, len, out);
}

/* -- pre-token -> ids cache ------------------------------------------------------------------ */

#define CACHE_ARENA_LIMIT ((size_t)64 << 20) /* bytes of keys or ids before the cache empties */

typedef struct {
    uint64_t hash;
    size_t key_off, ids_off;
    uint32_t key_len, ids_len; /* key_len 0: a free slot (cached pieces have >= 2 bytes) */
} CacheSlot;

struct PieceCache {
    CacheSlot *slots;
    size_t mask, count, max_entries;
    uint8_t *keys;
    size_t keys_n, keys_cap;
    uint32_t *ids;
    size_t ids_n, ids_cap;
};

PieceCache *cache_new(size_t max_entries) {
    PieceCache *c = calloc(1, sizeof(PieceCache));
    if (!c) return NULL;
    size_t cap = 16;
    while (cap < 2 * max_entries && cap < ((size_t)1 << 40)) cap *= 2;
    c->slots = calloc(cap, sizeof(CacheSlot));
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->mask = cap - 1;
    c->max_entries = max_entries < cap / 2 ? max_entries : cap / 2; /* always a free slot */
    return c;
}

void cache_free(PieceCache *c) {
    if (!c) return;
    free(c->slots);
    free(c->keys);
    free(c->ids);
    free(c);
}

size_t cache_len(const PieceCache *c) { return c->count; }

void cache_clear(PieceCache *c) {
    memset(c->slots, 0, (c->mask + 1) * sizeof(CacheSlot));
    c->count = c->keys_n = c->ids_n = 0;
}

int cache_get(PieceCache *c, uint64_t hash, const uint8_t *p, size_t len, IdVec *out) {
    size_t i = (size_t)hash & c->mask;
    for (;;) {
        const CacheSlot *slot = &c->slots[i];
        if (slot->key_len == 0) return 0;
        if (slot->hash == hash && slot->key_len == len && memcmp(c->keys + slot->key_off, p, len) == 0) {
            if (idvec_reserve(out, slot->ids_len) < 0) return 1; /* out->oom reports it */
            memcpy(out->v + out->n, c->ids + slot->ids_off, slot->ids_len * sizeof(uint32_t));
            out->n += slot->ids_len;
            return 1;
        }
        i = (i + 1) & c->mask;
    }
}

static int grow(void **buf, size_t *cap, size_t need, size_t item) {
    if (need <= *cap) return 0;
    size_t cap2 = *cap ? *cap : 4096;
    while (cap2 < need) cap2 *= 2;
    void *b = realloc(*buf, cap2 * item);
    if (!b) return -1;
    *buf = b;
    *cap = cap2;
    return 0;
}

void cache_put(PieceCache *c, uint64_t hash, const uint8_t *p, size_t len, const uint32_t *ids,
               size_t n) {
    if (len < 2 || len > UINT32_MAX || n > UINT32_MAX) return;
    if (c->count >= c->max_entries || c->keys_n + len > CACHE_ARENA_LIMIT ||
        (c->ids_n + n) * sizeof(uint32_t) > CACHE_ARENA_LIMIT)
        cache_clear(c); /* bounded: start over, as the reference cache does */
    if (c->max_entries == 0) return;
    /* a failed allocation only means this piece is not cached */
    if (grow((void **)&c->keys, &c->keys_cap, c->keys_n + len, 1) < 0) return;
    if (grow((void **)&c->ids, &c->ids_cap, c->ids_n + n, sizeof(uint32_t)) < 0) return;
    size_t i = (size_t)hash & c->mask;
    while (c->slots[i].key_len != 0) i = (i + 1) & c->mask;
    memcpy(c->keys + c->keys_n, p, len);
    memcpy(c->ids + c->ids_n, ids, n * sizeof(uint32_t));
    c->slots[i] = (CacheSlot){hash, c->keys_n, c->ids_n, (uint32_t)len, (uint32_t)n};
    c->keys_n += len;
    c->ids_n += n;
    c->count++;
}
