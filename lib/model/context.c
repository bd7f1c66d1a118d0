/*
 * Contexts: creation (all memory allocated up front), evaluation in chunks of
 * n_batch, logits access and cache editing.
 */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/params.h"
#include "core/threadpool.h"
#include "model/context.h"
#include "quant/quant.h"
#include "tokenizer/vocab.h"

#define DEFAULT_N_CTX 4096
#define DEFAULT_N_BATCH 512

void dsr1_context_params_default(dsr1_context_params *params, size_t struct_size)
{
    dsr1_context_params d;
    memset(&d, 0, sizeof d);
    dsri_params_default(params, struct_size, &d, sizeof d);
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (int)n : 1;
}

/* The most threads a context starts: 4 x the online cores (room to
 * oversubscribe for tests), at least 16, at most DSRI_POOL_MAX_THREADS. */
static int thread_cap(void)
{
    int n = 4 * default_threads();
    return n < 16 ? 16 : n > DSRI_POOL_MAX_THREADS ? DSRI_POOL_MAX_THREADS : n;
}

dsr1_status dsri_ctx_resolve_params(const dsr1_model *model, const dsr1_context_params *in, dsr1_context_params *p)
{
    dsr1_context_params_default(p, sizeof *p);
    dsr1_status st = dsri_params_read(in, p, sizeof *p, DSRI_KNOWN_SIZE(dsr1_context_params, abort_user_data),
                                      "dsr1_context_params");
    if (st)
        return st;
    if (p->n_ctx < 0 || p->n_batch < 0 || p->n_threads < 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "context: n_ctx, n_batch and n_threads must not be negative");
    if (p->kv_type != DSR1_KV_DEFAULT && p->kv_type != DSR1_KV_F32 && p->kv_type != DSR1_KV_F16)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "context: kv_type %d is not a dsr1_kv_type (DSR1_KV_F32 = 1, DSR1_KV_F16 = 2, or 0 for "
                          "the default)", (int)p->kv_type);
    if (p->kv_type == DSR1_KV_DEFAULT)
        p->kv_type = DSR1_KV_F16;
    if (p->n_ctx == 0)
        p->n_ctx = model->hp.n_ctx_train < DEFAULT_N_CTX ? model->hp.n_ctx_train : DEFAULT_N_CTX;
    if (p->n_batch == 0)
        p->n_batch = DEFAULT_N_BATCH;
    if (p->n_batch > p->n_ctx)
        p->n_batch = p->n_ctx;
    if (p->threadpool) {
        int n = dsri_workers_threads(p->threadpool);
        p->n_threads = p->n_threads == 0 || p->n_threads > n ? n : p->n_threads;
    }
    if (p->n_threads == 0)
        p->n_threads = default_threads();
    if (p->n_threads > DSRI_POOL_MAX_THREADS)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "context: n_threads %d is above the limit (%d)",
                          (int)p->n_threads, DSRI_POOL_MAX_THREADS);
    /* more threads than cores only adds contention, and each costs a stack
     * (a pool has its own size) */
    const int max_threads = thread_cap();
    if (!p->threadpool && p->n_threads > max_threads) {
        dsri_log(&model->log, DSR1_LOG_WARN, "context: n_threads %d clamped to %d (4 x the %d online cores)",
                 p->n_threads, max_threads, default_threads());
        p->n_threads = max_threads;
    }
    return DSR1_OK;
}

/* n zeroed values of elem_bytes each (none when n <= 0), with overflow and
 * out-of-memory reported as the named buffer. */
static dsr1_status alloc_values(void **out, int64_t n, size_t elem_bytes, const char *what)
{
    *out = NULL;
    if (n <= 0)
        return DSR1_OK;
    if ((uint64_t)n > SIZE_MAX / elem_bytes || !(*out = dsri_calloc((size_t)n, elem_bytes)))
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "context: cannot allocate the %s (%lld values of %zu bytes)", what,
                          (long long)n, elem_bytes);
    return DSR1_OK;
}

