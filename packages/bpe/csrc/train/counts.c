/* Counting pre-tokens for training without Python objects per pre-token.

   new_counts() -> capsule                      an empty table
   count_text(table, segments: list[str])       counts the GPT-2 pre-tokens of each segment (text
                                                without special tokens); GIL released
   merge_counts(total, part)                    total += part; GIL released
   counts_to_dict(table) -> dict[bytes, int]    (for tests and callers that want a dict)

   The scanner is the native pre-tokenizer of _core (csrc/core/scan.h, header-only), so training
   splits exactly as encoding does. A table is used by one call at a time (`busy`, checked under
   the GIL: a second concurrent call is a RuntimeError, never a data race). */
#include "counts.h"

#include <stdlib.h>
#include <string.h>

#include "../core/hashing.h"
#include "../core/scan.h"

#define CAPSULE_NAME "tinylm.bpe._train_core.counts"

void counts_clear(CountTable *t) {
    free(t->slots);
    free(t->arena);
    t->slots = NULL;
    t->arena = NULL;
    t->mask = t->used = t->arena_len = t->arena_cap = 0;
}

static void capsule_free(PyObject *capsule) {
    CountTable *t = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    if (t) {
        counts_clear(t);
        free(t);
    }
}

CountTable *counts_table(PyObject *capsule) {
    if (!PyCapsule_IsValid(capsule, CAPSULE_NAME)) {
        PyErr_SetString(PyExc_TypeError, "expected a counts table from new_counts()");
        return NULL;
    }
    return PyCapsule_GetPointer(capsule, CAPSULE_NAME);
}

static int table_grow(CountTable *t) {
    size_t cap = t->slots ? (t->mask + 1) * 2 : 1024;
    if (cap > SIZE_MAX / sizeof(CountSlot)) return -1;
    CountSlot *slots = calloc(cap, sizeof(CountSlot));
    if (!slots) return -1;
    if (t->slots) {
        for (size_t i = 0; i <= t->mask; i++) {
            if (!t->slots[i].count) continue;
            size_t k = (size_t)t->slots[i].hash & (cap - 1);
            while (slots[k].count) k = (k + 1) & (cap - 1);
            slots[k] = t->slots[i];
        }
    }
    free(t->slots);
    t->slots = slots;
    t->mask = cap - 1;
    return 0;
}

/* count(key) += count. 0, -1 memory, -2 overflow. */
static int table_add(CountTable *t, const uint8_t *p, size_t n, uint64_t h, int64_t count) {
    if (!t->slots && table_grow(t)) return -1;
    size_t k = (size_t)h & t->mask;
    for (;;) {
        CountSlot *slot = &t->slots[k];
        if (!slot->count) break;
        if (slot->hash == h && slot->len == n && memcmp(t->arena + slot->off, p, n) == 0) {
            if (slot->count > INT64_MAX - count) return -2;
            slot->count += count;
            return 0;
        }
        k = (k + 1) & t->mask;
    }
    if (n > SIZE_MAX - t->arena_len) return -1;
    if (t->arena_len + n > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : 4096;
        while (cap < t->arena_len + n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        unsigned char *arena = realloc(t->arena, cap);
        if (!arena) return -1;
        t->arena = arena;
        t->arena_cap = cap;
    }
    if (n) memcpy(t->arena + t->arena_len, p, n);
    t->slots[k] = (CountSlot){h, t->arena_len, n, count};
    t->arena_len += n;
    if (++t->used * 2 > t->mask + 1 && table_grow(t)) return -1;
    return 0;
}

static int table_scan(CountTable *t, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t j = bpe_next_pretoken(s, n, i);
        int rc = table_add(t, s + i, j - i, bpe_hash_bytes(s + i, j - i), 1);
        if (rc) return rc;
        i = j;
    }
    return 0;
}

static int set_error(int rc) {
    if (rc == -2)
        PyErr_SetString(PyExc_OverflowError, "pre-token count does not fit in 64 bits");
    else
        PyErr_NoMemory();
    return -1;
}

