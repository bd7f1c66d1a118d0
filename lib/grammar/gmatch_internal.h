/* The matcher's layout, shared by gbnf_match.c and gbnf_mask.c (internal). */
#ifndef DSRI_GMATCH_INTERNAL_H
#define DSRI_GMATCH_INTERNAL_H

#include "grammar/grammar.h"

typedef struct frame {
    int32_t pos;    /* element to match next */
    int32_t parent; /* frame below, -1 at the bottom */
} frame;

/* A UTF-8 character in progress: the bits so far and the bytes missing. */
typedef struct dsri_utf8 {
    uint32_t value;
    int32_t left;
    uint32_t min; /* the smallest code point the sequence's length may encode (no overlong forms) */
} dsri_utf8;

typedef struct mask_entry mask_entry;

struct dsri_gmatch {
    const dsri_gbnf *g;
    int32_t start; /* the rule matched: root, or g->start (lead whitespace) */
    frame *fr; /* the arena */
    int32_t n_fr, cap_fr;
    int32_t *pool; /* sets of stacks: frame indices, -1 for the empty stack */
    int32_t n_pool, cap_pool;
    int32_t cur, n_cur; /* the current set: pool[cur .. cur + n_cur) */
    dsri_utf8 u;        /* a character split over the input so far */
    int32_t *work;
    int32_t cap_work;

    mask_entry *cache; /* gbnf_mask.c */
    int32_t n_cache;
    uint64_t tick;
    int32_t *key; /* the current state's key */
    int32_t cap_key;
    int32_t *levels;
    int32_t cap_levels; /* bytes */
};

/* Decode one byte: 1 with *cp when a character completes, 0 when more
 * bytes are needed, -1 when the bytes are not UTF-8. */
int dsri_utf8_step(dsri_utf8 *u, uint8_t b, uint32_t *cp);
/* The set reached from pool[in .. in+n_in) by code point cp, appended to
 * the pool at *out (empty when nothing matches). */
dsr1_status dsri_gmatch_advance(dsri_gmatch *m, int32_t in, int32_t n_in, uint32_t cp, int32_t *out);
/* Could some stack of the set read a character beginning as u does? */
int dsri_gmatch_partial_alive(const dsri_gmatch *m, int32_t in, int32_t n_in, dsri_utf8 u);
/* Feed bytes to a set (see gbnf_match.c). */
dsr1_status dsri_gmatch_feed(dsri_gmatch *m, int32_t *set, int32_t *n, dsri_utf8 *u, const uint8_t *b, size_t len);
void dsri_gmask_cache_free(dsri_gmatch *m);

#endif