static dsr1_status alloc_floats(float **out, int64_t n, const char *what)
{
    void *p;
    dsr1_status st = alloc_values(&p, n, sizeof(float), what);
    *out = p;
    return st;
}

/* a * b and a + b, sticking at "overflowed" once a result does not fit */
static uint64_t mul_u64(uint64_t a, uint64_t b, int *overflow)
{
    if (a != 0 && b > UINT64_MAX / a) {
        *overflow = 1;
        return 0;
    }
    return a * b;
}

static uint64_t add_u64(uint64_t a, uint64_t b, int *overflow)
{
    if (b > UINT64_MAX - a) {
        *overflow = 1;
        return 0;
    }
    return a + b;
}

dsr1_status dsri_ctx_sizes_of(const dsr1_model *model, const dsr1_context_params *p, dsri_ctx_sizes *out)
{
    memset(out, 0, sizeof *out);
    const dsri_hparams *hp = &model->hp;
    const uint64_t layers = (uint64_t)(hp->n_layer + hp->n_nextn_layers), n_ctx = (uint64_t)p->n_ctx,
                   n_batch = (uint64_t)p->n_batch, n_vocab = (uint64_t)hp->n_vocab, f = sizeof(float);
    const uint64_t eb = (uint64_t)dsri_kv_elem_bytes(p->kv_type);
    int ovf = 0;
    const uint64_t row = mul_u64(add_u64((uint64_t)model->kv_k_width, (uint64_t)model->kv_v_width, &ovf), eb, &ovf);
    out->kv_layer_bytes = mul_u64(row, n_ctx, &ovf);
    out->kv_bytes_per_token = mul_u64(layers, row, &ovf);
    out->kv_bytes = mul_u64(out->kv_bytes_per_token, n_ctx, &ovf);
    /* the architectures' scratch is linear in the rows (model.h): bound it
     * by one row's before computing it */
    const int64_t per_row = model->arch->scratch_floats(model, 1, p->n_ctx);
    if (per_row < 0 || mul_u64((uint64_t)per_row, n_batch, &ovf) > (uint64_t)INT64_MAX / f)
        ovf = 1;
    if (!ovf) {
        out->scratch_floats = model->arch->scratch_floats(model, p->n_batch, p->n_ctx);
        out->scratch_bytes = mul_u64((uint64_t)out->scratch_floats, f, &ovf);
        /* a device run downloads the logits through its scratch */
        out->device_scratch_bytes = add_u64(out->scratch_bytes, mul_u64(DSRI_LOGITS_CHUNK * f, n_vocab, &ovf), &ovf);
    }
    uint64_t other = add_u64(mul_u64(n_vocab, f, &ovf),
                             add_u64(mul_u64(n_batch, sizeof(int32_t), &ovf), mul_u64(n_ctx, sizeof(dsr1_token), &ovf),
                                     &ovf), &ovf);
    if (hp->n_nextn_layers > 0)
        other = add_u64(other,
                        add_u64(mul_u64(n_batch, sizeof(dsr1_token) + (uint64_t)hp->n_embd * f, &ovf),
                                mul_u64(n_vocab, f, &ovf), &ovf), &ovf);
    out->other_bytes = other;
    if (ovf || add_u64(add_u64(out->kv_bytes, out->device_scratch_bytes, &ovf), other, &ovf) > (uint64_t)INT64_MAX ||
        ovf)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY,
                          "context: n_ctx %d and n_batch %d need more bytes than 64 bits count for this model "
                          "(%d layers of %lld cache bytes a token)", (int)p->n_ctx, (int)p->n_batch,
                          (int)layers, (long long)row);
    return DSR1_OK;
}

/* A buffer of `bytes` in run r's memory. */
static dsr1_status run_buf(const dsr1_context *ctx, const dsri_run *r, uint64_t bytes, dsri_buf **out)
{
    dsri_device *dev = r->ops->host_memory ? NULL : ctx->model->device.dev;
    return r->ops->buf_new(dev, bytes > 0 ? bytes : 1, out);
}

/* Instance, scratch and cache of run i (sizes checked by dsri_ctx_sizes_of:
 * a part of them cannot overflow). */
