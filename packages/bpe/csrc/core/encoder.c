/* The Encoder type: text -> token ids with special tokens, pre-tokens, cache and BPE in C.

Encoder(byte_ids, merges, specials, cache_entries)
  byte_ids       256 ints: the id of each single byte
  merges         (left id, right id, rank, merged id) tuples; a pair's lowest rank wins
  specials       (UTF-8 bytes, id) tuples: split off first, longest match at the leftmost place
  cache_entries  bound of each pre-token -> ids cache
Ids must be in [0, 2**31). Every method releases the GIL while it scans and merges. Caches are
handed out one per running call (taken and returned under the GIL), so threads encoding with the
same Encoder never share one: no locks on the hot path.
*/
#include <stdlib.h>
#include <string.h>

#include "bpe_core.h"
#include "hashing.h"
#include "scan.h"

#define CACHE_MAX_PIECE 256 /* longer pre-tokens rarely repeat: merge them, don't cache them */

typedef struct {
    uint8_t *bytes;
    size_t len;
    uint32_t id;
} Special;

typedef struct {
    PyObject_HEAD
    uint32_t byte_ids[256];
    PairTable pairs;
    Special *specials; /* longest first */
    size_t nspecials;
    uint8_t special_first[256]; /* 1 where a special token starts with this byte */
    PieceCache **free_caches;
    size_t nfree, free_cap, cache_entries;
    PyObject **id_objs; /* the int object of every id below n_id_objs: lists are built 4x faster */
    size_t n_id_objs;
} Encoder;

#define MAX_ID_OBJS ((size_t)1 << 20)

/* -- the work, without the GIL --------------------------------------------------------------- */

static inline void encode_piece(const Encoder *e, PieceCache *cache, const uint8_t *p, size_t len,
                                IdVec *out) {
    if (len == 1) {
        idvec_push(out, e->byte_ids[p[0]]);
        return;
    }
    if (!cache || len > CACHE_MAX_PIECE) {
        if (bpe_merge(&e->pairs, e->byte_ids, p, len, out) < 0) out->oom = 1;
        return;
    }
    uint64_t h = bpe_hash_bytes(p, len);
    if (cache_get(cache, h, p, len, out)) return;
    size_t start = out->n;
    if (bpe_merge(&e->pairs, e->byte_ids, p, len, out) == 0)
        cache_put(cache, h, p, len, out->v + start, out->n - start);
    else
        out->oom = 1;
}

static void encode_ordinary(const Encoder *e, PieceCache *cache, const uint8_t *s, size_t n, IdVec *out) {
    for (size_t i = 0; i < n && !out->oom;) {
        size_t j = bpe_next_pretoken(s, n, i);
        encode_piece(e, cache, s + i, j - i, out);
        i = j;
    }
}

/* The longest special token at s[i:], or NULL. */
static const Special *special_at(const Encoder *e, const uint8_t *s, size_t n, size_t i) {
    for (size_t k = 0; k < e->nspecials; k++) {
        const Special *sp = &e->specials[k];
        if (sp->len <= n - i && memcmp(s + i, sp->bytes, sp->len) == 0) return sp;
    }
    return NULL;
}

static void encode_text(const Encoder *e, PieceCache *cache, const uint8_t *s, size_t n, IdVec *out) {
    size_t start = 0;
    if (e->nspecials) {
        for (size_t i = 0; i < n && !out->oom;) {
            const Special *sp = e->special_first[s[i]] ? special_at(e, s, n, i) : NULL;
            if (!sp) {
                i++;
                continue;
            }
            encode_ordinary(e, cache, s + start, i - start, out);
            idvec_push(out, sp->id);
            i += sp->len;
            start = i;
        }
    }
    encode_ordinary(e, cache, s + start, n - start, out);
}

/* Ids of the pre-tokens of s[0:n) (no special tokens) that no continuation of the text can
   change: each but the last, and none starting among the last `lookahead` characters. Returns
   the byte offset where the unsettled rest begins. */
static size_t encode_settled(const Encoder *e, PieceCache *cache, const uint8_t *s, size_t n,
                             size_t lookahead, IdVec *out) {
    size_t tail = n, k = 0; /* tail: start of the last `lookahead` characters */
    for (; k < lookahead && tail > 0; k++) {
        tail--;
        while (tail > 0 && (s[tail] & 0xC0) == 0x80) tail--;
    }
    size_t cut = 0;
    if (k < lookahead) n = 0; /* shorter than the lookahead: nothing is settled */
    for (size_t i = 0; i < n;) {
        size_t j = bpe_next_pretoken(s, n, i);
        if (j == n || i > tail || out->oom) break;
        encode_piece(e, cache, s + i, j - i, out); /* not a rescan of s[:cut]: its end differs */
        cut = j;
        i = j;
    }
    return cut;
}

