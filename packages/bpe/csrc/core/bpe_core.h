/* Shared declarations of the native core (tinylm.bpe._core). */
#ifndef BPE_CORE_H
#define BPE_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

/* A growable array of token ids; `oom` is set (and nothing more appended) on allocation failure. */
typedef struct {
    uint32_t *v;
    size_t n, cap;
    int oom;
} IdVec;

int idvec_reserve(IdVec *vec, size_t extra);
static inline void idvec_push(IdVec *vec, uint32_t id) {
    if (vec->n < vec->cap || idvec_reserve(vec, 1) == 0) vec->v[vec->n++] = id;
}
void idvec_free(IdVec *vec);

/* The UTF-8 bytes of a str: borrowed from the object when it is ASCII, else a new bytes. */
typedef struct {
    const uint8_t *s;
    size_t n;
    PyObject *owner; /* a reference that keeps `s` alive */
} Utf8Text;

int utf8_text(PyObject *str, Utf8Text *out); /* -1 with an exception set */
void utf8_text_release(Utf8Text *text);

/* Pair table: (left id, right id) -> (rank, merged id). */
typedef struct {
    uint64_t *keys; /* left << 32 | right, BPE_EMPTY_PAIR when free */
    int32_t *ranks;
    uint32_t *merged;
    size_t mask;
} PairTable;

#define BPE_EMPTY_PAIR UINT64_MAX
#define BPE_NO_RANK INT32_MAX

int pairs_init(PairTable *table, size_t count);
int pairs_insert(PairTable *table, uint32_t left, uint32_t right, int32_t rank, uint32_t merged);
void pairs_free(PairTable *table);
static inline int32_t pairs_rank(const PairTable *t, uint32_t left, uint32_t right, uint32_t *merged) {
    uint64_t key = ((uint64_t)left << 32) | right;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & t->mask;
    for (;;) {
        uint64_t k = t->keys[i];
        if (k == key) {
            *merged = t->merged[i];
            return t->ranks[i];
        }
        if (k == BPE_EMPTY_PAIR) return BPE_NO_RANK;
        i = (i + 1) & t->mask;
    }
}

/* Rank-ordered BPE of one pre-token's bytes: appends its ids to `out` (leftmost lowest-rank
   pair first, one merge at a time). Returns -1 on allocation failure. */
int bpe_merge(const PairTable *pairs, const uint32_t byte_ids[256], const uint8_t *p, size_t len,
              IdVec *out);

/* Pre-token -> ids cache; used by one thread at a time (the encoder hands them out). */
typedef struct PieceCache PieceCache;
PieceCache *cache_new(size_t max_entries);
void cache_free(PieceCache *cache);
size_t cache_len(const PieceCache *cache);
void cache_clear(PieceCache *cache);
/* Appends the cached ids of p[0:len) to out and returns 1, or returns 0 on a miss. */
int cache_get(PieceCache *cache, uint64_t hash, const uint8_t *p, size_t len, IdVec *out);
void cache_put(PieceCache *cache, uint64_t hash, const uint8_t *p, size_t len,
               const uint32_t *ids, size_t n);

extern PyTypeObject EncoderType;

#endif