static dsr1_status init_run(dsr1_context *ctx, int i, const dsri_backend_config *cfg, const dsri_ctx_sizes *sz)
{
    const dsr1_model *m = ctx->model;
    dsri_run *r = &ctx->runs[i];
    dsri_device *dev = r->ops->host_memory ? NULL : m->device.dev;
    dsr1_status st = r->ops->create(cfg, dev, &r->be);
    if (st)
        return st;
    if ((st = run_buf(ctx, r, r->ops->host_memory ? sz->scratch_bytes : sz->device_scratch_bytes, &r->scratch)))
        return st;
    const uint64_t eb = (uint64_t)dsri_kv_elem_bytes(ctx->kv_type);
    const uint64_t kb = (uint64_t)ctx->n_ctx * (uint64_t)m->kv_k_width * eb;
    uint64_t bytes = 0;
    for (int l = 0; l < ctx->n_cache_layers; l++)
        if (ctx->layer_run[l] == i)
            bytes += sz->kv_layer_bytes;
    if ((st = run_buf(ctx, r, bytes, &r->kv)))
        return st;
    const uint32_t type = ctx->kv_type == DSR1_KV_F16 ? DSRI_TYPE_F16 : DSRI_TYPE_F32;
    uint64_t off = 0;
    for (int l = 0; l < ctx->n_cache_layers; l++)
        if (ctx->layer_run[l] == i) {
            ctx->k[l] = dsri_tensor_2d(r->kv, off, type, m->kv_k_width, ctx->n_ctx);
            ctx->v[l] = dsri_tensor_2d(r->kv, off + kb, type, m->kv_v_width, ctx->n_ctx);
            off += sz->kv_layer_bytes;
        }
    return DSR1_OK;
}

static void free_run(dsri_run *r)
{
    if (!r->ops)
        return;
    if (r->scratch)
        r->ops->buf_free(r->scratch);
    if (r->kv)
        r->ops->buf_free(r->kv);
    if (r->be)
        r->ops->destroy(r->be);
}