/* -- caches (under the GIL) ------------------------------------------------------------------ */

static PieceCache *take_cache(Encoder *e) {
    if (e->nfree) return e->free_caches[--e->nfree];
    return cache_new(e->cache_entries); /* NULL: encode without a cache */
}

static void give_cache(Encoder *e, PieceCache *cache) {
    if (!cache) return;
    if (e->nfree == e->free_cap) {
        size_t cap = e->free_cap ? 2 * e->free_cap : 4;
        PieceCache **caches = realloc(e->free_caches, cap * sizeof(PieceCache *));
        if (!caches) {
            cache_free(cache);
            return;
        }
        e->free_caches = caches;
        e->free_cap = cap;
    }
    e->free_caches[e->nfree++] = cache;
}

/* -- Python glue ----------------------------------------------------------------------------- */

static int id_from(PyObject *obj, uint32_t *out, const char *what) {
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < 0 || v >= ((long long)1 << 31)) {
        PyErr_Format(PyExc_ValueError, "%s %lld is outside [0, 2**31)", what, v);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static void encoder_dealloc(Encoder *e) {
    pairs_free(&e->pairs);
    for (size_t k = 0; k < e->nspecials; k++) free(e->specials[k].bytes);
    free(e->specials);
    for (size_t k = 0; k < e->nfree; k++) cache_free(e->free_caches[k]);
    free(e->free_caches);
    for (size_t k = 0; k < e->n_id_objs; k++) Py_XDECREF(e->id_objs[k]);
    free(e->id_objs);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

static int by_length_desc(const void *a, const void *b) {
    size_t la = ((const Special *)a)->len, lb = ((const Special *)b)->len;
    return la < lb ? 1 : la > lb ? -1 : 0;
}

static int encoder_setup(Encoder *e, PyObject *byte_ids, PyObject *merges, PyObject *specials) {
    PyObject *seq = PySequence_Fast(byte_ids, "byte_ids must be a sequence");
    if (!seq) return -1;
    int bad = PySequence_Fast_GET_SIZE(seq) != 256;
    if (bad) PyErr_SetString(PyExc_ValueError, "byte_ids must have 256 entries");
    for (Py_ssize_t k = 0; !bad && k < 256; k++)
        bad = id_from(PySequence_Fast_GET_ITEM(seq, k), &e->byte_ids[k], "byte id") < 0;
    Py_DECREF(seq);
    if (bad) return -1;

    if (!(seq = PySequence_Fast(merges, "merges must be a sequence"))) return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    if (pairs_init(&e->pairs, (size_t)count) < 0) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; !bad && k < count; k++) {
        uint32_t left, right, rank, merged;
        PyObject *item = PySequence_Fast_GET_ITEM(seq, k);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4) {
            PyErr_SetString(PyExc_TypeError, "merges must hold (left, right, rank, merged) tuples");
            bad = 1;
            break;
        }
        bad = id_from(PyTuple_GET_ITEM(item, 0), &left, "merge id") < 0 ||
              id_from(PyTuple_GET_ITEM(item, 1), &right, "merge id") < 0 ||
              id_from(PyTuple_GET_ITEM(item, 2), &rank, "merge rank") < 0 ||
              id_from(PyTuple_GET_ITEM(item, 3), &merged, "merge id") < 0;
        if (!bad) pairs_insert(&e->pairs, left, right, (int32_t)rank, merged);
    }
    Py_DECREF(seq);
    if (bad) return -1;

    if (!(seq = PySequence_Fast(specials, "specials must be a sequence"))) return -1;
    count = PySequence_Fast_GET_SIZE(seq);
    e->specials = calloc(count ? (size_t)count : 1, sizeof(Special));
    if (!e->specials) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; !bad && k < count; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, k);
        char *data;
        Py_ssize_t len;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
            PyBytes_AsStringAndSize(PyTuple_GET_ITEM(item, 0), &data, &len) < 0 || len == 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "specials must hold (non-empty bytes, id)");
            bad = 1;
            break;
        }
        Special *sp = &e->specials[e->nspecials];
        if (id_from(PyTuple_GET_ITEM(item, 1), &sp->id, "special id") < 0 || !(sp->bytes = malloc((size_t)len))) {
            if (!PyErr_Occurred()) PyErr_NoMemory();
            bad = 1;
            break;
        }
        memcpy(sp->bytes, data, (size_t)len);
        sp->len = (size_t)len;
        e->special_first[sp->bytes[0]] = 1;
        e->nspecials++;
    }
    Py_DECREF(seq);
    if (bad) return -1;
    qsort(e->specials, e->nspecials, sizeof(Special), by_length_desc);

    uint32_t max_id = 0;
    for (size_t k = 0; k < 256; k++) max_id = e->byte_ids[k] > max_id ? e->byte_ids[k] : max_id;
    for (size_t k = 0; k <= e->pairs.mask; k++)
        if (e->pairs.keys[k] != BPE_EMPTY_PAIR && e->pairs.merged[k] > max_id) max_id = e->pairs.merged[k];
    for (size_t k = 0; k < e->nspecials; k++) max_id = e->specials[k].id > max_id ? e->specials[k].id : max_id;
    if ((size_t)max_id < MAX_ID_OBJS && (e->id_objs = calloc((size_t)max_id + 1, sizeof(PyObject *)))) {
        e->n_id_objs = (size_t)max_id + 1;
        for (size_t k = 0; k < e->n_id_objs; k++)
            if (!(e->id_objs[k] = PyLong_FromSize_t(k))) return -1;
    } /* else: ints are made one by one */
    return 0;
}

