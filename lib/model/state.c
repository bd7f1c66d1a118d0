/*
 * Saved context state: the blob, and dsr1_context_state_save / _load.
 *
 * Layout (all little-endian; the supported hosts are little-endian, so the
 * cache and logits are written as their bytes):
 *
 *   0  "DSR1CTX" 0        magic
 *   8  u32 version        STATE_VERSION
 *  12  u32 flags          DSRI_STATE_HAS_LOGITS | _SAMPLER | _CHAT
 *  16  u64 model identity (model_identity below)
 *  24  u32 n_layer        cache layers saved (the main layers; not MTP's)
 *  28  u32 k width, v width (cache elements per token and layer)
 *  36  u32 kv_type        1 f32, 2 f16
 *  40  u32 n_vocab
 *  44  u32 n_past
 *  48  u64 size           of the whole blob
 *  56  u32 tokens[n_past]
 *      per layer: k rows [0, n_past), then v rows [0, n_past)
 *      LOGITS:  f32 logits[n_vocab] of the last evaluated token
 *      SAMPLER: u32 length, the dsr1_sampler_state_save blob
 *      CHAT:    u32 n_messages; per message u8 role, u32 length, bytes
 *      u32 CRC-32 of everything before
 *
 * Loading checks, in order: magic, version, size, checksum, model, then
 * every count against the context, and the parts must end exactly at the
 * checksum. The checksum comes before any field is trusted, so a damaged
 * blob is refused as damaged whatever byte was hit.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/host_ops.h"
#include "core/alloc.h"
#include "core/crc32.h"
#include "core/error.h"
#include "core/handle.h"
#include "gguf/gguf.h"
#include "model/context.h"
#include "model/state.h"
#include "sample/sampler.h"

static const uint8_t MAGIC[8] = {'D', 'S', 'R', '1', 'C', 'T', 'X', 0};
#define STATE_VERSION 1u
#define HEADER_BYTES 56u
#define KNOWN_FLAGS (DSRI_STATE_HAS_LOGITS | DSRI_STATE_HAS_SAMPLER | DSRI_STATE_HAS_CHAT)

static const char *const ROLES[4] = {"system", "user", "assistant", "tool"};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* FNV-1a, 64 bits */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
    uint8_t b[8];
    put_u64(b, v);
    return fnv(h, b, 8);
}

/* What makes a cache belong to a model: its architecture, its
 * hyper-parameters, and its tensor table (names, types, shapes, and the
 * first bytes of each tensor's data, so two files that differ only in
 * their weights differ too). Cheap: one page per tensor is touched. */
static uint64_t model_identity(const dsr1_model *m)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv(h, m->arch_name, strlen(m->arch_name));
    /* every field of dsri_hparams is 4 bytes (int32_t or float) */
    _Static_assert(sizeof(dsri_hparams) % 4 == 0, "dsri_hparams holds 4-byte fields only");
    const uint8_t *hp = (const uint8_t *)&m->hp;
    for (size_t i = 0; i < sizeof m->hp; i += 4) {
        uint32_t w;
        memcpy(&w, hp + i, 4);
        h = fnv_u64(h, w);
    }
    h = fnv_u64(h, (uint64_t)m->kv_k_width);
    h = fnv_u64(h, (uint64_t)m->kv_v_width);
    const int64_t n = dsr1_model_tensor_count(m);
    h = fnv_u64(h, (uint64_t)n);
    for (int64_t i = 0; i < n; i++) {
        dsr1_tensor_info t;
        t.size = sizeof t;
        if (dsr1_model_tensor_info(m, i, &t) != DSR1_OK)
            continue;
        h = fnv(h, t.name, strlen(t.name) + 1);
        h = fnv_u64(h, t.type);
        h = fnv_u64(h, t.n_dims);
        for (int d = 0; d < 4; d++)
            h = fnv_u64(h, (uint64_t)t.ne[d]);
        h = fnv_u64(h, t.n_bytes);
        const dsri_gguf_tensor *gt = dsri_gguf_tensor_at(m->gguf, (uint64_t)i);
        if (gt && gt->data)
            h = fnv(h, gt->data, gt->n_bytes < 64 ? (size_t)gt->n_bytes : 64);
    }
    return h;
}

