/*
 * Public tokenizer API (dsr1.h "Tokenizer"): argument validation around the
 * internal vocabulary functions.
 *
 * Buffer convention (the same for every text-returning call of the API):
 * *n_bytes is the length without the NUL; the call succeeds when
 * buf_size > *n_bytes and then always NUL-terminates. A NULL buffer with
 * size 0 asks for the size (DSR1_ERR_BUFFER_TOO_SMALL).
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tokenizer/decode.h"
#include "tokenizer/vocab.h"

#define TOKENIZE_FLAGS (DSR1_TOKENIZE_ADD_BOS | DSR1_TOKENIZE_PARSE_SPECIAL)
#define PIECE_FLAGS (DSR1_PIECE_RENDER_CONTROL)

static dsr1_status get_vocab(const dsr1_model *model, const char *fn, const dsri_vocab **v)
{
    if (!model)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: model is NULL", fn);
    *v = dsri_model_vocab(model);
    if (!*v)
        return dsri_error(DSR1_ERR_STATE, "%s: the model has no vocabulary", fn);
    return DSR1_OK;
}

static dsr1_status check_token(const dsri_vocab *v, dsr1_token t, const char *fn)
{
    if (t < 0 || t >= v->n_tokens)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: token %d is outside the vocabulary [0, %d)", fn, t,
                          v->n_tokens);
    return DSR1_OK;
}

static dsr1_status check_buf(const char *buf, size_t buf_size, const void *n_bytes, const char *fn)
{
    if (!n_bytes)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: n_bytes is NULL", fn);
    if (!buf && buf_size)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: buf is NULL but buf_size is %zu", fn, buf_size);
    return DSR1_OK;
}

/* Finish a fill of n bytes: the NUL, or the short-buffer report. */
static dsr1_status finish_fill(char *buf, size_t buf_size, size_t n, const char *fn)
{
    if (n >= buf_size)
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "%s: %zu bytes needed (with the NUL), buffer has %zu", fn,
                          n + 1, buf_size);
    buf[n] = '\0';
    return DSR1_OK;
}

dsr1_status dsr1_tokenize(const dsr1_model *model, const char *text, size_t text_len, dsr1_token *tokens,
                          int32_t capacity, int32_t *n_tokens, uint32_t flags)
{
    const char *fn = "dsr1_tokenize";
    const dsri_vocab *v;
    dsr1_status st = get_vocab(model, fn, &v);
    if (st != DSR1_OK)
        return st;
    if (!n_tokens)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: n_tokens is NULL", fn);
    if (!text && text_len)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: text is NULL but text_len is %zu", fn, text_len);
    if (text_len > (size_t)INT32_MAX - 1)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: text_len %zu is over the limit of %d bytes", fn,
                          text_len, INT32_MAX - 1);
    if (capacity < 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: capacity %d is negative", fn, capacity);
    if (!tokens && capacity)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: tokens is NULL but capacity is %d", fn, capacity);
    if (flags & ~TOKENIZE_FLAGS)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", fn, flags & ~TOKENIZE_FLAGS);
    return dsri_vocab_tokenize(v, text ? text : "", text_len, tokens, capacity, n_tokens, flags);
}

dsr1_status dsr1_token_to_piece(const dsr1_model *model, dsr1_token token, char *buf, size_t buf_size,
                                size_t *n_bytes, uint32_t flags)
{
    const char *fn = "dsr1_token_to_piece";
    const dsri_vocab *v;
    dsr1_status st;
    if ((st = get_vocab(model, fn, &v)) || (st = check_token(v, token, fn)) ||
        (st = check_buf(buf, buf_size, n_bytes, fn)))
        return st;
    if (flags & ~PIECE_FLAGS)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", fn, flags & ~PIECE_FLAGS);
    const char *p;
    size_t n;
    dsri_vocab_piece(v, token, flags, &p, &n);
    *n_bytes = n;
    if (n <= buf_size && n)
        memcpy(buf, p, n);
    return finish_fill(buf, buf_size, n, fn);
}