static PyObject *encoder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"byte_ids", "merges", "specials", "cache_entries", NULL};
    PyObject *byte_ids, *merges, *specials;
    Py_ssize_t cache_entries;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOn", kwlist, &byte_ids, &merges, &specials, &cache_entries))
        return NULL;
    Encoder *e = (Encoder *)type->tp_alloc(type, 0); /* zeroed */
    if (!e) return NULL;
    e->cache_entries = cache_entries > 0 ? (size_t)cache_entries : 0;
    if (encoder_setup(e, byte_ids, merges, specials) < 0) {
        Py_DECREF(e);
        return NULL;
    }
    return (PyObject *)e;
}

static PyObject *ids_to_list(const Encoder *e, const IdVec *ids) {
    PyObject *list = PyList_New((Py_ssize_t)ids->n);
    if (!list) return NULL;
    for (size_t k = 0; k < ids->n; k++) {
        uint32_t id = ids->v[k];
        if (id < e->n_id_objs) {
            Py_INCREF(e->id_objs[id]);
            PyList_SET_ITEM(list, (Py_ssize_t)k, e->id_objs[id]);
            continue;
        }
        PyObject *v = PyLong_FromUnsignedLong(id);
        if (!v) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)k, v);
    }
    return list;
}

enum { MODE_SPECIALS, MODE_ORDINARY, MODE_SETTLED };

/* Runs one encoding of `text` without the GIL; returns 0, or -1 with an exception set. */
static int run(Encoder *e, PyObject *text_obj, int mode, size_t lookahead, IdVec *ids, size_t *cut) {
    Utf8Text text;
    if (utf8_text(text_obj, &text) < 0) return -1;
    PieceCache *cache = take_cache(e);
    Py_BEGIN_ALLOW_THREADS
    if (mode == MODE_SPECIALS)
        encode_text(e, cache, text.s, text.n, ids);
    else if (mode == MODE_ORDINARY)
        encode_ordinary(e, cache, text.s, text.n, ids);
    else
        *cut = encode_settled(e, cache, text.s, text.n, lookahead, ids);
    Py_END_ALLOW_THREADS
    give_cache(e, cache);
    if (mode == MODE_SETTLED) { /* the cut as a character index: count the bytes that start one */
        size_t chars = 0;
        for (size_t k = 0; k < *cut; k++) chars += (text.s[k] & 0xC0) != 0x80;
        *cut = chars;
    }
    utf8_text_release(&text);
    if (ids->oom) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *encoder_encode(Encoder *e, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"text", "specials", NULL};
    PyObject *text;
    int specials = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|p", kwlist, &text, &specials)) return NULL;
    IdVec ids = {0};
    PyObject *result = NULL;
    if (run(e, text, specials ? MODE_SPECIALS : MODE_ORDINARY, 0, &ids, NULL) == 0) result = ids_to_list(e, &ids);
    idvec_free(&ids);
    return result;
}

static PyObject *encoder_encode_to_bytes(Encoder *e, PyObject *args) {
    PyObject *text;
    int itemsize;
    if (!PyArg_ParseTuple(args, "Oi", &text, &itemsize)) return NULL;
    if (itemsize != 2 && itemsize != 4) {
        PyErr_SetString(PyExc_ValueError, "itemsize must be 2 or 4");
        return NULL;
    }
    IdVec ids = {0};
    PyObject *result = NULL;
    if (run(e, text, MODE_SPECIALS, 0, &ids, NULL) == 0) {
        if (ids.n > SIZE_MAX / 8) {
            PyErr_NoMemory();
        } else if ((result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(ids.n * (size_t)itemsize)))) {
            char *dst = PyBytes_AS_STRING(result);
            if (itemsize == 4) {
                memcpy(dst, ids.v, ids.n * 4);
            } else {
                for (size_t k = 0; k < ids.n; k++) {
                    uint16_t v = (uint16_t)ids.v[k]; /* the caller picks 2 only when every id fits */
                    memcpy(dst + 2 * k, &v, 2);
                }
            }
        }
    }
    idvec_free(&ids);
    return result;
}