/* The sizes of one blob's parts. */
typedef struct layout {
    uint64_t tokens, kv_row_k, kv_row_v, kv, logits, total_without_tail;
} layout;

static void layout_of(const dsr1_context *ctx, int32_t n_past, uint32_t flags, layout *o)
{
    const dsr1_model *m = ctx->model;
    const uint64_t eb = (uint64_t)dsri_kv_elem_bytes(ctx->kv_type);
    o->tokens = 4u * (uint64_t)n_past;
    o->kv_row_k = (uint64_t)m->kv_k_width * eb;
    o->kv_row_v = (uint64_t)m->kv_v_width * eb;
    o->kv = (uint64_t)m->hp.n_layer * (uint64_t)n_past * (o->kv_row_k + o->kv_row_v);
    o->logits = flags & DSRI_STATE_HAS_LOGITS ? 4u * (uint64_t)m->hp.n_vocab : 0u;
    o->total_without_tail = HEADER_BYTES + o->tokens + o->kv + o->logits;
}

/* The row dsr1_logits(ctx, -1) returns, or NULL. */
static const float *last_logits(const dsr1_context *ctx)
{
    const int32_t last = ctx->last_n_tokens - 1;
    if (ctx->n_past == 0 || ctx->n_logits_rows == 0 || last < ctx->logits_first ||
        last >= ctx->logits_first + ctx->n_logits_rows)
        return NULL;
    return ctx->logits + (size_t)(last - ctx->logits_first) * (size_t)ctx->model->hp.n_vocab;
}

dsr1_status dsri_state_save(dsr1_context *ctx, const dsr1_sampler *smp, const dsri_state_msg *msgs, int32_t n_msgs,
                            void *buf, size_t buf_size, size_t *n_bytes, const char *fn)
{
    if (!host_is_little_endian())
        return dsri_error(DSR1_ERR_UNSUPPORTED, "%s: state blobs need a little-endian host", fn);
    const float *logits = last_logits(ctx);
    const uint32_t flags = (logits ? DSRI_STATE_HAS_LOGITS : 0u) | (smp ? DSRI_STATE_HAS_SAMPLER : 0u) |
                           (msgs ? DSRI_STATE_HAS_CHAT : 0u);
    layout lo;
    layout_of(ctx, ctx->n_past, flags, &lo);
    const size_t smp_len = smp ? dsri_sampler_state_size(smp) : 0;
    uint64_t need = lo.total_without_tail + (smp ? 4u + (uint64_t)smp_len : 0u) + 4u;
    if (msgs) {
        need += 4;
        for (int32_t i = 0; i < n_msgs; i++)
            need += 5u + (uint64_t)msgs[i].len;
    }
    if (need > SIZE_MAX)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s: a state of %llu bytes does not fit in memory", fn,
                          (unsigned long long)need);
    *n_bytes = (size_t)need;
    if (buf_size < need)
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "%s: %llu bytes needed, buffer has %zu", fn,
                          (unsigned long long)need, buf_size);
    uint8_t *p = buf;
    const dsr1_model *m = ctx->model;
    memcpy(p, MAGIC, 8);
    put_u32(p + 8, STATE_VERSION);
    put_u32(p + 12, flags);
    put_u64(p + 16, model_identity(m));
    put_u32(p + 24, (uint32_t)m->hp.n_layer);
    put_u32(p + 28, (uint32_t)m->kv_k_width);
    put_u32(p + 32, (uint32_t)m->kv_v_width);
    put_u32(p + 36, (uint32_t)ctx->kv_type);
    put_u32(p + 40, (uint32_t)m->hp.n_vocab);
    put_u32(p + 44, (uint32_t)ctx->n_past);
    put_u64(p + 48, need);
    size_t off = HEADER_BYTES;
    for (int32_t i = 0; i < ctx->n_past; i++, off += 4)
        put_u32(p + off, (uint32_t)ctx->tokens[i]);
    for (int l = 0; l < m->hp.n_layer && ctx->n_past > 0; l++) {
        const dsri_run *r = dsri_ctx_run(ctx, l);
        dsri_tensor k = dsri_rows(&ctx->k[l], 0, ctx->n_past), v = dsri_rows(&ctx->v[l], 0, ctx->n_past);
        dsr1_status st = r->ops->download(r->be, &k, p + off);
        off += (size_t)(lo.kv_row_k * (uint64_t)ctx->n_past);
        if (!st)
            st = r->ops->download(r->be, &v, p + off);
        off += (size_t)(lo.kv_row_v * (uint64_t)ctx->n_past);
        if (st)
            return st;
    }
    if (logits) {
        memcpy(p + off, logits, (size_t)lo.logits);
        off += (size_t)lo.logits;
    }
    if (smp) {
        put_u32(p + off, (uint32_t)smp_len);
        size_t written;
        dsr1_status st = dsr1_sampler_state_save(smp, p + off + 4, smp_len, &written);
        if (st)
            return st;
        off += 4 + smp_len;
    }
    if (msgs) {
        put_u32(p + off, (uint32_t)n_msgs);
        off += 4;
        for (int32_t i = 0; i < n_msgs; i++) {
            uint8_t role = 0;
            while (role < 4 && strcmp(ROLES[role], msgs[i].role) != 0)
                role++;
            p[off] = role < 4 ? role : 1u; /* the chat knows no other roles */
            put_u32(p + off + 1, (uint32_t)msgs[i].len);
            memcpy(p + off + 5, msgs[i].content, msgs[i].len);
            off += 5 + msgs[i].len;
        }
    }
    put_u32(p + off, dsri_crc32(0, p, off));
    return DSR1_OK;
}

