/* The GPT-2 pre-tokenizer as a hand-written scanner over UTF-8 (no regex engine).

Pattern: '(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

Every character is in exactly one class: letter (L), number (N), whitespace (\s as the `regex`
module defines it) or other (O). At position i the branches, tried in order, reduce to:
  1. an apostrophe followed by s, d, m, t, ll, ve or re (lower case only): that contraction;
  2-4. an optional U+0020 space, then the longest run of one class C in {L, N, O}: the space
     is taken only if the next character is in L, N or O (else " ?" backtracks to nothing);
  5-6. a whitespace run [i, j): the whole run if it ends the text; else the next character is
     not whitespace, so `\s+(?!\S)` backtracks one character and gives [i, last char of run)
     when that is not empty, and `\s+` gives the single character otherwise.
The input must be valid UTF-8 (it comes from a Python str); decoding is bounds-checked anyway.
*/
#ifndef BPE_SCAN_H
#define BPE_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "unicode_tables.h"

enum { BPE_O = 0, BPE_L = 1, BPE_N = 2, BPE_WS = 3 };

/* Classes of ASCII: letters, digits, and regex's \s on ASCII (\t \n \v \f \r and space). */
static const uint8_t bpe_ascii_class[128] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 0, 0, /* \t \n \v \f \r */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* \x1c-\x1f are not \s in regex */
    3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* space */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, /* 0-9 */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* A-O */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, /* P-Z */
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* a-o */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, /* p-z */
};

static inline int bpe_cp_class(uint32_t cp) {
    if (cp >= 0x110000) return BPE_O;
    return bpe_uc_stage2[((size_t)bpe_uc_stage1[cp >> 8] << 8) | (cp & 0xff)];
}

/* Class of the character at s[i] (i < n); *len gets its byte length (>= 1, within n). */
static inline int bpe_class_at(const uint8_t *s, size_t n, size_t i, size_t *len) {
    uint8_t b = s[i];
    if (b < 0x80) {
        *len = 1;
        return bpe_ascii_class[b];
    }
    uint32_t cp;
    size_t l;
    if (b >= 0xF0) {
        l = 4;
        cp = b & 0x07;
    } else if (b >= 0xE0) {
        l = 3;
        cp = b & 0x0F;
    } else if (b >= 0xC0) {
        l = 2;
        cp = b & 0x1F;
    } else { /* a stray continuation byte: not valid UTF-8, treat as one "other" byte */
        *len = 1;
        return BPE_O;
    }
    if (l > n - i) { /* truncated sequence: never from a str, but stay in bounds */
        *len = n - i;
        return BPE_O;
    }
    for (size_t k = 1; k < l; k++) cp = (cp << 6) | (s[i + k] & 0x3F);
    *len = l;
    return bpe_cp_class(cp);
}

/* End of the run of class `cls` starting at i (s[i] may be in another class: returns i). */
static inline size_t bpe_run_end(const uint8_t *s, size_t n, size_t i, int cls) {
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            if (bpe_ascii_class[b] != cls) return i;
            i++;
            continue;
        }
        size_t l;
        if (bpe_class_at(s, n, i, &l) != cls) return i;
        i += l;
    }
    return i;
}

/* End of the pre-token that starts at i (i < n). */
static inline size_t bpe_next_pretoken(const uint8_t *s, size_t n, size_t i) {
    uint8_t b = s[i];
    if (b == '\'' && n - i >= 2) {
        uint8_t d = s[i + 1];
        if (d == 's' || d == 'd' || d == 'm' || d == 't') return i + 2;
        if (n - i >= 3) {
            uint8_t e = s[i + 2];
            if ((d == 'l' && e == 'l') || (d == 'v' && e == 'e') || (d == 'r' && e == 'e'))
                return i + 3;
        }
    }
    size_t len;
    if (b == ' ' && n - i >= 2) {
        int next = bpe_class_at(s, n, i + 1, &len);
        if (next != BPE_WS) return bpe_run_end(s, n, i + 1 + len, next);
    }
    int cls = bpe_class_at(s, n, i, &len);
    if (cls != BPE_WS) return bpe_run_end(s, n, i + len, cls);
    size_t j = bpe_run_end(s, n, i + len, BPE_WS);
    if (j == n) return n;
    size_t last = j - 1; /* start of the run's last character */
    while (last > i && (s[last] & 0xC0) == 0x80) last--;
    return last > i ? last : j;
}

#endif
