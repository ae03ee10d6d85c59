/* A small, fast hash for byte strings (pre-tokens): 8 bytes per multiply. Not for adversarial
keys: the tables it feeds grow with their contents and never trust the hash for equality. */
#ifndef BPE_HASHING_H
#define BPE_HASHING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t bpe_mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t bpe_hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    }
    return bpe_mix(h);
}

#endif