/* Advance *off past n bytes when they lie before end; 0 when they do not. */
static int take(uint64_t *off, uint64_t n, uint64_t end)
{
    if (n > end || *off > end - n)
        return 0;
    *off += n;
    return 1;
}

dsr1_status dsri_state_parse(const dsr1_context *ctx, const dsr1_sampler *smp, const void *data, size_t size,
                             dsri_state_view *v, const char *fn)
{
    const uint8_t *p = data;
    const dsr1_model *m = ctx->model;
    memset(v, 0, sizeof *v);
    if (!host_is_little_endian())
        return dsri_error(DSR1_ERR_UNSUPPORTED, "%s: state blobs need a little-endian host", fn);
    if (size < HEADER_BYTES + 4 || memcmp(p, MAGIC, 8) != 0)
        return dsri_error(DSR1_ERR_FORMAT, "%s: not a libdsr1 context state (%zu bytes, no \"DSR1CTX\" header)", fn,
                          size);
    const uint32_t version = get_u32(p + 8);
    if (version != STATE_VERSION)
        return dsri_error(DSR1_ERR_FORMAT, "%s: state format version %u; this library reads version %u", fn, version,
                          STATE_VERSION);
    const uint64_t declared = get_u64(p + 48);
    if (declared != size)
        return dsri_error(DSR1_ERR_FORMAT, "%s: the state says it has %llu bytes, %zu were given (truncated or "
                          "damaged)", fn, (unsigned long long)declared, size);
    if (dsri_crc32(0, p, size - 4) != get_u32(p + size - 4))
        return dsri_error(DSR1_ERR_FORMAT, "%s: the state's checksum does not match (damaged)", fn);
    const uint64_t id = get_u64(p + 16), own = model_identity(m);
    const uint32_t n_layer = get_u32(p + 24), kw = get_u32(p + 28), vw = get_u32(p + 32), n_vocab = get_u32(p + 40);
    if (id != own || n_layer != (uint32_t)m->hp.n_layer || kw != (uint64_t)m->kv_k_width ||
        vw != (uint64_t)m->kv_v_width || n_vocab != (uint32_t)m->hp.n_vocab)
        return dsri_error(DSR1_ERR_FORMAT, "%s: the state is of another model (identity %016llx, %u layers, %u "
                          "tokens; this model: %016llx, %d layers, %d tokens)", fn, (unsigned long long)id, n_layer,
                          n_vocab, (unsigned long long)own, m->hp.n_layer, m->hp.n_vocab);
    const uint32_t flags = get_u32(p + 12), kv_type = get_u32(p + 36), n_past = get_u32(p + 44);
    if (flags & ~KNOWN_FLAGS)
        return dsri_error(DSR1_ERR_FORMAT, "%s: unknown parts (flags 0x%x)", fn, flags);
    if (kv_type != DSR1_KV_F32 && kv_type != DSR1_KV_F16)
        return dsri_error(DSR1_ERR_FORMAT, "%s: cache element type %u is not f32 (1) or f16 (2)", fn, kv_type);
    if (kv_type != (uint32_t)ctx->kv_type)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: the state's cache is %s, this context's %s (make the "
                          "context with the same kv_type)", fn, kv_type == DSR1_KV_F16 ? "f16" : "f32",
                          ctx->kv_type == DSR1_KV_F16 ? "f16" : "f32");
    if (n_past > (uint32_t)ctx->n_ctx)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: the state holds %u tokens, this context only %d", fn,
                          n_past, ctx->n_ctx);
    if ((flags & DSRI_STATE_HAS_LOGITS) && n_past == 0)
        return dsri_error(DSR1_ERR_FORMAT, "%s: logits without tokens", fn);
    if (smp && !(flags & DSRI_STATE_HAS_SAMPLER))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: a sampler was given, but the state was saved without one",
                          fn);

    layout lo;
    layout_of(ctx, (int32_t)n_past, flags, &lo);
    const uint64_t end = size - 4;
    uint64_t off = HEADER_BYTES;
    v->off_tokens = (size_t)off;
    int ok = take(&off, lo.tokens, end);
    v->off_kv = (size_t)off;
    ok = ok && take(&off, lo.kv, end);
    v->off_logits = (size_t)off;
    ok = ok && take(&off, lo.logits, end);
    if (ok && (flags & DSRI_STATE_HAS_SAMPLER)) {
        ok = take(&off, 4, end);
        v->sampler_len = ok ? get_u32(p + off - 4) : 0;
        v->off_sampler = (size_t)off;
        ok = ok && take(&off, v->sampler_len, end);
    }
    if (ok && (flags & DSRI_STATE_HAS_CHAT)) {
        ok = take(&off, 4, end);
        const uint32_t n_msgs = ok ? get_u32(p + off - 4) : 0;
        v->off_msgs = (size_t)off;
        for (uint32_t i = 0; ok && i < n_msgs; i++) {
            ok = take(&off, 5, end);
            if (!ok)
                break;
            const uint8_t role = p[off - 5];
            const uint32_t len = get_u32(p + off - 4);
            if (role >= 4 || !take(&off, len, end) || memchr(p + off - len, 0, len))
                return dsri_error(DSR1_ERR_FORMAT, "%s: chat message %u is malformed (role %u, %u bytes)", fn, i,
                                  role, len);
        }
        if (ok && n_msgs > INT32_MAX)
            ok = 0;
        v->n_msgs = ok ? (int32_t)n_msgs : 0;
    }
    if (!ok || off != end)
        return dsri_error(DSR1_ERR_FORMAT, "%s: the state's parts do not add up to its %zu bytes", fn, size);
    for (uint32_t i = 0; i < n_past; i++)
        if (get_u32(p + v->off_tokens + 4 * (size_t)i) >= n_vocab)
            return dsri_error(DSR1_ERR_FORMAT, "%s: token %u of the state is outside the vocabulary", fn, i);
    for (uint32_t i = 0; i < (uint32_t)lo.logits / 4; i++) {
        float f;
        memcpy(&f, p + v->off_logits + 4 * (size_t)i, 4);
        if (!isfinite(f))
            return dsri_error(DSR1_ERR_FORMAT, "%s: logit %u of the state is not a number", fn, i);
    }
    v->data = p;
    v->size = size;
    v->flags = flags;
    v->n_past = (int32_t)n_past;
    return DSR1_OK;
}

