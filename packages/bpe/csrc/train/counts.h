/* Pre-token counts in C for training: a hash table of byte strings -> int64 counts.

The keys' bytes live in one arena owned by the table, so a table outlives the text it counted.
Tables are handed to Python as capsules (counts.c); merge_pairs (train_core.c) reads them. */
#ifndef BPE_TRAIN_COUNTS_H
#define BPE_TRAIN_COUNTS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t hash;
    size_t off; /* key bytes at arena + off */
    size_t len;
    int64_t count; /* 0: an empty slot */
} CountSlot;

typedef struct {
    CountSlot *slots;
    size_t mask, used;
    unsigned char *arena;
    size_t arena_len, arena_cap;
    int busy; /* set (under the GIL) while a call works on the table without the GIL */
} CountTable;

/* The table inside a counts capsule, or NULL with a TypeError. */
CountTable *counts_table(PyObject *capsule);

/* Module functions (see counts.c). */
PyObject *counts_new(PyObject *self, PyObject *noargs);
PyObject *counts_count_text(PyObject *self, PyObject *args);
PyObject *counts_merge(PyObject *self, PyObject *args);
PyObject *counts_to_dict(PyObject *self, PyObject *capsule);

/* Frees the table's memory and leaves it empty (valid, usable). */
void counts_clear(CountTable *t);

#endif