dsr1_status dsr1_detokenize(const dsr1_model *model, const dsr1_token *tokens, int32_t n_tokens, char *buf,
                            size_t buf_size, size_t *n_bytes, uint32_t flags)
{
    const char *fn = "dsr1_detokenize";
    const dsri_vocab *v;
    dsr1_status st;
    if ((st = get_vocab(model, fn, &v)) || (st = check_buf(buf, buf_size, n_bytes, fn)))
        return st;
    if (n_tokens < 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: n_tokens %d is negative", fn, n_tokens);
    if (!tokens && n_tokens)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: tokens is NULL but n_tokens is %d", fn, n_tokens);
    if (flags & ~PIECE_FLAGS)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", fn, flags & ~PIECE_FLAGS);
    for (int32_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= v->n_tokens)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: tokens[%d] = %d is outside the vocabulary [0, %d)", fn,
                              i, tokens[i], v->n_tokens);
    size_t n = dsri_vocab_detokenize(v, tokens, n_tokens, flags, buf, buf_size);
    *n_bytes = n;
    return finish_fill(buf, buf_size, n, fn);
}

dsr1_status dsr1_decoder_new(const dsr1_model *model, uint32_t flags, dsr1_decoder **out)
{
    const char *fn = "dsr1_decoder_new";
    if (!out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = NULL;
    const dsri_vocab *v;
    dsr1_status st = get_vocab(model, fn, &v);
    if (st != DSR1_OK)
        return st;
    if (flags & ~PIECE_FLAGS)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: unknown flags 0x%x", fn, flags & ~PIECE_FLAGS);
    dsr1_decoder *d = dsri_malloc(sizeof *d);
    if (!d)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    dsri_decoder_init(d, v, flags);
    *out = d;
    return DSR1_OK;
}

void dsr1_decoder_free(dsr1_decoder *dec)
{
    if (dec && !dsri_handle_busy(&dec->handle, "dsr1_decoder_free"))
        dsri_free(dec);
}

const char *dsr1_decoder_errmsg(const dsr1_decoder *dec)
{
    return dec ? dsri_handle_message(&dec->handle) : "";
}

static dsr1_status decoder_push(dsr1_decoder *dec, dsr1_token token, char *buf, size_t buf_size, size_t *n_bytes)
{
    const char *fn = "dsr1_decoder_push";
    dsr1_status st;
    if ((st = check_token(dec->v, token, fn)) || (st = check_buf(buf, buf_size, n_bytes, fn)))
        return st;
    return dsri_decoder_push(dec, token, buf, buf_size, n_bytes);
}

dsr1_status dsr1_decoder_push(dsr1_decoder *dec, dsr1_token token, char *buf, size_t buf_size, size_t *n_bytes)
{
    if (!dec)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_decoder_push: decoder is NULL");
    dsri_call call;
    dsr1_status st = dsri_enter(&dec->handle, &call, "dsr1_decoder_push");
    if (st)
        return st;
    return dsri_leave(&dec->handle, &call, decoder_push(dec, token, buf, buf_size, n_bytes));
}

dsr1_status dsr1_decoder_flush(dsr1_decoder *dec, char *buf, size_t buf_size, size_t *n_bytes)
{
    if (!dec)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_decoder_flush: decoder is NULL");
    dsri_call call;
    dsr1_status st = dsri_enter(&dec->handle, &call, "dsr1_decoder_flush");
    if (st)
        return st;
    st = check_buf(buf, buf_size, n_bytes, "dsr1_decoder_flush");
    if (!st)
        st = dsri_decoder_flush(dec, buf, buf_size, n_bytes);
    return dsri_leave(&dec->handle, &call, st);
}

dsr1_token dsr1_token_special(const dsr1_model *model, dsr1_special which)
{
    const dsri_vocab *v = model ? dsri_model_vocab(model) : NULL;
    if (!v || (int)which < 0 || (int)which >= DSRI_VOCAB_N_SPECIAL)
        return -1;
    return v->special[which];
}

dsr1_token_attr dsr1_token_get_attr(const dsr1_model *model, dsr1_token token)
{
    const dsri_vocab *v = model ? dsri_model_vocab(model) : NULL;
    if (!v || token < 0 || token >= v->n_tokens)
        return DSR1_TOKEN_UNDEFINED;
    return (dsr1_token_attr)v->attr[token];
}

int dsr1_token_is_eog(const dsr1_model *model, dsr1_token token)
{
    const dsri_vocab *v = model ? dsri_model_vocab(model) : NULL;
    if (!v || token < 0 || token >= v->n_tokens)
        return 0;
    return v->is_eog[token];
}