PyObject *counts_new(PyObject *self, PyObject *noargs) {
    CountTable *t = calloc(1, sizeof(CountTable));
    if (!t) return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(t, CAPSULE_NAME, capsule_free);
    if (!capsule) free(t);
    return capsule;
}

/* Mark the table busy (GIL held). -1 with RuntimeError if it already is. */
static int claim(CountTable *t) {
    if (t->busy) {
        PyErr_SetString(PyExc_RuntimeError, "counts table in use by another thread");
        return -1;
    }
    t->busy = 1;
    return 0;
}

PyObject *counts_count_text(PyObject *self, PyObject *args) {
    PyObject *capsule, *segments;
    if (!PyArg_ParseTuple(args, "OO!", &capsule, &PyList_Type, &segments)) return NULL;
    CountTable *t = counts_table(capsule);
    if (!t) return NULL;
    /* UTF-8 of each segment: a compact ASCII str's own data, else the str's cached UTF-8
       (freed with the str). The list holds the strs; we hold the list. */
    Py_ssize_t count = PyList_GET_SIZE(segments);
    const char **data = malloc((size_t)(count ? count : 1) * sizeof(char *));
    Py_ssize_t *sizes = malloc((size_t)(count ? count : 1) * sizeof(Py_ssize_t));
    if (!data || !sizes) {
        free(data);
        free(sizes);
        return PyErr_NoMemory();
    }
    Py_INCREF(segments);
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(segments, i);
        if (!PyUnicode_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "segments must be a list of str");
            goto done;
        }
        data[i] = PyUnicode_AsUTF8AndSize(item, &sizes[i]);
        if (!data[i]) goto done;
    }
    if (claim(t)) goto done;
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count && !rc; i++)
        rc = table_scan(t, (const uint8_t *)data[i], (size_t)sizes[i]);
    Py_END_ALLOW_THREADS
    t->busy = 0;
    if (rc) {
        set_error(rc);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    Py_DECREF(segments);
    free(data);
    free(sizes);
    return result;
}

PyObject *counts_merge(PyObject *self, PyObject *args) {
    PyObject *total_capsule, *part_capsule;
    if (!PyArg_ParseTuple(args, "OO", &total_capsule, &part_capsule)) return NULL;
    CountTable *total = counts_table(total_capsule), *part = NULL;
    if (!total || !(part = counts_table(part_capsule))) return NULL;
    if (total == part) {
        PyErr_SetString(PyExc_ValueError, "cannot merge a counts table into itself");
        return NULL;
    }
    if (claim(total)) return NULL;
    if (claim(part)) {
        total->busy = 0;
        return NULL;
    }
    int rc = 0;
    Py_BEGIN_ALLOW_THREADS
    for (size_t i = 0; part->slots && i <= part->mask && !rc; i++) {
        const CountSlot *slot = &part->slots[i];
        if (slot->count)
            rc = table_add(total, part->arena + slot->off, slot->len, slot->hash, slot->count);
    }
    Py_END_ALLOW_THREADS
    total->busy = part->busy = 0;
    if (rc) return set_error(rc), NULL;
    Py_RETURN_NONE;
}

PyObject *counts_to_dict(PyObject *self, PyObject *capsule) {
    CountTable *t = counts_table(capsule);
    if (!t) return NULL;
    PyObject *dict = PyDict_New();
    for (size_t i = 0; dict && t->slots && i <= t->mask; i++) {
        const CountSlot *slot = &t->slots[i];
        if (!slot->count) continue;
        PyObject *key = PyBytes_FromStringAndSize((const char *)t->arena + slot->off,
                                                  (Py_ssize_t)slot->len);
        PyObject *value = PyLong_FromLongLong(slot->count);
        if (!key || !value || PyDict_SetItem(dict, key, value)) Py_CLEAR(dict);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
    return dict;
}