dsr1_status dsr1_context_new(const dsr1_model *model, const dsr1_context_params *params,
                             dsr1_context **out_ctx)
{
    if (!out_ctx)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_context_new: out_ctx is NULL");
    *out_ctx = NULL;
    if (!model)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_context_new: model is NULL");
    if (model->vocab_only || !model->arch)
        return dsri_error(DSR1_ERR_STATE, "dsr1_context_new: the model was loaded vocabulary-only");
    dsr1_context_params p;
    dsri_ctx_sizes sz;
    dsr1_status st = dsri_ctx_resolve_params(model, params, &p);
    if (st || (st = dsri_ctx_sizes_of(model, &p, &sz)))
        return st;
    const dsri_backend_ops *ops;
    if ((st = dsri_backend_select(p.backend, &ops)))
        return st;
    if (!ops->host_memory)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "context: backend '%s' is a device: offload layers with dsr1_model_params.n_gpu_layers",
                          ops->name);

    dsr1_context *ctx = dsri_calloc(1, sizeof *ctx);
    if (!ctx)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "context: out of memory");
    dsri_handle_init(&ctx->handle);
    ctx->model = model;
    ctx->abort_fn = p.abort_callback;
    ctx->abort_user_data = p.abort_user_data;
    ctx->n_ctx = p.n_ctx;
    ctx->n_batch = p.n_batch;
    ctx->kv_type = p.kv_type;
    ctx->kv_bytes_per_token = sz.kv_bytes_per_token;
    ctx->n_cache_layers = model->hp.n_layer + model->hp.n_nextn_layers;
    /* on a shared pool the context can use all of its threads later (the
     * backend's per-thread scratch is sized for them) */
    if ((st = p.threadpool ? dsri_pool_on(p.threadpool, p.n_threads, &ctx->pool)
                           : dsri_pool_new(p.n_threads, &ctx->pool))) {
        dsr1_context_free(ctx);
        return st;
    }
    ctx->n_threads = dsri_pool_threads(ctx->pool);
    ctx->runs[0].ops = ops;
    ctx->runs[0].w = &model->host_w;
    ctx->n_runs = 1;
    const int L = ctx->n_cache_layers;
    ctx->layer_run = dsri_calloc((size_t)L, 1);
    ctx->k = dsri_calloc((size_t)L, sizeof *ctx->k);
    ctx->v = dsri_calloc((size_t)L, sizeof *ctx->v);
    if (!ctx->layer_run || !ctx->k || !ctx->v) {
        dsr1_context_free(ctx);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "context: out of memory");
    }
    if (model->device.ops) { /* the layers the model placed on its device, and the output head */
        ctx->runs[1].ops = model->device.ops;
        ctx->runs[1].w = &model->device.w;
        ctx->n_runs = 2;
        for (int l = model->device.first_layer; l < L; l++)
            ctx->layer_run[l] = 1;
        ctx->output_run = 1;
    }
    dsri_backend_config cfg = {.n_threads = ctx->n_threads,
                               .max_row = model->max_row,
                               .n_ctx = p.n_ctx,
                               .pool = ctx->pool,
                               .n_batch = p.n_batch,
                               .max_experts = model->hp.n_expert > 0 ? model->hp.n_expert : 0,
                               .observer = &ctx->observer};
    for (int i = 0; i < ctx->n_runs; i++)
        if ((st = init_run(ctx, i, &cfg, &sz))) {
            dsr1_context_free(ctx);
            return st;
        }
    if ((st = alloc_floats(&ctx->logits, model->hp.n_vocab, "logits"))) {
        dsr1_context_free(ctx);
        return st;
    }
    ctx->cap_logits_rows = 1;
    ctx->pos = dsri_calloc((size_t)p.n_batch, sizeof *ctx->pos);
    ctx->tokens = dsri_calloc((size_t)p.n_ctx, sizeof *ctx->tokens);
    if (model->hp.n_nextn_layers > 0) {
        const dsri_run *r = &ctx->runs[ctx->output_run];
        dsri_buf *hb = NULL;
        ctx->mtp_tokens = dsri_calloc((size_t)p.n_batch, sizeof *ctx->mtp_tokens);
        if ((st = run_buf(ctx, r, (uint64_t)p.n_batch * (uint64_t)model->hp.n_embd * sizeof(float), &hb)) ||
            (st = alloc_floats(&ctx->mtp_logits, model->hp.n_vocab, "draft logits"))) {
            dsr1_context_free(ctx);
            return st;
        }
        ctx->hidden = dsri_tensor_2d(hb, 0, DSRI_TYPE_F32, model->hp.n_embd, p.n_batch);
    }
    if (!ctx->pos || !ctx->tokens || (model->hp.n_nextn_layers > 0 && !ctx->mtp_tokens)) {
        dsr1_context_free(ctx);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "context: out of memory");
    }
    dsri_log(&model->log, DSR1_LOG_INFO, "context: n_ctx %d, n_batch %d, backend %s%s%s, KV cache %s %.1f MiB",
             p.n_ctx, p.n_batch, ops->name, ctx->n_runs > 1 ? " + " : "",
             ctx->n_runs > 1 ? model->device.ops->name : "", p.kv_type == DSR1_KV_F16 ? "f16" : "f32",
             (double)dsr1_context_kv_bytes_per_token(ctx) * (double)p.n_ctx / 1048576.0);
    *out_ctx = ctx;
    return DSR1_OK;
}

void dsr1_context_free(dsr1_context *ctx)
{
    if (!ctx || dsri_handle_busy(&ctx->handle, "dsr1_context_free"))
        return;
    if (ctx->hidden.buf)
        ctx->runs[ctx->output_run].ops->buf_free(ctx->hidden.buf);
    for (int i = 0; i < 2; i++)
        free_run(&ctx->runs[i]);
    dsri_free(ctx->layer_run);
    dsri_free(ctx->k);
    dsri_free(ctx->v);
    dsri_pool_free(ctx->pool);
    dsri_free(ctx->logits);
    dsri_free(ctx->pos);
    dsri_free(ctx->tokens);
    dsri_free(ctx->mtp_tokens);
    dsri_free(ctx->mtp_logits);
    dsri_free(ctx);
}

