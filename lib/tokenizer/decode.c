/*
 * Decoding: token pieces, whole sequences, and the streaming decoder that
 * only ever hands out complete UTF-8 characters.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tokenizer/decode.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

void dsri_vocab_piece(const dsri_vocab *v, dsr1_token id, uint32_t flags, const char **bytes, size_t *len)
{
    uint8_t a = v->attr[id];
    int show = a == DSR1_TOKEN_NORMAL || a == DSR1_TOKEN_USER_DEFINED ||
               ((a == DSR1_TOKEN_CONTROL || a == DSR1_TOKEN_UNKNOWN) && (flags & DSR1_PIECE_RENDER_CONTROL));
    *bytes = v->piece + v->piece_off[id];
    *len = show ? v->piece_off[id + 1] - v->piece_off[id] : 0;
}

size_t dsri_vocab_detokenize(const dsri_vocab *v, const dsr1_token *tokens, int32_t n, uint32_t flags,
                             char *buf, size_t buf_size)
{
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        dsri_vocab_piece(v, tokens[i], flags, &p, &len);
        if (buf && total < buf_size)
            memcpy(buf + total, p, len <= buf_size - total ? len : buf_size - total);
        total += len;
    }
    return total;
}

static const uint8_t replacement[3] = {0xef, 0xbf, 0xbd}; /* U+FFFD */

typedef struct out_buf {
    char *buf;
    size_t cap, len;
} out_buf;

static void put(out_buf *o, const uint8_t *p, size_t n)
{
    if (o->buf && o->len < o->cap)
        memcpy(o->buf + o->len, p, n <= o->cap - o->len ? n : o->cap - o->len);
    o->len += n;
}

/* Emit the complete characters of data[0..n) (ill-formed parts as U+FFFD)
 * and return how many trailing bytes form an incomplete character. */
static size_t put_complete(out_buf *o, const uint8_t *data, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int k = dsri_utf8_check(data + i, n - i);
        if (k > 0) {
            size_t j = i + (size_t)k; /* copy a run of complete characters at once */
            while (j < n && (k = dsri_utf8_check(data + j, n - j)) > 0)
                j += (size_t)k;
            put(o, data + i, j - i);
            i = j;
        } else if (k < 0) {
            put(o, replacement, sizeof replacement);
            i += (size_t)-k;
        } else {
            return n - i;
        }
    }
    return 0;
}

/* What pushing these bytes would produce; the new pending bytes go to pend. */
static void decode_bytes(const dsr1_decoder *d, const uint8_t *p, size_t n, out_buf *o, uint8_t pend[4],
                         size_t *n_pend)
{
    size_t used = 0;
    if (d->n_pending) {
        uint8_t tmp[8];
        size_t t = d->n_pending;
        memcpy(tmp, d->pending, t);
        while (t < 4 && used < n)
            tmp[t++] = p[used++];
        int k = dsri_utf8_check(tmp, t);
        if (k > 0) { /* the held character completes */
            put(o, tmp, (size_t)k);
            used = (size_t)k - d->n_pending;
        } else if (k < 0) { /* it never will: replace what was held */
            put(o, replacement, sizeof replacement);
            used = 0;
            if ((size_t)-k > d->n_pending) /* cannot happen (pending is a valid prefix) */
                used = (size_t)-k - d->n_pending;
        } else { /* still incomplete: everything is held */
            memcpy(pend, tmp, t);
            *n_pend = t;
            return;
        }
    }
    size_t rest = put_complete(o, p + used, n - used);
    memcpy(pend, p + n - rest, rest);
    *n_pend = rest;
}

dsr1_status dsri_decoder_init(dsr1_decoder *d, const dsri_vocab *v, uint32_t flags)
{
    dsri_handle_init(&d->handle);
    memset(d, 0, sizeof *d);
    d->v = v;
    d->flags = flags;
    return DSR1_OK;
}

dsr1_status dsri_decoder_push(dsr1_decoder *d, dsr1_token token, char *buf, size_t buf_size, size_t *n_bytes)
{
    const char *p;
    size_t n;
    dsri_vocab_piece(d->v, token, d->flags, &p, &n);
    out_buf o = {buf, buf_size, 0};
    uint8_t pend[4];
    size_t n_pend = 0;
    decode_bytes(d, (const uint8_t *)p, n, &o, pend, &n_pend);
    *n_bytes = o.len;
    if (!buf || buf_size <= o.len)
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "dsr1_decoder_push: %zu bytes needed (with the NUL), buffer has %zu",
                          o.len + 1, buf_size);
    buf[o.len] = '\0';
    memcpy(d->pending, pend, n_pend);
    d->n_pending = n_pend;
    return DSR1_OK;
}

dsr1_status dsri_decoder_flush(dsr1_decoder *d, char *buf, size_t buf_size, size_t *n_bytes)
{
    out_buf o = {buf, buf_size, 0};
    /* held bytes are a proper prefix of one character: one U+FFFD */
    if (d->n_pending)
        put(&o, replacement, sizeof replacement);
    *n_bytes = o.len;
    if (!buf || buf_size <= o.len)
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "dsr1_decoder_flush: %zu bytes needed (with the NUL), buffer has %zu",
                          o.len + 1, buf_size);
    buf[o.len] = '\0';
    d->n_pending = 0;
    return DSR1_OK;
}
