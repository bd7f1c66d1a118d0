/*
 * libFuzzer target: saved context state blobs (dsr1_context_state_load,
 * dsr1_chat_state_load) against the deepseek2 fixture.
 *
 * A CRC-32 guards every blob, so random bytes are refused at the checksum;
 * to reach the checks behind it the harness can repair the size field and
 * the checksum after mutating. Input: one mode byte, then
 *   mode & 0x80: a real state is made here (the next byte says how many
 *     tokens; they follow), with a chat part of the message bytes that
 *     follow a 0xff byte when mode & 0x08; the rest of the input is
 *     (u16 offset, u8 xor) edits applied to it;
 *   else: the rest of the input is the blob itself;
 * then mode & 0x01 rewrites the size field to the blob's size, mode & 0x02
 * recomputes the checksum, mode & 0x04 passes a sampler, mode & 0x08 loads
 * through a chat. Checks, for every input:
 * - a refused blob is a status with a message, and changes nothing (the
 *   context's n_past and the sampler's state are as before);
 * - an accepted blob saves back to exactly the same bytes (when it was
 *   loaded with the parts it has), n_past is within n_ctx, and one more
 *   token evaluates (or is DSR1_ERR_NUMERIC: a cache of arbitrary bits
 *   may compute non-numbers).
 *   build-fuzz/fuzz/fuzz_state -timeout=5 CORPUS   (no seeds needed)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32.h"
#include "dsr1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define N_CTX 48
#define MAX_BLOB (1u << 20)

typedef struct world {
    dsr1_model *model;
    dsr1_context *ctx, *maker;
    dsr1_sampler *smp, *maker_smp;
    dsr1_chat *chat;
} world;

static world *get_world(void)
{
    static world w; /* made once per process; one thread */
    if (w.model)
        return &w;
    const char *path = getenv("DSR1_FUZZ_MODEL");
    if (!path)
        path = DSR1_SOURCE_DIR "/tests/data/models/deepseek2-q8_0.gguf";
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = N_CTX;
    cp.n_threads = 1;
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.penalty_last_n = 8;
    if (dsr1_model_load(path, &mp, &w.model) || dsr1_context_new(w.model, &cp, &w.ctx) ||
        dsr1_context_new(w.model, &cp, &w.maker) ||
        dsr1_sampler_new(dsr1_model_n_vocab(w.model), &sp, &w.smp) ||
        dsr1_sampler_new(dsr1_model_n_vocab(w.model), &sp, &w.maker_smp) ||
        dsr1_chat_new(w.ctx, w.smp, NULL, &w.chat))
        abort();
    return &w;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A real state of the tokens in data (and a chat part of msg bytes when
 * msg is not NULL: messages split at every byte < 4, which is the role of
 * the message after it). */
