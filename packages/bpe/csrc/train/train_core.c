/* tinylm.bpe._train_core: the BPE merge loop of train_bpe in C.

   merge_pairs(word_counts: dict[bytes, int] | counts table, num_tokens: int, progress=None, *,
               consume=False) -> (tokens: list[bytes], merges: list[tuple[bytes, bytes]])
   new_counts, count_text, merge_counts, counts_to_dict: counting in C (counts.c)

   Same result as the reference train.merge_pairs: repeatedly merge the pair of greatest
   (count, bytes of left token, bytes of right token), left to right and non-overlapping inside
   every word, until there are num_tokens tokens or no pair is left. A merge whose byte string
   is already a token is recorded but reuses that token's id.

   State, all sized by the distinct words (never by the corpus):
   - words: token ids in one flat array, each word shrinking in place as it merges;
   - pairs: (left, right) -> record {count, words that (may) hold it}, in an open-addressing
     table; word lists keep stale entries (a merge then finds nothing to do in that word);
   - a max-heap of (count, pair) with lazy invalidation: a count that drops is fixed when its
     entry reaches the top (re-pushed with the current count), a count that rises gets a fresh
     entry. So some entry of every live pair is >= its count, and an entry whose count equals
     its pair's current count at the top is the true maximum.
   The merge loop runs without the GIL; it takes it back every PROGRESS_EVERY merges to check
   for signals (Ctrl-C) and report progress. Every allocation is checked (MemoryError). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "counts.h"

#define PROGRESS_EVERY 256
#define NO_PAIR UINT64_MAX

typedef struct {
    int64_t count;
    int64_t old_count; /* count before the current merge, valid when stamp == merge number */
    int32_t left, right;
    int32_t *words; /* word indices, possibly stale or repeated */
    int32_t nwords, capwords;
    int64_t stamp;
} Pair;

typedef struct {
    int64_t count;
    int32_t pair;
} HeapEntry;

typedef struct {
    /* words */
    int32_t *ids;
    size_t *word_start;
    int32_t *word_len;
    int64_t *word_count;
    int32_t nwords;
    /* tokens: bytes in one arena, and a bytes -> id hash set */
    unsigned char *tok_bytes;
    size_t tok_bytes_len, tok_bytes_cap;
    size_t *tok_start;
    int32_t *tok_len;
    int32_t ntokens, captokens;
    int32_t *tok_table; /* open addressing, -1 = empty */
    size_t tok_table_cap;
    /* pairs */
    Pair *pairs;
    int32_t npairs, cappairs;
    uint64_t *pair_keys; /* open addressing, NO_PAIR = empty */
    int32_t *pair_vals;
    size_t pair_table_cap;
    /* heap */
    HeapEntry *heap;
    size_t heap_len, heap_cap;
    /* merges made, as token ids */
    int32_t *merges;
    size_t nmerges, capmerges;
    /* pairs touched by the current merge */
    int32_t *touched;
    size_t ntouched, captouched;
} State;

static void state_free(State *s) {
    free(s->ids);
    free(s->word_start);
    free(s->word_len);
    free(s->word_count);
    free(s->tok_bytes);
    free(s->tok_start);
    free(s->tok_len);
    free(s->tok_table);
    if (s->pairs) {
        for (int32_t i = 0; i < s->npairs; i++) free(s->pairs[i].words);
    }
    free(s->pairs);
    free(s->pair_keys);
    free(s->pair_vals);
    free(s->heap);
    free(s->merges);
    free(s->touched);
    memset(s, 0, sizeof(*s));
}

/* Grow *buf (elements of `size` bytes) to hold at least `need` elements. 0 on success. */
static int grow(void **buf, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t new_cap = *cap ? *cap : 16;
    while (new_cap < need) {
        if (new_cap > SIZE_MAX / 2 / size) return -1;
        new_cap *= 2;
    }
    void *p = realloc(*buf, new_cap * size);
    if (!p) return -1;
    *buf = p;
    *cap = new_cap;
    return 0;
}

static int grow32(void **buf, int32_t *cap, size_t need, size_t size) {
    if (need > INT32_MAX) return -1;
    size_t c = (size_t)*cap;
    if (grow(buf, &c, need, size)) return -1;
    *cap = c > INT32_MAX ? INT32_MAX : (int32_t)c;
    return 0;
}