dsr1_status dsri_ctx_sync(dsr1_context *ctx)
{
    dsr1_status st = DSR1_OK;
    for (int i = 0; i < ctx->n_runs; i++) {
        dsr1_status s = ctx->runs[i].ops->sync(ctx->runs[i].be);
        if (s && !st)
            st = s;
    }
    return st;
}

dsr1_status dsri_ctx_move(dsr1_context *ctx, const dsri_run *from, const dsri_tensor *src, const dsri_run *to,
                          const dsri_tensor *dst)
{
    (void)ctx;
    /* one side is the host (runs differ only between the host and the
     * device): the transfer reads or writes its memory directly */
    if (from->ops->host_memory)
        return to->ops->upload(to->be, dst, dsri_host_ptr(src));
    if (to->ops->host_memory)
        return from->ops->download(from->be, src, dsri_host_ptr(dst));
    return dsri_error(DSR1_ERR_UNSUPPORTED, "context: no path from %s to %s", from->ops->name, to->ops->name);
}

dsr1_status dsri_ctx_output(dsr1_context *ctx, const dsri_run *r, const dsri_tensor *output, const dsri_tensor *h,
                            float *out)
{
    const int64_t n_vocab = ctx->model->hp.n_vocab;
    if (r->ops->host_memory) { /* straight into the caller's memory */
        dsri_buf host = {NULL, out, (uint64_t)(h->rows * n_vocab) * sizeof(float), NULL};
        dsri_tensor lg = dsri_tensor_2d(&host, 0, DSRI_TYPE_F32, n_vocab, h->rows);
        r->ops->matmul(r->be, output, h, &lg);
        return r->ops->sync(r->be);
    }
    const int64_t off = ctx->model->arch->scratch_floats(ctx->model, ctx->n_batch, ctx->n_ctx);
    for (int64_t c = 0; c < h->rows; c += DSRI_LOGITS_CHUNK) {
        int64_t rows = h->rows - c < DSRI_LOGITS_CHUNK ? h->rows - c : DSRI_LOGITS_CHUNK;
        dsri_tensor lg = dsri_scratch(r, off, n_vocab, rows), hc = dsri_rows(h, c, rows);
        r->ops->matmul(r->be, output, &hc, &lg);
        dsr1_status st = r->ops->download(r->be, &lg, out + c * n_vocab);
        if (st)
            return st;
    }
    return DSR1_OK;
}

static dsr1_status cache_row_f32(dsr1_context *ctx, const dsri_tensor *t, int layer, int32_t pos, float *out)
{
    const dsri_run *r = dsri_ctx_run(ctx, layer);
    dsri_tensor row = dsri_rows(t, pos, 1);
    dsr1_status st = r->ops->download(r->be, &row, out);
    if (st || ctx->kv_type != DSR1_KV_F16)
        return st;
    /* widen in place, from the end (halves are packed at the start) */
    const uint16_t *h = (const uint16_t *)(const void *)out;
    for (int64_t i = row.cols - 1; i >= 0; i--)
        out[i] = dsri_fp16_to_fp32(h[i]);
    return DSR1_OK;
}

dsr1_status dsri_ctx_k_f32(dsr1_context *ctx, int layer, int32_t pos, float *out)
{
    return cache_row_f32(ctx, &ctx->k[layer], layer, pos, out);
}

dsr1_status dsri_ctx_v_f32(dsr1_context *ctx, int layer, int32_t pos, float *out)
{
    return ctx->v[layer].cols > 0 ? cache_row_f32(ctx, &ctx->v[layer], layer, pos, out) : DSR1_OK;
}

dsr1_status dsri_ctx_hidden_f32(dsr1_context *ctx, float *out)
{
    const dsri_run *r = &ctx->runs[ctx->output_run];
    dsri_tensor rows = dsri_rows(&ctx->hidden, 0, ctx->n_hidden);
    return ctx->n_hidden ? r->ops->download(r->be, &rows, out) : DSR1_OK;
}

