/* tinylm.bpe._core: the GPT-2 pre-tokenizer scanner and the BPE encoder, in C.

Module functions (reference equivalents in tinylm.bpe.pretokenize):
  pretokenize(text: str) -> list[str]
      the GPT-2 pre-tokens of text, exactly regex.findall(GPT2_PATTERN, text).
  count_pretokens(text: str) -> dict[bytes, int]
      how often each pre-token occurs in text, keyed by its UTF-8 bytes; text is ONE segment
      without special tokens (split those off first). The GIL is released while scanning.
  UNICODE_VERSION, REGEX_VERSION: what the character tables were generated from.
The Encoder type (encoder.c) does the rest.
*/
#include <stdlib.h>
#include <string.h>

#include "bpe_core.h"
#include "hashing.h"
#include "scan.h"

int utf8_text(PyObject *str, Utf8Text *out) {
    if (!PyUnicode_Check(str)) {
        PyErr_Format(PyExc_TypeError, "expected str, got %.100s", Py_TYPE(str)->tp_name);
        return -1;
    }
    if (PyUnicode_READY(str) < 0) return -1;
    if (PyUnicode_IS_ASCII(str)) { /* a compact ASCII str stores its UTF-8 */
        out->s = (const uint8_t *)PyUnicode_DATA(str);
        out->n = (size_t)PyUnicode_GET_LENGTH(str);
        Py_INCREF(str);
        out->owner = str;
        return 0;
    }
    /* a temporary copy (not the str's cached UTF-8, which would live as long as the str);
       lone surrogates raise UnicodeEncodeError, as the reference's .encode("utf-8") does */
    PyObject *bytes = PyUnicode_AsUTF8String(str);
    if (!bytes) return -1;
    out->s = (const uint8_t *)PyBytes_AS_STRING(bytes);
    out->n = (size_t)PyBytes_GET_SIZE(bytes);
    out->owner = bytes;
    return 0;
}

void utf8_text_release(Utf8Text *text) { Py_CLEAR(text->owner); }

static PyObject *pretokenize(PyObject *module, PyObject *arg) {
    Utf8Text text;
    if (utf8_text(arg, &text) < 0) return NULL;
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && i < text.n;) {
        size_t j = bpe_next_pretoken(text.s, text.n, i);
        PyObject *piece = PyUnicode_DecodeUTF8((const char *)text.s + i, (Py_ssize_t)(j - i), "strict");
        if (!piece || PyList_Append(list, piece) < 0) Py_CLEAR(list);
        Py_XDECREF(piece);
        i = j;
    }
    utf8_text_release(&text);
    return list;
}

/* -- counting -------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t len;
    uint64_t hash;
    Py_ssize_t count; /* 0: free slot */
} CountSlot;

typedef struct {
    CountSlot *slots;
    size_t mask, used;
} CountMap;

static int count_grow(CountMap *m) {
    size_t cap = (m->mask + 1) * 2;
    if (cap > SIZE_MAX / sizeof(CountSlot)) return -1;
    CountSlot *slots = calloc(cap, sizeof(CountSlot));
    if (!slots) return -1;
    for (size_t i = 0; i <= m->mask; i++) {
        if (!m->slots[i].count) continue;
        size_t k = (size_t)m->slots[i].hash & (cap - 1);
        while (slots[k].count) k = (k + 1) & (cap - 1);
        slots[k] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->mask = cap - 1;
    return 0;
}

/* Counts every pre-token of s[0:n); -1 on allocation failure. Runs without the GIL. */
static int count_scan(CountMap *m, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        size_t j = bpe_next_pretoken(s, n, i);
        size_t len = j - i;
        uint64_t h = bpe_hash_bytes(s + i, len);
        size_t k = (size_t)h & m->mask;
        for (;;) {
            CountSlot *slot = &m->slots[k];
            if (!slot->count) {
                *slot = (CountSlot){s + i, len, h, 1};
                if (++m->used * 2 > m->mask + 1 && count_grow(m) < 0) return -1;
                break;
            }
            if (slot->hash == h && slot->len == len && memcmp(slot->p, s + i, len) == 0) {
                slot->count++;
                break;
            }
            k = (k + 1) & m->mask;
        }
        i = j;
    }
    return 0;
}

static PyObject *count_pretokens(PyObject *module, PyObject *arg) {
    Utf8Text text;
    if (utf8_text(arg, &text) < 0) return NULL;
    CountMap map = {calloc(1024, sizeof(CountSlot)), 1023, 0};
    int status = -1;
    if (map.slots) {
        Py_BEGIN_ALLOW_THREADS
        status = count_scan(&map, text.s, text.n);
        Py_END_ALLOW_THREADS
    }
    PyObject *dict = NULL;
    if (status < 0) {
        PyErr_NoMemory();
    } else if ((dict = PyDict_New())) {
        for (size_t i = 0; i <= map.mask; i++) {
            const CountSlot *slot = &map.slots[i];
            if (!slot->count) continue;
            PyObject *key = PyBytes_FromStringAndSize((const char *)slot->p, (Py_ssize_t)slot->len);
            PyObject *value = PyLong_FromSsize_t(slot->count);
            int bad = !key || !value || PyDict_SetItem(dict, key, value) < 0;
            Py_XDECREF(key);
            Py_XDECREF(value);
            if (bad) {
                Py_CLEAR(dict);
                break;
            }
        }
    }
    free(map.slots);
    utf8_text_release(&text);
    return dict;
}

static PyMethodDef methods[] = {
    {"pretokenize", pretokenize, METH_O,
     "pretokenize(text: str) -> list[str]: the GPT-2 pre-tokens, as regex.findall(GPT2_PATTERN, text)."},
    {"count_pretokens", count_pretokens, METH_O,
     "count_pretokens(text: str) -> dict[bytes, int]: occurrences of each GPT-2 pre-token of text,\n"
     "keyed by its UTF-8 bytes. text is one segment without special tokens (split those off\n"
     "first). The GIL is released while scanning. Lone surrogates raise UnicodeEncodeError."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_core",
    "tinylm.bpe's native core: GPT-2 pre-tokenizer scanner and BPE encoder (see core.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void) {
    if (PyType_Ready(&EncoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    if (PyModule_AddStringConstant(m, "UNICODE_VERSION", BPE_UNICODE_VERSION) < 0 ||
        PyModule_AddStringConstant(m, "REGEX_VERSION", BPE_REGEX_VERSION) < 0 ||
        PyModule_AddObjectRef(m, "Encoder", (PyObject *)&EncoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