static size_t make_state(world *w, const uint8_t *toks, size_t n_toks, const uint8_t *msg, size_t n_msg,
                         uint8_t *out)
{
    const int32_t n_vocab = dsr1_model_n_vocab(w->model);
    dsr1_context_reset(w->maker);
    dsr1_sampler_reset(w->maker_smp, 1);
    dsr1_token t[16];
    for (size_t i = 0; i < n_toks && i < 16; i++) {
        t[i] = (dsr1_token)(toks[i] % (uint32_t)n_vocab);
        dsr1_sampler_accept(w->maker_smp, t[i]);
    }
    if (n_toks && dsr1_eval(w->maker, t, (int32_t)(n_toks < 16 ? n_toks : 16), 0, 0))
        abort();
    size_t n = 0;
    if (dsr1_context_state_save(w->maker, w->maker_smp, out, MAX_BLOB, &n))
        abort();
    if (!msg)
        return n;
    /* append a chat part before the checksum (flags bit 4) */
    n -= 4;
    out[12] |= 4u;
    size_t count_at = n, count = 0;
    n += 4;
    for (size_t i = 0; i < n_msg && n + 5 + n_msg < MAX_BLOB;) {
        uint8_t role = msg[i] < 4 ? msg[i++] : 1u;
        size_t start = i;
        while (i < n_msg && msg[i] >= 4)
            i++;
        out[n] = role;
        put_u32(out + n + 1, (uint32_t)(i - start));
        memcpy(out + n + 5, msg + start, i - start);
        n += 5 + (i - start);
        count++;
    }
    put_u32(out + count_at, (uint32_t)count);
    return n + 4; /* size and checksum repaired by the caller's mode bits */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_BLOB / 2)
        return 0;
    world *w = get_world();
    static uint8_t blob[MAX_BLOB], again[MAX_BLOB];
    const uint8_t mode = data[0];
    size_t n;
    if (mode & 0x80) {
        size_t n_toks = size > 1 ? data[1] % 17u : 0, at = 2 + n_toks;
        if (at > size)
            return 0;
        const uint8_t *msg = NULL;
        size_t n_msg = 0;
        if (mode & 0x08) { /* message bytes up to a 0xff */
            msg = data + at;
            while (at < size && data[at] != 0xff)
                at++;
            n_msg = (size_t)(data + at - msg);
            at += at < size;
        }
        n = make_state(w, data + 2, n_toks, msg, n_msg, blob);
        for (; at + 3 <= size; at += 3) {
            size_t off = ((size_t)data[at] | (size_t)data[at + 1] << 8) % n;
            blob[off] ^= data[at + 2];
        }
    } else {
        n = size - 1;
        memcpy(blob, data + 1, n);
    }
    if ((mode & 0x01) && n >= 56)
        for (int i = 0; i < 8; i++)
            blob[48 + i] = (uint8_t)((uint64_t)n >> (8 * i));
    if ((mode & 0x02) && n >= 4)
        put_u32(blob + n - 4, dsri_crc32(0, blob, n - 4));

    dsr1_sampler *smp = (mode & 0x04) ? w->smp : NULL;
    const int via_chat = (mode & 0x08) != 0;
    const int32_t past_before = dsr1_context_n_past(w->ctx);
    size_t smp_n = 0;
    uint8_t smp_before[256], smp_after[256];
    dsr1_sampler_state_save(w->smp, smp_before, sizeof smp_before, &smp_n);
    const int32_t msgs_before = dsr1_chat_n_messages(w->chat);

    dsr1_status st = via_chat ? dsr1_chat_state_load(w->chat, blob, n) : dsr1_context_state_load(w->ctx, smp, blob, n);
    if (st != DSR1_OK) {
        const char *msg = via_chat ? dsr1_chat_errmsg(w->chat) : dsr1_context_errmsg(w->ctx);
        size_t k = 0;
        dsr1_sampler_state_save(w->smp, smp_after, sizeof smp_after, &k);
        if (!msg[0] || dsr1_context_n_past(w->ctx) != past_before || k != smp_n || memcmp(smp_before, smp_after, k) ||
            dsr1_chat_n_messages(w->chat) != msgs_before)
            abort(); /* a refusal without a message, or one that changed something */
        return 0;
    }
    const int32_t n_past = dsr1_context_n_past(w->ctx);
    if (n_past < 0 || n_past > N_CTX)
        abort();
    /* saved back with the same parts: the same bytes */
    const int has_sampler = (blob[12] & 2u) != 0, has_chat = (blob[12] & 4u) != 0;
    size_t m = 0;
    if (via_chat && has_sampler && has_chat) {
        if (dsr1_chat_state_save(w->chat, again, sizeof again, &m) || m != n || memcmp(again, blob, n))
            abort();
    } else if (!via_chat && !has_chat && has_sampler == (smp != NULL)) {
        if (dsr1_context_state_save(w->ctx, smp, again, sizeof again, &m) || m != n || memcmp(again, blob, n))
            abort();
    }
    if (n_past < N_CTX) {
        dsr1_token t = 1;
        st = dsr1_eval(w->ctx, &t, 1, n_past, 0);
        if (st != DSR1_OK && st != DSR1_ERR_NUMERIC)
            abort();
    }
    return 0;
}