/* ---- tokens ------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static const unsigned char *tok_data(const State *s, int32_t t) { return s->tok_bytes + s->tok_start[t]; }

/* Slot of `bytes` in the token table: the slot holding it, or the empty slot where it goes. */
static size_t tok_slot(const State *s, const unsigned char *p, size_t n) {
    size_t mask = s->tok_table_cap - 1, i = hash_bytes(p, n) & mask;
    for (;;) {
        int32_t t = s->tok_table[i];
        if (t < 0 || ((size_t)s->tok_len[t] == n && memcmp(tok_data(s, t), p, n) == 0)) return i;
        i = (i + 1) & mask;
    }
}

static int tok_table_resize(State *s, size_t cap) {
    int32_t *table = malloc(cap * sizeof(int32_t));
    if (!table) return -1;
    for (size_t i = 0; i < cap; i++) table[i] = -1;
    free(s->tok_table);
    s->tok_table = table;
    s->tok_table_cap = cap;
    for (int32_t t = 0; t < s->ntokens; t++)
        s->tok_table[tok_slot(s, tok_data(s, t), (size_t)s->tok_len[t])] = t;
    return 0;
}

/* The id of the concatenation of tokens a and b, adding it if new. -1 on memory error. */
static int32_t tok_concat(State *s, int32_t a, int32_t b) {
    size_t la = (size_t)s->tok_len[a], lb = (size_t)s->tok_len[b], n = la + lb;
    if (n > INT32_MAX) return -1;
    if (grow((void **)&s->tok_bytes, &s->tok_bytes_cap, s->tok_bytes_len + n, 1)) return -1;
    unsigned char *p = s->tok_bytes + s->tok_bytes_len; /* the arena may have moved: take it now */
    memcpy(p, tok_data(s, a), la);
    memcpy(p + la, tok_data(s, b), lb);
    size_t slot = tok_slot(s, p, n);
    if (s->tok_table[slot] >= 0) return s->tok_table[slot]; /* existing byte string: reuse */
    if (grow32((void **)&s->tok_start, &s->captokens, (size_t)s->ntokens + 1, sizeof(size_t)))
        return -1;
    int32_t cap = s->captokens;
    /* tok_len grows in step with tok_start */
    int32_t *len = realloc(s->tok_len, (size_t)cap * sizeof(int32_t));
    if (!len) return -1;
    s->tok_len = len;
    int32_t t = s->ntokens++;
    s->tok_start[t] = s->tok_bytes_len;
    s->tok_len[t] = (int32_t)n;
    s->tok_bytes_len += n;
    s->tok_table[slot] = t;
    if ((size_t)s->ntokens * 2 > s->tok_table_cap && tok_table_resize(s, s->tok_table_cap * 2))
        return -1;
    return t;
}

static int tokens_init(State *s) {
    if (grow((void **)&s->tok_bytes, &s->tok_bytes_cap, 4096, 1)) return -1;
    if (grow32((void **)&s->tok_start, &s->captokens, 512, sizeof(size_t))) return -1;
    s->tok_len = malloc((size_t)s->captokens * sizeof(int32_t));
    if (!s->tok_len) return -1;
    for (int32_t t = 0; t < 256; t++) {
        s->tok_bytes[t] = (unsigned char)t;
        s->tok_start[t] = (size_t)t;
        s->tok_len[t] = 1;
    }
    s->tok_bytes_len = 256;
    s->ntokens = 256;
    return tok_table_resize(s, 1024);
}

/* ---- pairs -------------------------------------------------------------------------------- */

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static size_t pair_slot(const State *s, uint64_t key) {
    size_t mask = s->pair_table_cap - 1;
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;
    size_t i = (size_t)(h >> 17) & mask;
    while (s->pair_keys[i] != NO_PAIR && s->pair_keys[i] != key) i = (i + 1) & mask;
    return i;
}

static int pair_table_resize(State *s, size_t cap) {
    uint64_t *keys = malloc(cap * sizeof(uint64_t));
    int32_t *vals = malloc(cap * sizeof(int32_t));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    for (size_t i = 0; i < cap; i++) keys[i] = NO_PAIR;
    free(s->pair_keys);
    free(s->pair_vals);
    s->pair_keys = keys;
    s->pair_vals = vals;
    s->pair_table_cap = cap;
    for (int32_t p = 0; p < s->npairs; p++) {
        size_t i = pair_slot(s, pair_key(s->pairs[p].left, s->pairs[p].right));
        s->pair_keys[i] = pair_key(s->pairs[p].left, s->pairs[p].right);
        s->pair_vals[i] = p;
    }
    return 0;
}

