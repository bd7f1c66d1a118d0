/*
 * Shared between the tokenizer's source files (internal to lib/tokenizer).
 */
#ifndef DSRI_TOKENIZER_INTERNAL_H
#define DSRI_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/vocab.h"

/* Growable per-call scratch memory for the pre-tokenizer. */
typedef struct dsri_pretok_scratch {
    uint32_t *cp;  /* code points (DSRI_UC_INVALID for bad bytes) */
    uint8_t *fl;   /* their DSRI_UC_* flags */
    size_t *off;   /* byte offset of each character, plus the end */
    size_t cap;    /* characters the arrays hold */
} dsri_pretok_scratch;

dsr1_status dsri_pretokenize_scratch(dsri_pretok_scratch *s, dsri_pre_type pre, const char *text,
                                     size_t len, dsri_pretok_fn fn, void *user);
void dsri_pretok_scratch_free(dsri_pretok_scratch *s);

/* GPT-2 byte-level mapping: the code point byte b is written as. */
uint32_t dsri_byte_to_cp(uint8_t b);
/* Inverse: the byte of a mapped code point, or -1. */
int dsri_cp_to_byte(uint32_t cp);

/* FNV-1a hash of a byte string. */
uint64_t dsri_hash_bytes(const char *s, size_t n);

static inline uint64_t dsri_hash_pair(int32_t a, int32_t b)
{
    uint64_t k = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    k *= 0x9e3779b97f4a7c15ull;
    return k ^ (k >> 31);
}

/* The rank of merging tokens a and b, or UINT32_MAX when they do not merge. */
static inline uint32_t dsri_merge_rank(const dsri_vocab *v, int32_t a, int32_t b)
{
    for (uint32_t h = (uint32_t)dsri_hash_pair(a, b) & v->merge_mask;; h = (h + 1) & v->merge_mask) {
        uint32_t r = v->merge_hash[h];
        if (r == UINT32_MAX || (v->merges[r].left == a && v->merges[r].right == b))
            return r;
    }
}

/* The special (CONTROL / USER_DEFINED) token spelled text[0..n), or -1. */
int32_t dsri_vocab_find_special(const dsri_vocab *v, const char *text, size_t n);

#endif