static PyObject *encoder_encode_settled(Encoder *e, PyObject *args) {
    PyObject *text;
    Py_ssize_t lookahead;
    if (!PyArg_ParseTuple(args, "On", &text, &lookahead)) return NULL;
    IdVec ids = {0};
    size_t cut = 0;
    PyObject *result = NULL;
    if (run(e, text, MODE_SETTLED, lookahead > 0 ? (size_t)lookahead : 0, &ids, &cut) == 0) {
        PyObject *list = ids_to_list(e, &ids);
        if (list) result = Py_BuildValue("(Nn)", list, (Py_ssize_t)cut);
    }
    idvec_free(&ids);
    return result;
}

/* encode_many(texts): one GIL release for a whole list (batches of short documents would
   otherwise pay a release, a cache hand-out and a thread switch per text). */
static PyObject *encoder_encode_many(Encoder *e, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "texts must be a sequence of str");
    if (!seq) return NULL;
    size_t n = (size_t)PySequence_Fast_GET_SIZE(seq);
    Utf8Text *texts = calloc(n ? n : 1, sizeof(Utf8Text));
    size_t *ends = calloc(n ? n : 1, sizeof(size_t)); /* end of text k's ids in `ids` */
    PyObject *result = NULL;
    size_t ready = 0;
    IdVec ids = {0};
    if (!texts || !ends) {
        PyErr_NoMemory();
        goto done;
    }
    for (; ready < n; ready++)
        if (utf8_text(PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)ready), &texts[ready]) < 0) goto done;
    PieceCache *cache = take_cache(e);
    Py_BEGIN_ALLOW_THREADS
    for (size_t k = 0; k < n && !ids.oom; k++) {
        encode_text(e, cache, texts[k].s, texts[k].n, &ids);
        ends[k] = ids.n;
    }
    Py_END_ALLOW_THREADS
    give_cache(e, cache);
    if (ids.oom) {
        PyErr_NoMemory();
        goto done;
    }
    if (!(result = PyList_New((Py_ssize_t)n))) goto done;
    for (size_t k = 0, start = 0; k < n; start = ends[k++]) {
        IdVec part = {ids.v + start, ends[k] - start, ends[k] - start, 0};
        PyObject *list = ids_to_list(e, &part);
        if (!list) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, (Py_ssize_t)k, list);
    }
done:
    for (size_t k = 0; k < ready; k++) utf8_text_release(&texts[k]);
    free(texts);
    free(ends);
    idvec_free(&ids);
    Py_DECREF(seq);
    return result;
}

static PyObject *encoder_cache_len(Encoder *e, PyObject *unused) {
    size_t total = 0;
    for (size_t k = 0; k < e->nfree; k++) total += cache_len(e->free_caches[k]);
    return PyLong_FromSize_t(total);
}

static PyObject *encoder_cache_count(Encoder *e, PyObject *unused) { return PyLong_FromSize_t(e->nfree); }

static PyMethodDef encoder_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))encoder_encode, METH_VARARGS | METH_KEYWORDS,
     "encode(text, specials=True) -> list[int]; specials=False: text holds no special token."},
    {"encode_to_bytes", (PyCFunction)encoder_encode_to_bytes, METH_VARARGS,
     "encode_to_bytes(text, itemsize) -> bytes: the ids as native uint16 (2) or uint32 (4)."},
    {"encode_settled", (PyCFunction)encoder_encode_settled, METH_VARARGS,
     "encode_settled(text, lookahead) -> (ids, cut): ids of text[:cut], the pre-tokens no\n"
     "continuation can change (not the last, none starting in the last `lookahead` chars)."},
    {"encode_many", (PyCFunction)encoder_encode_many, METH_O,
     "encode_many(texts) -> list[list[int]]: encode(t) for each t, in one call without the GIL."},
    {"cache_len", (PyCFunction)encoder_cache_len, METH_NOARGS, "entries in all idle caches"},
    {"cache_count", (PyCFunction)encoder_cache_count, METH_NOARGS, "number of idle caches"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "tinylm.bpe._core.Encoder",
    .tp_basicsize = sizeof(Encoder),
    .tp_dealloc = (destructor)encoder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "BPE encoder over GPT-2 pre-tokens (see encoder.c).",
    .tp_methods = encoder_methods,
    .tp_new = encoder_new,
};