/* Index of pair (a, b), created with count 0 if new. -1 on memory error. */
static int32_t pair_get(State *s, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b);
    size_t i = pair_slot(s, key);
    if (s->pair_keys[i] == key) return s->pair_vals[i];
    if (grow32((void **)&s->pairs, &s->cappairs, (size_t)s->npairs + 1, sizeof(Pair))) return -1;
    int32_t p = s->npairs++;
    memset(&s->pairs[p], 0, sizeof(Pair));
    s->pairs[p].left = a;
    s->pairs[p].right = b;
    s->pairs[p].stamp = -1;
    s->pair_keys[i] = key;
    s->pair_vals[i] = p;
    if ((size_t)s->npairs * 2 > s->pair_table_cap && pair_table_resize(s, s->pair_table_cap * 2))
        return -1;
    return p;
}

static int pair_add_word(Pair *pair, int32_t word) {
    if (pair->nwords && pair->words[pair->nwords - 1] == word) return 0;
    if (grow32((void **)&pair->words, &pair->capwords, (size_t)pair->nwords + 1, sizeof(int32_t)))
        return -1;
    pair->words[pair->nwords++] = word;
    return 0;
}

/* ---- heap: greatest (count, left bytes, right bytes) on top -------------------------------- */

static int bytes_cmp(const State *s, int32_t x, int32_t y) {
    if (x == y) return 0;
    size_t lx = (size_t)s->tok_len[x], ly = (size_t)s->tok_len[y];
    int c = memcmp(tok_data(s, x), tok_data(s, y), lx < ly ? lx : ly);
    if (c) return c;
    return lx < ly ? -1 : (lx > ly ? 1 : 0); /* a proper prefix is smaller */
}

static int above(const State *s, const HeapEntry *x, const HeapEntry *y) {
    if (x->count != y->count) return x->count > y->count;
    const Pair *px = &s->pairs[x->pair], *py = &s->pairs[y->pair];
    int c = bytes_cmp(s, px->left, py->left);
    if (c) return c > 0;
    return bytes_cmp(s, px->right, py->right) > 0;
}