const dsr1_model *dsr1_context_model(const dsr1_context *ctx) { return ctx ? ctx->model : NULL; }
int32_t dsr1_context_n_ctx(const dsr1_context *ctx) { return ctx ? ctx->n_ctx : 0; }
int32_t dsr1_context_n_past(const dsr1_context *ctx) { return ctx ? ctx->n_past : 0; }
/* the output head's backend: the device's once any layer is offloaded */
const char *dsr1_context_backend(const dsr1_context *ctx)
{
    return ctx ? ctx->runs[ctx->output_run].ops->name : "";
}
int32_t dsr1_context_n_threads(const dsr1_context *ctx) { return ctx ? dsri_pool_active_threads(ctx->pool) : 0; }

dsr1_status dsr1_context_set_threads(dsr1_context *ctx, int32_t n_threads)
{
    if (!ctx)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_context_set_threads: ctx is NULL");
    if (n_threads < 1 || n_threads > ctx->n_threads)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "dsr1_context_set_threads: %d threads asked for; this context can use 1 to %d (its "
                          "n_threads at creation, or its thread pool's size)",
                          (int)n_threads, (int)ctx->n_threads);
    dsri_pool_set_threads(ctx->pool, n_threads);
    return DSR1_OK;
}

void dsr1_threadpool_params_default(dsr1_threadpool_params *params, size_t struct_size)
{
    dsr1_threadpool_params d = {sizeof d, 0, DSRI_POOL_SPIN_US_DEFAULT};
    dsri_params_default(params, struct_size, &d, sizeof d);
}

dsr1_status dsr1_threadpool_new(const dsr1_threadpool_params *params, dsr1_threadpool **out)
{
    if (!out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_threadpool_new: out is NULL");
    *out = NULL;
    dsr1_threadpool_params p;
    dsr1_threadpool_params_default(&p, sizeof p);
    dsr1_status st = dsri_params_read(params, &p, sizeof p, DSRI_KNOWN_SIZE(dsr1_threadpool_params, spin_us),
                                      "dsr1_threadpool_params");
    if (st)
        return st;
    if (p.n_threads < 0 || p.n_threads > DSRI_POOL_MAX_THREADS || p.spin_us < 0 || p.spin_us > 1000000)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "dsr1_threadpool_new: n_threads %d (0..%d) or spin_us %d (0..1000000) out of range",
                          (int)p.n_threads, DSRI_POOL_MAX_THREADS, (int)p.spin_us);
    return dsri_workers_new(p.n_threads ? p.n_threads : default_threads(), p.spin_us, out);
}

void dsr1_threadpool_free(dsr1_threadpool *pool) { dsri_workers_release(pool); }
int32_t dsr1_threadpool_n_threads(const dsr1_threadpool *pool) { return pool ? dsri_workers_threads(pool) : 0; }

uint64_t dsr1_context_kv_bytes_per_token(const dsr1_context *ctx)
{
    if (!ctx)
        return 0;
    return ctx->kv_bytes_per_token;
}

const char *dsr1_context_errmsg(const dsr1_context *ctx)
{
    return ctx ? dsri_handle_message(&ctx->handle) : "";
}

static dsr1_status reserve_logits(dsr1_context *ctx, int32_t rows)
{
    if (rows <= ctx->cap_logits_rows)
        return DSR1_OK;
    size_t n_vocab = (size_t)ctx->model->hp.n_vocab;
    if ((size_t)rows > SIZE_MAX / sizeof(float) / n_vocab)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "dsr1_eval: logits for %d rows do not fit in memory", rows);
    float *l = dsri_realloc(ctx->logits, (size_t)rows * n_vocab * sizeof(float));
    if (!l)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "dsr1_eval: cannot allocate logits for %d rows", rows);
    ctx->logits = l;
    ctx->cap_logits_rows = rows;
    return DSR1_OK;
}

