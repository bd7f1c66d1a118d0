/*
 * GBNF grammars (internal): the compiled form, its parser and its matcher.
 *
 * Compiled form. A grammar is a set of rules; a rule is a list of
 * alternatives; an alternative is a sequence of elements ending with END.
 * All alternatives live in one flat element array, so "the element after
 * this one" is simply pos + 1. Elements are a character class (one code
 * point from a set of ranges, possibly negated) or a reference to a rule.
 * Groups and repetitions become generated rules, as in llama.cpp
 * (x* is  r ::= x r | "" ).
 *
 * Matching is a pushdown automaton over Unicode code points: a parse is a
 * stack of element positions still to match, the innermost on top, and
 * the matcher keeps the set of all parses alive after the input so far
 * (gbnf_match.c). The parser refuses left recursion (directly or through
 * rules that can match nothing), so expanding a stack always terminates.
 */
#ifndef DSRI_GRAMMAR_H
#define DSRI_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "dsr1.h"

enum { DSRI_GE_END = 0, DSRI_GE_CHAR = 1, DSRI_GE_RULE = 2 };

typedef struct dsri_gelem {
    int32_t type;  /* DSRI_GE_* */
    int32_t value; /* CHAR: class index; RULE: rule index */
} dsri_gelem;

typedef struct dsri_crange {
    uint32_t lo, hi; /* inclusive code point range */
} dsri_crange;

typedef struct dsri_cclass {
    int32_t first_range, n_ranges;
    int32_t negated;
    uint32_t ascii[4]; /* membership of code points 0..127, precomputed (negation applied) */
} dsri_cclass;

typedef struct dsri_grule {
    int32_t first_alt, n_alts; /* into alts[] */
    int32_t name;              /* offset into names, or -1 for generated rules */
} dsri_grule;

typedef struct dsri_gbnf {
    dsri_gelem *elems;
    int32_t n_elems;
    int32_t *alts; /* start element of each alternative */
    int32_t n_alts;
    dsri_grule *rules;
    int32_t n_rules;
    dsri_cclass *classes;
    int32_t n_classes;
    dsri_crange *ranges;
    int32_t n_ranges;
    char *names; /* NUL-separated rule names */
    int32_t root;
    int32_t start; /* the rule a matcher starts from: root, or lead-whitespace + root */
} dsri_gbnf;

/* Limits that keep hostile grammars linear: text size, rules and elements
 * (after repetitions are expanded), nesting of groups, and parses alive at
 * once while matching. */
#define DSRI_GBNF_MAX_TEXT (1u << 20)
#define DSRI_GBNF_MAX_ELEMS (1 << 20)
#define DSRI_GBNF_MAX_REPEAT 10000
#define DSRI_GBNF_MAX_NESTING 64
#define DSRI_GBNF_MAX_PARSES 1024

/* Parse GBNF text (llama.cpp's syntax) and check it: every referenced rule
 * is defined, root exists, no left recursion. When lead_ws > 0, the start
 * rule accepts up to lead_ws whitespace characters before root (R1 writes
 * "\n\n" after </think>). Errors name the line and column. */
dsr1_status dsri_gbnf_parse(const char *text, size_t len, const char *root, int32_t lead_ws, dsri_gbnf **out);
void dsri_gbnf_free(dsri_gbnf *g);

/* 1 when code point cp is in class k. */
int dsri_gbnf_class_has(const dsri_gbnf *g, int32_t k, uint32_t cp);

/* ---- matcher ---- */

typedef struct dsri_gmatch dsri_gmatch;

/* lead_ws: start from g->start (whitespace allowed before root), else root. */
dsr1_status dsri_gmatch_new(const dsri_gbnf *g, int lead_ws, dsri_gmatch **out);
void dsri_gmatch_free(dsri_gmatch *m);
/* Back to the start (nothing matched). */
dsr1_status dsri_gmatch_reset(dsri_gmatch *m);
/* Feed bytes (UTF-8, possibly ending inside a character). DSR1_ERR_STATE
 * when they are not a prefix of the language (the state is then
 * unchanged); DSR1_ERR_UNSUPPORTED when the grammar is too ambiguous
 * (more than DSRI_GBNF_MAX_PARSES parses at once). */
dsr1_status dsri_gmatch_accept(dsri_gmatch *m, const char *bytes, size_t len);
/* 1 when the input so far is a complete sentence (end of input allowed). */
int dsri_gmatch_complete(const dsri_gmatch *m);
/* 1 when the input so far can be continued or is complete. */
int dsri_gmatch_alive(const dsri_gmatch *m);
/* 1 when bytes could be fed now (a check only; the state is unchanged). */
int dsri_gmatch_would_accept(dsri_gmatch *m, const char *bytes, size_t len);

/* ---- the vocabulary as a byte trie, and token masks ---- */

typedef struct dsri_vtrie dsri_vtrie;

/* The trie of the rendered bytes of every ordinary token of the model
 * (control tokens and tokens that render as nothing are left out). */
dsr1_status dsri_vtrie_new(const dsr1_model *model, dsri_vtrie **out);
void dsri_vtrie_free(dsri_vtrie *t);
int32_t dsri_vtrie_n_vocab(const dsri_vtrie *t);
/* The bytes of token id (as in the trie; NULL for tokens left out). */
const char *dsri_vtrie_piece(const dsri_vtrie *t, int32_t id, size_t *len);

/* Set bit t of mask (n_vocab bits, little-endian in 64-bit words) for every
 * token of the trie the matcher would accept now. The end-of-generation
 * tokens are the caller's (allowed when dsri_gmatch_complete()). Results
 * are cached by matcher state, so a state seen before costs a lookup. */
dsr1_status dsri_gmatch_mask(dsri_gmatch *m, const dsri_vtrie *t, uint64_t *mask);

/* ---- the public handle (api.c) ---- */

/* R1 writes "\n\n" after </think>: the whitespace a grammar applied after
 * the reasoning allows before its root. */
#define DSRI_GRAMMAR_LEAD_WS 2

const dsri_gbnf *dsri_grammar_rules(const dsr1_grammar *g);
const dsri_vtrie *dsri_grammar_trie(const dsr1_grammar *g);
const dsr1_model *dsri_grammar_model(const dsr1_grammar *g);

#endif