static int heap_push(State *s, int64_t count, int32_t pair) {
    if (grow((void **)&s->heap, &s->heap_cap, s->heap_len + 1, sizeof(HeapEntry))) return -1;
    HeapEntry e = {count, pair};
    size_t i = s->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!above(s, &e, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = e;
    return 0;
}

static HeapEntry heap_pop(State *s) {
    HeapEntry top = s->heap[0], last = s->heap[--s->heap_len];
    size_t n = s->heap_len, i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && above(s, &s->heap[child + 1], &s->heap[child])) child++;
        if (!above(s, &s->heap[child], &last)) break;
        s->heap[i] = s->heap[child];
        i = child;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* ---- building and merging ------------------------------------------------------------------ */

static int alloc_words(State *s, size_t nwords, size_t total) {
    if (nwords > INT32_MAX || total > SIZE_MAX / sizeof(int32_t)) {
        PyErr_SetString(PyExc_MemoryError, "too many distinct words");
        return -1;
    }
    s->ids = malloc((total ? total : 1) * sizeof(int32_t));
    s->word_start = malloc((nwords ? nwords : 1) * sizeof(size_t));
    s->word_len = malloc((nwords ? nwords : 1) * sizeof(int32_t));
    s->word_count = malloc((nwords ? nwords : 1) * sizeof(int64_t));
    if (!s->ids || !s->word_start || !s->word_len || !s->word_count) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Copy the words of a counts table (GIL held). -1 with a Python error set. */
static int load_table(State *s, const CountTable *t) {
    size_t total = 0, nwords = 0;
    for (size_t i = 0; t->slots && i <= t->mask; i++) {
        if (t->slots[i].count && t->slots[i].len > 1) {
            if (t->slots[i].len > INT32_MAX) {
                PyErr_SetString(PyExc_ValueError, "word too long");
                return -1;
            }
            total += t->slots[i].len;
            nwords++;
        }
    }
    if (alloc_words(s, nwords, total)) return -1;
    size_t at = 0;
    int32_t w = 0;
    for (size_t i = 0; t->slots && i <= t->mask; i++) {
        const CountSlot *slot = &t->slots[i];
        if (!slot->count || slot->len < 2) continue;
        const unsigned char *p = t->arena + slot->off;
        s->word_start[w] = at;
        s->word_len[w] = (int32_t)slot->len;
        s->word_count[w] = slot->count;
        for (size_t k = 0; k < slot->len; k++) s->ids[at++] = p[k];
        w++;
    }
    s->nwords = w;
    return 0;
}

/* Copy the words (GIL held). -1 with a Python error set. */
static int load_words(State *s, PyObject *word_counts) {
    if (PyCapsule_CheckExact(word_counts)) {
        CountTable *t = counts_table(word_counts);
        if (!t) return -1;
        if (t->busy) {
            PyErr_SetString(PyExc_RuntimeError, "counts table in use by another thread");
            return -1;
        }
        return load_table(s, t);
    }
    if (!PyDict_Check(word_counts)) {
        PyErr_SetString(PyExc_TypeError,
                        "word_counts must be a dict of bytes -> int or a counts table");
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    size_t total = 0, nwords = 0;
    while (PyDict_Next(word_counts, &pos, &key, &value)) {
        if (!PyBytes_Check(key)) {
            PyErr_SetString(PyExc_TypeError, "word_counts keys must be bytes");
            return -1;
        }
        if (PyBytes_GET_SIZE(key) > 1) {
            total += (size_t)PyBytes_GET_SIZE(key);
            nwords++;
        }
    }
    if (alloc_words(s, nwords, total)) return -1;
    size_t at = 0;
    int32_t w = 0;
    pos = 0;
    while (PyDict_Next(word_counts, &pos, &key, &value)) {
        Py_ssize_t len = PyBytes_GET_SIZE(key);
        if (len < 2) continue; /* a 1-byte word holds no pair: it cannot change the merges */
        if (len > INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "word too long");
            return -1;
        }
        if ((size_t)w >= nwords) {
            PyErr_SetString(PyExc_RuntimeError, "word_counts changed size during the call");
            return -1;
        }
        long long count = PyLong_AsLongLong(value);
        if (count == -1 && PyErr_Occurred()) return -1;
        if (count < 0) {
            PyErr_SetString(PyExc_ValueError, "word counts must be >= 0");
            return -1;
        }
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(key);
        s->word_start[w] = at;
        s->word_len[w] = (int32_t)len;
        s->word_count[w] = count;
        for (Py_ssize_t i = 0; i < len; i++) s->ids[at++] = p[i];
        w++;
    }
    s->nwords = w;
    return 0;
}

/* Count every pair and fill the heap (no GIL needed). -1 on memory error. */
static int count_pairs(State *s) {
    if (pair_table_resize(s, 1 << 16)) return -1;
    for (int32_t w = 0; w < s->nwords; w++) {
        const int32_t *ids = s->ids + s->word_start[w];
        int64_t count = s->word_count[w];
        if (!count) continue;
        for (int32_t i = 0; i + 1 < s->word_len[w]; i++) {
            int32_t p = pair_get(s, ids[i], ids[i + 1]);
            if (p < 0) return -1;
            if (s->pairs[p].count > INT64_MAX - count) return -2;
            s->pairs[p].count += count;
            if (pair_add_word(&s->pairs[p], w)) return -1;
        }
    }
    for (int32_t p = 0; p < s->npairs; p++)
        if (heap_push(s, s->pairs[p].count, p)) return -1;
    return 0;
}

/* count(a, b) += delta during merge number `stamp`, noting the word for a new occurrence. */
static int bump(State *s, int32_t a, int32_t b, int64_t delta, int32_t word, int64_t stamp) {
    int32_t p = pair_get(s, a, b);
    if (p < 0) return -1;
    Pair *pair = &s->pairs[p];
    if (pair->stamp != stamp) {
        if (grow((void **)&s->touched, &s->captouched, s->ntouched + 1, sizeof(int32_t))) return -1;
        s->touched[s->ntouched++] = p;
        pair->stamp = stamp;
        pair->old_count = pair->count;
    }
    pair->count += delta;
    if (delta > 0 && pair_add_word(pair, word)) return -1;
    return 0;
}

/* Replace (a, b) by `merged` in every word that holds it, left to right, non-overlapping, and
   update the counts of the neighbouring pairs. With back-to-back occurrences ("a b a b") the
   second sees the merged token as its left neighbour, as in the reference. */
static int merge_everywhere(State *s, int32_t p, int32_t merged, int64_t stamp) {
    int32_t a = s->pairs[p].left, b = s->pairs[p].right;
    int32_t *words = s->pairs[p].words, nwords = s->pairs[p].nwords;
    s->pairs[p].words = NULL; /* this pair dies: its list is ours now */
    s->pairs[p].nwords = s->pairs[p].capwords = 0;
    s->pairs[p].count = 0;
    s->pairs[p].stamp = stamp; /* never "touched": its own deltas are dropped */
    s->ntouched = 0;
    int rc = 0;
    for (int32_t k = 0; k < nwords && !rc; k++) {
        int32_t w = words[k];
        int32_t *ids = s->ids + s->word_start[w];
        int32_t len = s->word_len[w];
        int64_t count = s->word_count[w];
        /* One pass, reading at r and writing at o <= r: linear in the word's length however
           many occurrences it holds (a run of a million "a" merges in O(n), not O(n^2)). */
        int32_t o = 0, r = 0;
        while (r < len) {
            if (r + 1 >= len || ids[r] != a || ids[r + 1] != b) {
                ids[o++] = ids[r++];
                continue;
            }
            if (o > 0) { /* the left neighbour as already rewritten (maybe `merged`) */
                int32_t prev = ids[o - 1];
                if (!(prev == a && a == b) && (rc = bump(s, prev, a, -count, w, stamp))) break;
                if ((rc = bump(s, prev, merged, count, w, stamp))) break;
            }
            if (r + 2 < len) {
                int32_t after = ids[r + 2];
                if (!(after == b && a == b) && (rc = bump(s, b, after, -count, w, stamp))) break;
                if ((rc = bump(s, merged, after, count, w, stamp))) break;
            }
            ids[o++] = merged;
            r += 2;
        }
        if (rc) break;
        len = o;
        s->word_len[w] = len;
    }
    free(words);
    if (rc) return rc;
    for (size_t k = 0; k < s->ntouched; k++) {
        Pair *pair = &s->pairs[s->touched[k]];
        if (pair->count > pair->old_count) {
            if (heap_push(s, pair->count, s->touched[k])) return -1;
        } else if (pair->count <= 0) {
            pair->count = 0; /* gone from every word: drop its list now */
            free(pair->words);
            pair->words = NULL;
            pair->nwords = pair->capwords = 0;
        }
    }
    return 0;
}

/* The merge loop (no GIL, except every PROGRESS_EVERY merges). -1 memory error, -2 Python
   error (signal or progress callback) already set. */
static int run_merges(State *s, int32_t num_tokens, PyObject *progress) {
    PyThreadState *save = PyEval_SaveThread();
    int rc = count_pairs(s);
    int64_t stamp = 0;
    int32_t reported = s->ntokens;
    while (!rc && s->ntokens < num_tokens && s->heap_len) {
        HeapEntry top = heap_pop(s);
        Pair *pair = &s->pairs[top.pair];
        if (pair->count == 0 || top.count < pair->count) continue; /* dead, or a newer entry */
        if (top.count > pair->count) { /* the count dropped since the push: re-queue */
            if (heap_push(s, pair->count, top.pair)) rc = -1;
            continue;
        }
        int32_t merged = tok_concat(s, pair->left, pair->right);
        if (merged < 0 ||
            grow((void **)&s->merges, &s->capmerges, 2 * (s->nmerges + 1), sizeof(int32_t))) {
            rc = -1;
            break;
        }
        s->merges[2 * s->nmerges] = pair->left;
        s->merges[2 * s->nmerges + 1] = pair->right;
        s->nmerges++;
        rc = merge_everywhere(s, top.pair, merged, ++stamp);
        if (!rc && stamp % PROGRESS_EVERY == 0) {
            PyEval_RestoreThread(save);
            if (PyErr_CheckSignals()) rc = -2;
            if (!rc && progress != Py_None) {
                PyObject *r = PyObject_CallFunction(progress, "i", s->ntokens - reported);
                reported = s->ntokens;
                if (!r) rc = -2;
                Py_XDECREF(r);
            }
            save = PyEval_SaveThread();
        }
    }
    PyEval_RestoreThread(save);
    if (!rc && progress != Py_None && s->ntokens > reported) {
        PyObject *r = PyObject_CallFunction(progress, "i", s->ntokens - reported);
        if (!r) rc = -2;
        Py_XDECREF(r);
    }
    if (rc == -1) PyErr_NoMemory();
    return rc;
}

static PyObject *build_result(State *s) {
    PyObject *tokens = PyList_New(s->ntokens), *merges = NULL, *result = NULL;
    if (!tokens) return NULL;
    for (int32_t t = 0; t < s->ntokens; t++) {
        PyObject *b = PyBytes_FromStringAndSize((const char *)tok_data(s, t), s->tok_len[t]);
        if (!b) goto done;
        PyList_SET_ITEM(tokens, t, b);
    }
    merges = PyList_New((Py_ssize_t)s->nmerges);
    if (!merges) goto done;
    for (size_t m = 0; m < s->nmerges; m++) {
        PyObject *pair = PyTuple_Pack(2, PyList_GET_ITEM(tokens, s->merges[2 * m]),
                                      PyList_GET_ITEM(tokens, s->merges[2 * m + 1]));
        if (!pair) goto done;
        PyList_SET_ITEM(merges, (Py_ssize_t)m, pair);
    }
    result = PyTuple_Pack(2, tokens, merges);
done:
    Py_DECREF(tokens);
    Py_XDECREF(merges);
    return result;
}

static PyObject *merge_pairs(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"word_counts", "num_tokens", "progress", "consume", NULL};
    PyObject *word_counts, *progress = Py_None;
    Py_ssize_t num_tokens;
    int consume = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "On|O$p", kwlist, &word_counts, &num_tokens,
                                     &progress, &consume))
        return NULL;
    if (progress != Py_None && !PyCallable_Check(progress)) {
        PyErr_SetString(PyExc_TypeError, "progress must be callable or None");
        return NULL;
    }
    if (num_tokens > INT32_MAX) num_tokens = INT32_MAX;
    State s;
    memset(&s, 0, sizeof(s));
    PyObject *result = NULL;
    if (load_words(&s, word_counts)) goto done;
    if (consume) { /* copied: free it before the pair table grows */
        if (PyDict_Check(word_counts))
            PyDict_Clear(word_counts);
        else
            counts_clear(counts_table(word_counts));
    }
    /* Every pair count is at most the total of count x (length - 1) over words: keep it int64. */
    int64_t total = 0;
    for (int32_t w = 0; w < s.nwords; w++) {
        int64_t c = s.word_count[w], n = s.word_len[w] - 1;
        if (c && (n > (INT64_MAX - total) / c)) {
            PyErr_SetString(PyExc_OverflowError, "word counts too large");
            goto done;
        }
        total += c * n;
    }
    if (tokens_init(&s)) {
        PyErr_NoMemory();
        goto done;
    }
    if (run_merges(&s, (int32_t)num_tokens, progress)) goto done;
    result = build_result(&s);
