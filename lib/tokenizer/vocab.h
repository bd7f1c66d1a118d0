/*
 * Vocabulary and byte-level BPE tokenizer (internal).
 *
 * Built from the GGUF `tokenizer.ggml.*` metadata (only the `gpt2` model:
 * byte-level BPE, as all DeepSeek-R1 models use). A dsri_vocab is immutable
 * after dsri_vocab_load() and safe to share between threads: every call
 * allocates its own scratch memory.
 *
 * Pre-tokenizers, selected by `tokenizer.ggml.pre`:
 *   "qwen2", "deepseek-r1-qwen"            Qwen2 regex (single digits)
 *   "llama3", "llama-v3", "llama-bpe"      Llama 3 regex (digits in threes),
 *                                          with ignore_merges
 *   "deepseek-v3", "deepseek-r1"           DeepSeek-V3 sequence (digits in
 *                                          threes, CJK/kana runs, then its
 *                                          letter/punctuation regex)
 * Any other value fails with DSR1_ERR_UNSUPPORTED (a wrong pre-tokenizer
 * would silently produce wrong ids). A file without the key gets the Llama 3
 * regex without ignore_merges (the GPT-4o-style default) and `pre_defaulted`
 * is set so the loader can log it.
 */
#ifndef DSRI_TOKENIZER_VOCAB_H
#define DSRI_TOKENIZER_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "dsr1.h"
#include "gguf/gguf.h"

typedef enum dsri_pre_type {
    DSRI_PRE_LLAMA3 = 0,
    DSRI_PRE_QWEN2 = 1,
    DSRI_PRE_DEEPSEEK3 = 2
} dsri_pre_type;

/* One BPE merge, indexed by its rank. */
typedef struct dsri_merge {
    int32_t left, right, result;
} dsri_merge;

#define DSRI_VOCAB_N_SPECIAL 7 /* dsr1_special roles */

typedef struct dsri_vocab {
    int32_t n_tokens;
    /* Token texts as stored in the file (byte-mapped for normal tokens). */
    char *text;
    uint32_t *text_off;  /* n_tokens + 1 */
    /* The bytes each token renders as (normal tokens: inverse byte map;
     * control and user-defined tokens: their text). */
    char *piece;
    uint32_t *piece_off; /* n_tokens + 1 */
    uint8_t *attr;       /* dsr1_token_attr per token */
    uint8_t *is_eog;     /* 1 for end-of-generation tokens */

    /* text -> id (open addressing, -1 = empty). Duplicated texts map to the
     * lowest id. */
    int32_t *tok_hash;
    uint32_t tok_mask;

    /* (left, right) -> merge rank (open addressing, UINT32_MAX = empty). */
    dsri_merge *merges;
    uint32_t n_merges;
    uint32_t *merge_hash;
    uint32_t merge_mask;

    /* The token of each single byte (-1 when the vocabulary lacks it). */
    int32_t byte_token[256];

    /* Special (CONTROL / USER_DEFINED) tokens matched in text: their own
     * text -> id map, and per first byte the distinct lengths, longest first. */
    int32_t *spec_hash;
    uint32_t spec_mask;
    uint32_t *spec_lens;        /* all lists back to back */
    uint32_t spec_len_start[257];

    int32_t special[DSRI_VOCAB_N_SPECIAL]; /* by dsr1_special, -1 = none */
    int32_t unk_id, eot_id;
    int add_bos, add_eos;
    dsri_pre_type pre;
    int ignore_merges;
    int pre_defaulted;
} dsri_vocab;

/* Build the vocabulary from GGUF metadata. Errors are reported through
 * dsri_error() naming the key and index (DSR1_ERR_FORMAT for inconsistent
 * data, DSR1_ERR_UNSUPPORTED for other tokenizer models / pre-tokenizers). */
dsr1_status dsri_vocab_load(const dsri_gguf *g, dsri_vocab **out);
void dsri_vocab_free(dsri_vocab *v);
int32_t dsri_vocab_n_tokens(const dsri_vocab *v);

/* The id of the token whose file text is exactly text[0..len), or -1. */
int32_t dsri_vocab_find(const dsri_vocab *v, const char *text, size_t len);

/* Tokenize (flags: DSR1_TOKENIZE_*). Stores at most capacity ids; *n_tokens
 * receives the count produced or needed (DSR1_ERR_BUFFER_TOO_SMALL). Only
 * allocation can fail otherwise. Arguments are not validated here. */
dsr1_status dsri_vocab_tokenize(const dsri_vocab *v, const char *text, size_t len,
                                dsr1_token *tokens, int32_t capacity, int32_t *n_tokens,
                                uint32_t flags);

/* Append-style token sink used by the tokenizer and the chat code. */
typedef struct dsri_tok_sink {
    dsr1_token *tokens;
    int64_t capacity;
    int64_t count; /* may exceed capacity: then only counted */
} dsri_tok_sink;

static inline void dsri_tok_sink_push(dsri_tok_sink *s, dsr1_token t)
{
    if (s->count < s->capacity)
        s->tokens[s->count] = t;
    s->count++;
}

/* Tokenize into a sink (no BOS; flags: DSR1_TOKENIZE_PARSE_SPECIAL). */
dsr1_status dsri_vocab_tokenize_sink(const dsri_vocab *v, const char *text, size_t len,
                                     uint32_t flags, dsri_tok_sink *sink);

/* The rendered bytes of a valid token id (flags: DSR1_PIECE_*); points into
 * the vocabulary. */
void dsri_vocab_piece(const dsri_vocab *v, dsr1_token id, uint32_t flags,
                      const char **bytes, size_t *len);

/* Pre-tokenize text[0..len) (no special-token handling): calls fn for each
 * pre-token byte range. Exposed for tests. Returns DSR1_ERR_OUT_OF_MEMORY or
 * the first non-OK status fn returns. */
typedef dsr1_status (*dsri_pretok_fn)(size_t begin, size_t end, void *user);
dsr1_status dsri_pretokenize(dsri_pre_type pre, const char *text, size_t len,
                             dsri_pretok_fn fn, void *user);

/* The model's vocabulary (defined in lib/model/loader.c, declared in
 * model/model.h too; repeated here so the tokenizer needs no model headers). */
const dsri_vocab *dsri_model_vocab(const dsr1_model *model);

#endif