/* (see context.h; the MTP cache's invariant is described there too) */
void dsri_ctx_mtp_rewind(dsr1_context *ctx, int32_t pos, const dsr1_token *first_new)
{
    if (ctx->mtp_n_past >= pos && pos < ctx->n_past) {
        ctx->mtp_n_past = pos; /* entry pos-1 was made with the token now at pos */
        ctx->mtp_next = ctx->tokens[pos];
    }
    if (first_new && ctx->mtp_n_past == pos && pos > 0 && ctx->mtp_next != *first_new)
        ctx->mtp_n_past = pos - 1;
}

/* A row that is not all finite means weights or settings that produce
 * non-numbers (a hostile or corrupt file the load checks cannot see: they
 * do not read the matrices): an error now, not NaN handed out as success.
 * The batch is dropped from the cache (its entries may hold NaN too). */
static dsr1_status check_logits(dsr1_context *ctx, const float *rows, int n_rows, int first, int32_t pos)
{
    const int32_t n_vocab = ctx->model->hp.n_vocab;
    for (int r = 0; r < n_rows; r++)
        for (int32_t i = 0; i < n_vocab; i++)
            if (!isfinite(rows[(size_t)r * (size_t)n_vocab + (size_t)i])) {
                dsri_ctx_mtp_rewind(ctx, pos, NULL);
                ctx->n_past = pos;
                return dsri_error(DSR1_ERR_NUMERIC,
                                  "dsr1_eval: the logit of token %d for batch token %d is %g: the model computes "
                                  "non-numbers (corrupt weights?)",
                                  i, first + r, (double)rows[(size_t)r * (size_t)n_vocab + (size_t)i]);
            }
    return DSR1_OK;
}

dsr1_status dsri_context_check_free(const dsr1_context *ctx, const char *fn)
{
    if (ctx->generation)
        return dsri_error(DSR1_ERR_STATE, "%s: a generation (dsr1_generation_new) is in flight on this context; "
                          "finish or free it first", fn);
    return DSR1_OK;
}

dsr1_status dsr1_eval(dsr1_context *ctx, const dsr1_token *tokens, int32_t n_tokens, int32_t pos,
                      uint32_t flags)
{
    if (!ctx)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_eval: ctx is NULL");
    dsri_call call;
    dsr1_status st = dsri_enter(&ctx->handle, &call, "dsr1_eval");
    if (st)
        return st;
    if (!(st = dsri_context_check_free(ctx, "dsr1_eval")))
        st = dsri_ctx_eval(ctx, tokens, n_tokens, pos, flags);
    return dsri_leave(&ctx->handle, &call, st);
}

dsr1_status dsri_ctx_eval(dsr1_context *ctx, const dsr1_token *tokens, int32_t n_tokens, int32_t pos, uint32_t flags)
{
    dsr1_status st;
    if (!tokens || n_tokens <= 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_eval: no tokens given");
    if (flags & ~DSR1_EVAL_LOGITS_ALL)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_eval: unknown flags 0x%x", flags);
    if (pos < 0 || pos > ctx->n_past)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_eval: position %d is outside [0, n_past=%d]", pos,
                          ctx->n_past);
    if (n_tokens > ctx->n_ctx - pos)
        return dsri_error(DSR1_ERR_CONTEXT_FULL, "dsr1_eval: %d tokens at position %d exceed the context of %d",
                          n_tokens, pos, ctx->n_ctx);
    int32_t n_vocab = ctx->model->hp.n_vocab;
    for (int32_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_eval: token %d at index %d is outside the vocabulary [0, %d)",
                              tokens[i], i, n_vocab);
    int logits_all = (flags & DSR1_EVAL_LOGITS_ALL) != 0;
    st = reserve_logits(ctx, logits_all ? n_tokens : 1);
    if (st)
        return st;

    dsri_ctx_mtp_rewind(ctx, pos, tokens);
    ctx->n_past = pos; /* drop what follows pos */
    ctx->n_logits_rows = 0;
    ctx->last_n_tokens = n_tokens;
    for (int32_t done = 0; done < n_tokens;) {
        int n = n_tokens - done < ctx->n_batch ? n_tokens - done : ctx->n_batch;
        for (int t = 0; t < n; t++)
            ctx->pos[t] = pos + done + t;
        /* without LOGITS_ALL only the final chunk runs the output layer */
        float *out = logits_all ? ctx->logits + (size_t)done * (size_t)n_vocab
                     : done + n == n_tokens ? ctx->logits : NULL;
        st = ctx->model->arch->forward(ctx, tokens + done, ctx->pos, n, out, logits_all);
        if (!st && out)
            st = check_logits(ctx, out, logits_all ? n : 1, logits_all ? done : n_tokens - 1, pos);
        if (st) /* n_past counts the chunks done; this one's cache rows lie beyond it */
            return st;
        memcpy(ctx->tokens + pos + done, tokens + done, (size_t)n * sizeof *tokens);
        ctx->n_past = pos + done + n;
        done += n;
    }
    ctx->n_logits_rows = logits_all ? n_tokens : 1;
    ctx->logits_first = logits_all ? 0 : n_tokens - 1;
    return DSR1_OK;
}

