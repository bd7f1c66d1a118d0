/*
 * Decoding (internal): sequences of tokens back to bytes, and the streaming
 * decoder behind dsr1_decoder_* (also usable by the generation code).
 */
#ifndef DSRI_TOKENIZER_DECODE_H
#define DSRI_TOKENIZER_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/handle.h"
#include "tokenizer/vocab.h"

struct dsr1_decoder {
    dsri_handle handle;   /* busy flag and last message (core/handle.h) */
    const dsri_vocab *v;
    uint32_t flags;       /* DSR1_PIECE_* */
    uint8_t pending[4];   /* the start of an incomplete character */
    size_t n_pending;
};

/* The bytes of tokens[0..n) (valid ids) written to buf up to buf_size;
 * returns the total length (which may exceed buf_size). No NUL. */
size_t dsri_vocab_detokenize(const dsri_vocab *v, const dsr1_token *tokens, int32_t n, uint32_t flags,
                             char *buf, size_t buf_size);

/* A decoder in caller-owned memory (no allocation). */
dsr1_status dsri_decoder_init(dsr1_decoder *d, const dsri_vocab *v, uint32_t flags);
/* As dsr1_decoder_push / dsr1_decoder_flush, token already validated. */
dsr1_status dsri_decoder_push(dsr1_decoder *d, dsr1_token token, char *buf, size_t buf_size, size_t *n_bytes);
dsr1_status dsri_decoder_flush(dsr1_decoder *d, char *buf, size_t buf_size, size_t *n_bytes);

#endif