void dsri_state_next_msg(const dsri_state_view *v, size_t *off, dsri_state_msg *out)
{
    const uint8_t *p = v->data + *off;
    out->role = ROLES[p[0]];
    out->len = get_u32(p + 1);
    out->content = (const char *)p + 5;
    *off += 5 + out->len;
}

dsr1_status dsri_state_apply(dsr1_context *ctx, dsr1_sampler *smp, const dsri_state_view *v, const char *fn)
{
    (void)fn;
    dsr1_status st;
    if (smp && (st = dsr1_sampler_state_load(smp, v->data + v->off_sampler, v->sampler_len)))
        return st;
    /* from here a failure leaves the context empty */
    dsri_ctx_truncate(ctx, 0);
    ctx->n_logits_rows = 0;
    ctx->n_hidden = 0;
    ctx->mtp_n_past = 0; /* the draft head's cache is not saved (context.h) */
    const dsr1_model *m = ctx->model;
    layout lo;
    layout_of(ctx, v->n_past, v->flags, &lo);
    const uint8_t *src = v->data + v->off_kv;
    for (int l = 0; l < m->hp.n_layer && v->n_past > 0; l++) {
        const dsri_run *r = dsri_ctx_run(ctx, l);
        dsri_tensor k = dsri_rows(&ctx->k[l], 0, v->n_past), vv = dsri_rows(&ctx->v[l], 0, v->n_past);
        if ((st = r->ops->upload(r->be, &k, src)))
            return st;
        src += lo.kv_row_k * (uint64_t)v->n_past;
        if ((st = r->ops->upload(r->be, &vv, src)))
            return st;
        src += lo.kv_row_v * (uint64_t)v->n_past;
    }
    if ((st = dsri_ctx_sync(ctx)))
        return st;
    for (int32_t i = 0; i < v->n_past; i++)
        ctx->tokens[i] = (dsr1_token)get_u32(v->data + v->off_tokens + 4 * (size_t)i);
    ctx->n_past = v->n_past;
    if (v->flags & DSRI_STATE_HAS_LOGITS) {
        memcpy(ctx->logits, v->data + v->off_logits, (size_t)lo.logits);
        ctx->n_logits_rows = 1;
        ctx->logits_first = 0;
        ctx->last_n_tokens = 1;
    }
    return DSR1_OK;
}