dsr1_status dsri_ctx_logits(dsr1_context *ctx, int32_t i, const float **out)
{
    *out = NULL;
    if (ctx->n_logits_rows == 0)
        return dsri_error(DSR1_ERR_STATE, "dsr1_logits: nothing has been evaluated (since the context was created or "
                          "reset, or the last evaluation failed or was cancelled)");
    if (i == -1)
        i = ctx->last_n_tokens - 1;
    if (i < ctx->logits_first || i >= ctx->logits_first + ctx->n_logits_rows)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "dsr1_logits: row %d is not available (evaluate with DSR1_EVAL_LOGITS_ALL for all rows)", i);
    *out = ctx->logits + (size_t)(i - ctx->logits_first) * (size_t)ctx->model->hp.n_vocab;
    return DSR1_OK;
}

dsr1_status dsr1_context_logits(dsr1_context *ctx, int32_t i, const float **out_logits)
{
    if (out_logits)
        *out_logits = NULL;
    if (!ctx || !out_logits)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_context_logits: ctx and out_logits must not be NULL");
    dsri_call call;
    dsr1_status st = dsri_enter(&ctx->handle, &call, "dsr1_context_logits");
    if (st)
        return st;
    return dsri_leave(&ctx->handle, &call, dsri_ctx_logits(ctx, i, out_logits));
}

const float *dsr1_logits(dsr1_context *ctx, int32_t i)
{
    const float *row;
    dsr1_context_logits(ctx, i, &row);
    return row;
}

void dsri_ctx_truncate(dsr1_context *ctx, int32_t pos)
{
    if (pos < ctx->n_past) {
        dsri_ctx_mtp_rewind(ctx, pos, NULL);
        ctx->n_past = pos;
    }
}

dsr1_status dsr1_context_truncate(dsr1_context *ctx, int32_t pos)
{
    if (!ctx)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_context_truncate: ctx is NULL");
    dsri_call call;
    dsr1_status st = dsri_enter(&ctx->handle, &call, "dsr1_context_truncate");
    if (st)
        return st;
    if (pos < 0)
        st = dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_context_truncate: negative position %d", pos);
    else if (!(st = dsri_context_check_free(ctx, "dsr1_context_truncate")))
        dsri_ctx_truncate(ctx, pos);
    return dsri_leave(&ctx->handle, &call, st);
}

void dsr1_context_reset(dsr1_context *ctx)
{
    dsri_call call;
    if (!ctx || dsri_enter(&ctx->handle, &call, "dsr1_context_reset"))
        return;
    /* a generation continues from the cache: emptying it under one would
     * make it answer from positions that no longer hold its prompt */
    dsr1_status st = dsri_context_check_free(ctx, "dsr1_context_reset");
    if (!st) {
        ctx->n_past = 0;
        ctx->n_logits_rows = 0;
        ctx->n_hidden = 0;
        ctx->mtp_n_past = 0;
    }
    dsri_leave(&ctx->handle, &call, st);
}