done:
    state_free(&s);
    return result;
}

static PyMethodDef methods[] = {
    {"merge_pairs", (PyCFunction)(void (*)(void))merge_pairs, METH_VARARGS | METH_KEYWORDS,
     "merge_pairs(word_counts: dict[bytes, int] | counts table, num_tokens, progress=None, *,\n"
     "            consume=False)\n"
     "    -> (tokens, merges)\n\n"
     "The BPE merge loop of train_bpe (see train.merge_pairs, the reference), GIL released.\n"
     "progress(n) is called with the number of new tokens now and then; consume=True empties\n"
     "word_counts once it is copied, so its memory is free for the merge loop."},
    {"new_counts", counts_new, METH_NOARGS, "new_counts() -> an empty pre-token counts table"},
    {"count_text", counts_count_text, METH_VARARGS,
     "count_text(table, segments: list[str]): add the GPT-2 pre-tokens of each segment (text\n"
     "without special tokens) to the table, as the native scanner splits them; GIL released."},
    {"merge_counts", counts_merge, METH_VARARGS,
     "merge_counts(total, part): add table part's counts to table total; GIL released."},
    {"counts_to_dict", counts_to_dict, METH_O,
     "counts_to_dict(table) -> dict[bytes, int]"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_train_core",
                                    "Native BPE training core of tinylm.bpe.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__train_core(void) { return PyModule_Create(&module); }