/* ---- files ---- */

dsr1_status dsri_file_read_all(const char *path, void **data, size_t *size, const char *fn)
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dsri_error(DSR1_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    size_t cap = 1u << 16, len = 0;
    uint8_t *buf = dsri_malloc(cap);
    dsr1_status st = DSR1_OK;
    for (;;) {
        if (!buf) {
            st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s: '%s' does not fit in memory", fn, path);
            break;
        }
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) {
            if (ferror(f))
                st = dsri_error(DSR1_ERR_IO, "%s: cannot read '%s': %s", fn, path, strerror(errno));
            break;
        }
        uint8_t *grown = cap <= SIZE_MAX / 2 ? dsri_realloc(buf, cap * 2) : NULL;
        if (!grown)
            dsri_free(buf);
        buf = grown;
        cap *= 2;
    }
    fclose(f);
    if (st) {
        dsri_free(buf);
        return st;
    }
    *data = buf;
    *size = len;
    return DSR1_OK;
}

dsr1_status dsri_file_write_all(const char *path, const void *data, size_t size, const char *fn)
{
    const size_t n = strlen(path);
    char *tmp = dsri_malloc(n + 5);
    if (!tmp)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    dsr1_status st = DSR1_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = dsri_error(DSR1_ERR_IO, "%s: cannot create '%s': %s", fn, tmp, strerror(errno));
    } else {
        int ok = fwrite(data, 1, size, f) == size;
        int err = errno;
        if (fclose(f) != 0 && ok) {
            ok = 0;
            err = errno;
        }
        if (!ok)
            st = dsri_error(DSR1_ERR_IO, "%s: cannot write '%s': %s", fn, tmp, strerror(err));
        else if (rename(tmp, path) != 0)
            st = dsri_error(DSR1_ERR_IO, "%s: cannot rename '%s' to '%s': %s", fn, tmp, path, strerror(errno));
        if (st)
            remove(tmp);
    }
    dsri_free(tmp);
    return st;
}

/* ---- the public calls ---- */

/* Hold ctx (entered) and smp (borrowed) for fn. */
static dsr1_status hold(dsr1_context *ctx, const dsr1_sampler *smp, dsri_call *call, const char *fn)
{
    dsr1_status st = dsri_enter(&ctx->handle, call, fn);
    if (st)
        return st;
    st = dsri_context_check_free(ctx, fn);
    if (!st && smp)
        st = dsri_borrow(dsri_sampler_handle((dsr1_sampler *)smp), fn);
    return st ? dsri_leave(&ctx->handle, call, st) : DSR1_OK;
}

static dsr1_status release(dsr1_context *ctx, const dsr1_sampler *smp, const dsri_call *call, dsr1_status st)
{
    if (smp)
        dsri_unborrow(dsri_sampler_handle((dsr1_sampler *)smp));
    return dsri_leave(&ctx->handle, call, st);
}

dsr1_status dsr1_context_state_save(dsr1_context *ctx, const dsr1_sampler *smp, void *buf, size_t buf_size,
                                    size_t *n_bytes)
{
    const char *fn = "dsr1_context_state_save";
    if (!ctx || !n_bytes || (!buf && buf_size))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: ctx and n_bytes are required (buf only with buf_size)", fn);
    dsri_call call;
    dsr1_status st = hold(ctx, smp, &call, fn);
    if (st)
        return st;
    return release(ctx, smp, &call, dsri_state_save(ctx, smp, NULL, 0, buf, buf_size, n_bytes, fn));
}

dsr1_status dsr1_context_state_load(dsr1_context *ctx, dsr1_sampler *smp, const void *data, size_t size)
{
    const char *fn = "dsr1_context_state_load";
    if (!ctx || (!data && size))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: ctx is required (data only with size)", fn);
    dsri_call call;
    dsr1_status st = hold(ctx, smp, &call, fn);
    if (st)
        return st;
    dsri_state_view v;
    if (!(st = dsri_state_parse(ctx, smp, data, size, &v, fn)))
        st = dsri_state_apply(ctx, smp, &v, fn);
    return release(ctx, smp, &call, st);
}

dsr1_status dsr1_context_state_save_file(dsr1_context *ctx, const dsr1_sampler *smp, const char *path)
{
    const char *fn = "dsr1_context_state_save_file";
    if (!ctx || !path)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: ctx and path are required", fn);
    dsri_call call;
    dsr1_status st = hold(ctx, smp, &call, fn);
    if (st)
        return st;
    size_t need = 0;
    void *buf = NULL;
    st = dsri_state_save(ctx, smp, NULL, 0, NULL, 0, &need, fn);
    if (st == DSR1_ERR_BUFFER_TOO_SMALL) {
        st = (buf = dsri_malloc(need)) ? dsri_state_save(ctx, smp, NULL, 0, buf, need, &need, fn)
                                       : dsri_error(DSR1_ERR_OUT_OF_MEMORY, "%s: %zu bytes: out of memory", fn, need);
        if (!st)
            st = dsri_file_write_all(path, buf, need, fn);
    }
    dsri_free(buf);
    return release(ctx, smp, &call, st);
}

dsr1_status dsr1_context_state_load_file(dsr1_context *ctx, dsr1_sampler *smp, const char *path)
{
    const char *fn = "dsr1_context_state_load_file";
    if (!ctx || !path)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: ctx and path are required", fn);
    dsri_call call;
    dsr1_status st = hold(ctx, smp, &call, fn);
    if (st)
        return st;
    void *data;
    size_t size;
    dsri_state_view v;
    if (!(st = dsri_file_read_all(path, &data, &size, fn))) {
        if (!(st = dsri_state_parse(ctx, smp, data, size, &v, fn)))
            st = dsri_state_apply(ctx, smp, &v, fn);
        dsri_free(data);
    }
    return release(ctx, smp, &call, st);
}
