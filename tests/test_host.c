/*
 * libdsr1 - what a host needs to stay in control (issue 14), on the fixture
 * models:
 *
 *   test_host DATA_DIR    (DATA_DIR/models/{qwen2,deepseek2}-q8_0.gguf)
 *
 * - params structs: an old (smaller) size gets the defaults, a non-zero
 *   byte past what the library knows is DSR1_ERR_UNSUPPORTED naming the
 *   struct, zero bytes past it are fine;
 * - errors: each handle keeps its last call's message, cleared by the next
 *   successful call; a size query does not overwrite the thread's message;
 *   dsr1_context_logits says why there are no logits;
 * - memory estimate agrees with what a loaded model and context report;
 * - load progress (monotonic, complete, cancellable, with preload);
 * - interruption: the abort callback stops dsr1_eval between layers, the
 *   cache keeps exactly the complete chunks and evaluation continues to the
 *   same logits; dsr1_generation_cancel from another thread stops a
 *   4000-token prompt within one layer, and a new generation continues
 *   from the cache to the same tokens as an uninterrupted run;
 * - the per-step prompt cap: no step evaluates more than the cap, and the
 *   tokens are those of an uncapped run;
 * - re-entrancy: from on_event and the abort callback, calls on the busy
 *   handles are DSR1_ERR_STATE, the allowed ones work.
 * Exits non-zero on any failure.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dsr1.h"

#include "check.h"

static char qwen_path[1024], ds2_path[1024];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Deterministic prompt tokens in [0, n_vocab), avoiding end-of-generation ids. */
static void make_prompt(const dsr1_model *m, dsr1_token *out, int n, uint32_t seed)
{
    int32_t nv = dsr1_model_n_vocab(m);
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        dsr1_token t = (dsr1_token)((seed >> 8) % (uint32_t)nv);
        while (dsr1_token_is_eog(m, t))
            t = (t + 1) % nv;
        out[i] = t;
    }
}

static dsr1_model *load(const char *path)
{
    dsr1_model *m = NULL;
    dsr1_status st = dsr1_model_load(path, NULL, &m);
    CHECK(st == DSR1_OK, "load %s: %s", path, dsr1_last_error());
    return m;
}

static dsr1_context *new_ctx(const dsr1_model *m, int n_ctx, int n_batch, dsr1_abort_fn fn, void *ud)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.abort_callback = fn;
    cp.abort_user_data = ud;
    dsr1_context *ctx = NULL;
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_OK, "context: %s", dsr1_last_error());
    return ctx;
}

static dsr1_sampler *greedy(const dsr1_model *m)
{
    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    sp.temperature = 0.0f;
    dsr1_sampler *s = NULL;
    CHECK(dsr1_sampler_new(dsr1_model_n_vocab(m), &sp, &s) == DSR1_OK, "sampler: %s", dsr1_last_error());
    return s;
}

/* ---- params structs ---- */

/* A params struct as a newer header would pass it: the library's struct
 * followed by `extra` more bytes, of which byte `set` (counted from the
 * start; -1: none) is non-zero. */
typedef struct {
    dsr1_context_params p;
    unsigned char extra[32];
} newer_context_params;

static void test_params(const dsr1_model *m)
{
    dsr1_context *ctx = NULL;
    newer_context_params np;
    dsr1_context_params_default(&np.p, sizeof np); /* zeroes the tail as a newer default would */
    CHECK(np.p.size == sizeof np, "default size %zu", np.p.size);
    np.p.n_ctx = 64;
    CHECK(dsr1_context_new(m, &np.p, &ctx) == DSR1_OK, "zero tail refused: %s", dsr1_last_error());
    dsr1_context_free(ctx);
    np.extra[5] = 1;
    dsr1_status st = dsr1_context_new(m, &np.p, &ctx);
    CHECK(st == DSR1_ERR_UNSUPPORTED && ctx == NULL, "non-zero tail: status %d", st);
    CHECK(strstr(dsr1_last_error(), "dsr1_context_params") != NULL, "message: %s", dsr1_last_error());

    /* a field of a newer header placed in this struct's tail padding */
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    size_t known = offsetof(dsr1_generate_params, n_keep) + sizeof gp.n_keep;
    dsr1_sampler *smp = greedy(m);
    ctx = new_ctx(m, 64, 0, NULL, NULL);
    dsr1_token prompt[4] = {1, 2, 3, 4};
    dsr1_generation *gen = NULL;
    if (known < sizeof gp) {
        ((unsigned char *)&gp)[known] = 7;
        st = dsr1_generation_new(ctx, smp, prompt, 4, &gp, &gen);
        CHECK(st == DSR1_ERR_UNSUPPORTED && strstr(dsr1_last_error(), "dsr1_generate_params"),
              "padding byte: status %d, %s", st, dsr1_last_error());
        ((unsigned char *)&gp)[known] = 0;
    }
    /* an old, smaller struct: the fields it lacks keep their defaults */
    dsr1_generate_params_default(&gp, offsetof(dsr1_generate_params, max_prompt_per_step));
    gp.max_new_tokens = 2;
    CHECK(dsr1_generation_new(ctx, smp, prompt, 4, &gp, &gen) == DSR1_OK, "old size: %s", dsr1_last_error());
    dsr1_generation_free(gen);
    dsr1_context_free(ctx);

    dsr1_context_params old;
    dsr1_context_params_default(&old, offsetof(dsr1_context_params, kv_type));
    CHECK(old.size == offsetof(dsr1_context_params, kv_type), "old default size %zu", old.size);
    old.n_ctx = 32;
    CHECK(dsr1_context_new(m, &old, &ctx) == DSR1_OK, "old context params: %s", dsr1_last_error());
    dsr1_context_params f16;
    dsr1_context_params_default(&f16, sizeof f16);
    f16.kv_type = DSR1_KV_F16;
    f16.n_ctx = 32;
    dsr1_context *ref = NULL;
    CHECK(dsr1_context_new(m, &f16, &ref) == DSR1_OK, "f16 context: %s", dsr1_last_error());
    CHECK(ctx && ref && dsr1_context_kv_bytes_per_token(ctx) == dsr1_context_kv_bytes_per_token(ref),
          "old size did not get the default kv_type");
    dsr1_context_free(ref);
    dsr1_context_free(ctx);

    struct {
        dsr1_model_params p;
        unsigned char extra[8];
    } mp;
    dsr1_model_params_default(&mp.p, sizeof mp);
    mp.extra[0] = 1;
    dsr1_model *m2 = NULL;
    st = dsr1_model_load(qwen_path, &mp.p, &m2);
    CHECK(st == DSR1_ERR_UNSUPPORTED && m2 == NULL && strstr(dsr1_last_error(), "dsr1_model_params"),
          "model params tail: %d %s", st, dsr1_last_error());
    dsr1_model_params_default(&mp.p, offsetof(dsr1_model_params, progress_callback));
    CHECK(dsr1_model_load(qwen_path, &mp.p, &m2) == DSR1_OK, "old model params: %s", dsr1_last_error());
    dsr1_model_free(m2);

    struct {
        dsr1_sampler_params p;
        unsigned char extra[8];
    } sp;
    dsr1_sampler_params_default(&sp.p, sizeof sp);
    sp.extra[7] = 1;
    dsr1_sampler *s2 = NULL;
    st = dsr1_sampler_new(dsr1_model_n_vocab(m), &sp.p, &s2);
    CHECK(st == DSR1_ERR_UNSUPPORTED && strstr(dsr1_last_error(), "dsr1_sampler_params"), "sampler tail: %d", st);
    dsr1_sampler_free(smp);
}

/* ---- errors ---- */

static void test_errors(const dsr1_model *m)
{
    dsr1_context *ctx = new_ctx(m, 64, 0, NULL, NULL);
    if (!ctx)
        return;
    CHECK(strcmp(dsr1_context_errmsg(ctx), "") == 0, "fresh context has a message");
    const float *row = (const float *)1;
    CHECK(dsr1_context_logits(ctx, -1, &row) == DSR1_ERR_STATE && row == NULL, "logits before eval");
    CHECK(strstr(dsr1_context_errmsg(ctx), "nothing has been evaluated") != NULL, "%s", dsr1_context_errmsg(ctx));

    dsr1_token bad = 100000;
    CHECK(dsr1_eval(ctx, &bad, 1, 0, 0) == DSR1_ERR_INVALID_ARGUMENT, "bad token accepted");
    CHECK(strstr(dsr1_context_errmsg(ctx), "vocabulary") != NULL, "message: %s", dsr1_context_errmsg(ctx));
    dsr1_token good[3] = {5, 6, 7};
    CHECK(dsr1_eval(ctx, good, 3, 0, 0) == DSR1_OK, "eval: %s", dsr1_context_errmsg(ctx));
    CHECK(strcmp(dsr1_context_errmsg(ctx), "") == 0, "message after success: '%s'", dsr1_context_errmsg(ctx));
    CHECK(dsr1_context_logits(ctx, -1, &row) == DSR1_OK && row != NULL, "logits after eval");
    CHECK(dsr1_context_logits(ctx, 0, &row) == DSR1_ERR_INVALID_ARGUMENT && row == NULL, "row 0 without LOGITS_ALL");
    CHECK(dsr1_context_truncate(ctx, 1) == DSR1_OK && strcmp(dsr1_context_errmsg(ctx), "") == 0, "truncate");

    /* a size query is not an error: the thread's message stays the real one */
    dsr1_model *none = NULL;
    CHECK(dsr1_model_load("/nonexistent/host.gguf", NULL, &none) == DSR1_ERR_IO, "missing file");
    size_t need = 0;
    CHECK(dsr1_detokenize(m, good, 3, NULL, 0, &need, 0) == DSR1_ERR_BUFFER_TOO_SMALL && need > 0, "size query");
    CHECK(strstr(dsr1_last_error(), "/nonexistent/host.gguf") != NULL, "size query replaced: %s", dsr1_last_error());

    dsr1_sampler *smp = greedy(m);
    float logits[4] = {0};
    dsr1_token t;
    CHECK(dsr1_sampler_sample(smp, logits, 4, &t) == DSR1_ERR_INVALID_ARGUMENT, "wrong n_vocab");
    CHECK(strstr(dsr1_sampler_errmsg(smp), "sampler was made for") != NULL, "%s", dsr1_sampler_errmsg(smp));
    dsr1_eval(ctx, good, 3, 0, 0);
    dsr1_context_logits(ctx, -1, &row);
    CHECK(dsr1_sampler_sample(smp, row, dsr1_model_n_vocab(m), &t) == DSR1_OK, "sample");
    CHECK(strcmp(dsr1_sampler_errmsg(smp), "") == 0, "sampler message after success");

    dsr1_decoder *dec = NULL;
    CHECK(dsr1_decoder_new(m, 0, &dec) == DSR1_OK, "decoder");
    char buf[64];
    size_t nb;
    CHECK(dsr1_decoder_push(dec, -5, buf, sizeof buf, &nb) == DSR1_ERR_INVALID_ARGUMENT, "bad token");
    CHECK(dsr1_decoder_errmsg(dec)[0] != '\0', "decoder message missing");
    CHECK(dsr1_decoder_push(dec, 5, NULL, 0, &nb) == DSR1_ERR_BUFFER_TOO_SMALL || nb == 0, "size query");
    CHECK(strcmp(dsr1_decoder_errmsg(dec), "") == 0, "a size query left '%s'", dsr1_decoder_errmsg(dec));
    dsr1_decoder_free(dec);

    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 1;
    dsr1_generation *gen = NULL;
    CHECK(dsr1_generation_new(ctx, smp, good, 3, &gp, &gen) == DSR1_OK, "generation");
    dsr1_stop_reason why;
    CHECK(dsr1_generation_run(gen, &why) == DSR1_OK && why == DSR1_STOP_LENGTH, "run");
    CHECK(dsr1_generation_step(gen, NULL, NULL) == DSR1_ERR_STATE, "step after the end");
    CHECK(strstr(dsr1_generation_errmsg(gen), "finished") != NULL, "%s", dsr1_generation_errmsg(gen));
    dsr1_generation_stats stats;
    stats.size = sizeof stats;
    CHECK(dsr1_generation_get_stats(gen, &stats) == DSR1_OK, "stats");
    CHECK(strcmp(dsr1_generation_errmsg(gen), "") == 0, "message after stats: '%s'", dsr1_generation_errmsg(gen));
    dsr1_generation_free(gen);

    dsr1_chat *chat = NULL;
    CHECK(dsr1_chat_new(ctx, smp, "sys", &chat) == DSR1_OK, "chat");
    dsr1_chat_message msg;
    CHECK(dsr1_chat_message_at(chat, 3, &msg) == DSR1_ERR_INVALID_ARGUMENT, "bad index");
    CHECK(strstr(dsr1_chat_errmsg(chat), "index 3") != NULL, "%s", dsr1_chat_errmsg(chat));
    CHECK(dsr1_chat_message_at(chat, 0, &msg) == DSR1_OK && strcmp(dsr1_chat_errmsg(chat), "") == 0, "chat msg");
    dsr1_chat_free(chat);
    CHECK(strcmp(dsr1_context_errmsg(NULL), "") == 0 && strcmp(dsr1_generation_errmsg(NULL), "") == 0, "NULL");
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
}

/* ---- memory estimate ---- */

static void test_estimate(const char *path)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = 200;
    cp.n_batch = 64;
    cp.kv_type = DSR1_KV_F32;
    dsr1_memory_estimate e;
    e.size = sizeof e;
    CHECK(dsr1_model_estimate_memory(path, NULL, &cp, &e) == DSR1_OK, "estimate %s: %s", path, dsr1_last_error());
    dsr1_model *m = load(path);
    if (!m)
        return;
    dsr1_context *ctx = NULL;
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_OK, "context");
    struct stat sb;
    stat(path, &sb);
    CHECK(e.weight_bytes == dsr1_model_size_bytes(m), "%s: weights %llu vs %llu", path,
          (unsigned long long)e.weight_bytes, (unsigned long long)dsr1_model_size_bytes(m));
    CHECK(e.file_bytes == (uint64_t)sb.st_size, "file bytes");
    CHECK(ctx && e.kv_bytes_per_token == dsr1_context_kv_bytes_per_token(ctx), "%s: kv/token %llu vs %llu", path,
          (unsigned long long)e.kv_bytes_per_token, (unsigned long long)dsr1_context_kv_bytes_per_token(ctx));
    CHECK(e.kv_bytes == e.kv_bytes_per_token * 200 && e.n_ctx == 200 && e.n_batch == 64, "kv for n_ctx");
    CHECK(e.scratch_bytes > (uint64_t)dsr1_model_n_vocab(m) * 4, "scratch %llu", (unsigned long long)e.scratch_bytes);
    printf("  estimate %s: weights %llu B, KV %llu B/token, %llu B for 200, scratch %llu B\n", strrchr(path, '/') + 1,
           (unsigned long long)e.weight_bytes, (unsigned long long)e.kv_bytes_per_token,
           (unsigned long long)e.kv_bytes, (unsigned long long)e.scratch_bytes);
    dsr1_context_free(ctx);
    dsr1_model_free(m);

    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.vocab_only = 1;
    CHECK(dsr1_model_estimate_memory(path, &mp, NULL, &e) == DSR1_OK && e.weight_bytes == 0 && e.kv_bytes == 0,
          "vocab only");
    CHECK(dsr1_model_estimate_memory("/nonexistent/x.gguf", NULL, NULL, &e) == DSR1_ERR_IO, "missing file");
    cp.kv_type = (dsr1_kv_type)9;
    CHECK(dsr1_model_estimate_memory(path, NULL, &cp, &e) == DSR1_ERR_INVALID_ARGUMENT, "bad kv_type");
}

/* ---- load progress ---- */

typedef struct prog {
    int calls, cancel_at, bad;
    dsr1_progress last;
} prog;

static int on_progress(const dsr1_progress *p, void *ud)
{
    prog *r = ud;
    if (r->calls == 0 && (p->bytes_done != 0 || p->tensors_done != 0))
        r->bad = 1;
    if (r->calls > 0 && (p->bytes_done < r->last.bytes_done || p->tensors_done < r->last.tensors_done))
        r->bad = 1;
    if (p->bytes_done > p->bytes_total || p->tensors_done > p->tensors_total || p->size < sizeof *p)
        r->bad = 1;
    r->last = *p;
    r->calls++;
    return r->cancel_at > 0 && r->calls >= r->cancel_at;
}

static void test_progress(void)
{
    for (int preload = 0; preload <= 1; preload++) {
        prog r = {0, 0, 0, {0}};
        dsr1_model_params mp;
        dsr1_model_params_default(&mp, sizeof mp);
        mp.progress_callback = on_progress;
        mp.progress_user_data = &r;
        mp.preload = preload;
        dsr1_model *m = NULL;
        CHECK(dsr1_model_load(ds2_path, &mp, &m) == DSR1_OK, "load: %s", dsr1_last_error());
        CHECK(r.calls >= 2 && !r.bad, "preload %d: %d calls, bad %d", preload, r.calls, r.bad);
        CHECK(m && r.last.bytes_done == r.last.bytes_total && r.last.bytes_total == dsr1_model_size_bytes(m) &&
                  r.last.tensors_done == dsr1_model_tensor_count(m),
              "preload %d: ended at %llu of %llu bytes", preload, (unsigned long long)r.last.bytes_done,
              (unsigned long long)r.last.bytes_total);
        dsr1_model_free(m);
        prog c = {0, 2, 0, {0}};
        mp.progress_user_data = &c;
        m = NULL;
        CHECK(dsr1_model_load(ds2_path, &mp, &m) == DSR1_ERR_CANCELLED && m == NULL, "cancel");
        CHECK(c.calls == 2 && strstr(dsr1_last_error(), "progress callback"), "cancel message: %s", dsr1_last_error());
    }
}

/* ---- interruption ---- */

typedef struct probe {
    atomic_int polls;
    int abort_at;            /* return 1 from this poll on (1-based; 0: never) */
    atomic_int polls_at_cancel; /* -1 until the other thread cancelled */
    dsr1_context *ctx;       /* re-entrancy: calls attempted from the callback */
    int reentry_status;
} probe;

static int on_abort(void *ud)
{
    probe *p = ud;
    int n = atomic_fetch_add(&p->polls, 1) + 1;
    if (p->ctx) {
        dsr1_token t = 1;
        p->reentry_status = dsr1_eval(p->ctx, &t, 1, 0, 0);
        p->ctx = NULL;
    }
    return p->abort_at > 0 && n >= p->abort_at;
}

static int max_abs_diff_ok(const float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > 1e-5f)
            return 0;
    return 1;
}

static void test_abort_eval(const dsr1_model *m)
{
    enum { N = 1500, BATCH = 512 };
    dsr1_token *toks = malloc(N * sizeof *toks);
    make_prompt(m, toks, N, 7);
    const int n_vocab = dsr1_model_n_vocab(m), n_layer = dsr1_model_n_layer(m);
    dsr1_context *ref = new_ctx(m, 2048, BATCH, NULL, NULL);
    probe p;
    memset(&p, 0, sizeof p);
    p.abort_at = 2 * n_layer + 2; /* in the second layer of the third chunk */
    dsr1_context *ctx = new_ctx(m, 2048, BATCH, on_abort, &p);
    if (!ref || !ctx)
        return;
    p.ctx = ctx; /* the first poll tries to evaluate on its own context */
    dsr1_status st = dsr1_eval(ctx, toks, N, 0, 0);
    CHECK(st == DSR1_ERR_CANCELLED, "status %d (%s)", st, dsr1_context_errmsg(ctx));
    CHECK(p.reentry_status == DSR1_ERR_STATE, "dsr1_eval from the abort callback: status %d", p.reentry_status);
    CHECK(atomic_load(&p.polls) == p.abort_at, "polled %d times, aborted at %d", atomic_load(&p.polls), p.abort_at);
    CHECK(dsr1_context_n_past(ctx) == 2 * BATCH, "n_past %d after the abort, %d expected", dsr1_context_n_past(ctx),
          2 * BATCH);
    CHECK(strstr(dsr1_context_errmsg(ctx), "cancelled") != NULL, "message: %s", dsr1_context_errmsg(ctx));
    const float *row;
    CHECK(dsr1_context_logits(ctx, -1, &row) == DSR1_ERR_STATE, "logits after an abort");
    /* continue from the cache: the same logits as one uninterrupted eval */
    p.abort_at = 0;
    int32_t past = dsr1_context_n_past(ctx);
    CHECK(dsr1_eval(ctx, toks + past, N - past, past, 0) == DSR1_OK, "continue: %s", dsr1_context_errmsg(ctx));
    CHECK(dsr1_eval(ref, toks, N, 0, 0) == DSR1_OK, "reference: %s", dsr1_context_errmsg(ref));
    const float *a = NULL, *b = NULL;
    dsr1_context_logits(ctx, -1, &a);
    dsr1_context_logits(ref, -1, &b);
    CHECK(a && b && max_abs_diff_ok(a, b, n_vocab), "continued logits differ from the uninterrupted ones");
    dsr1_context_free(ctx);
    dsr1_context_free(ref);
    free(toks);
}

/* Greedy tokens of a generation run to the end on ctx. */
static int run_tokens(dsr1_context *ctx, dsr1_sampler *smp, const dsr1_token *prompt, int n_prompt,
                      const dsr1_generate_params *gp, dsr1_token *out, int cap, int32_t *n_prompt_eval)
{
    dsr1_generation *gen = NULL;
    if (dsr1_generation_new(ctx, smp, prompt, n_prompt, gp, &gen) != DSR1_OK)
        return -1;
    int n = 0;
    dsr1_stop_reason why = DSR1_STOP_NONE;
    while (why == DSR1_STOP_NONE) {
        dsr1_token t;
        if (dsr1_generation_step(gen, &t, &why) != DSR1_OK)
            break;
        if (t >= 0 && n < cap)
            out[n++] = t;
    }
    dsr1_generation_stats s;
    s.size = sizeof s;
    dsr1_generation_get_stats(gen, &s);
    if (n_prompt_eval)
        *n_prompt_eval = s.n_prompt_eval;
    dsr1_generation_free(gen);
    return n;
}

typedef struct canceller {
    dsr1_generation *gen;
    probe *p;
    int after_polls; /* cancel once the eval has polled this often */
    double t_cancel;
} canceller;

static void *cancel_thread(void *arg)
{
    canceller *c = arg;
    while (atomic_load(&c->p->polls) < c->after_polls) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    c->t_cancel = now_s();
    atomic_store(&c->p->polls_at_cancel, atomic_load(&c->p->polls));
    dsr1_generation_cancel(c->gen);
    return NULL;
}

static int count_done(const dsr1_event *ev, void *ud)
{
    if (ev->type == DSR1_EVENT_DONE && ev->stop_reason == DSR1_STOP_CANCELLED)
        ++*(int *)ud;
    return 0;
}

static void test_cancel_long_prompt(const dsr1_model *m)
{
    enum { N = 4000, GEN = 8, BATCH = 512 };
    const int n_layer = dsr1_model_n_layer(m);
    dsr1_token *prompt = malloc(N * sizeof *prompt);
    make_prompt(m, prompt, N, 11);
    dsr1_sampler *smp = greedy(m);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = GEN;

    /* the reference, uninterrupted; and the time one layer takes */
    dsr1_context *ref = new_ctx(m, 4096, BATCH, NULL, NULL);
    dsr1_token want[GEN], got[GEN];
    double t0 = now_s();
    int n_want = ref ? run_tokens(ref, smp, prompt, N, &gp, want, GEN, NULL) : -1;
    double layer_s = (now_s() - t0) / ((double)(N + BATCH - 1) / BATCH * n_layer);
    CHECK(n_want == GEN, "reference generated %d tokens", n_want);

    probe p;
    memset(&p, 0, sizeof p);
    atomic_init(&p.polls_at_cancel, -1);
    dsr1_context *ctx = new_ctx(m, 4096, BATCH, on_abort, &p); /* the callback only counts polls */
    if (!ref || !ctx)
        return;
    int n_done = 0;
    gp.on_event = count_done;
    gp.user_data = &n_done;
    dsr1_generation *gen = NULL;
    CHECK(dsr1_generation_new(ctx, smp, prompt, N, &gp, &gen) == DSR1_OK, "generation");
    canceller c = {gen, &p, 3 * n_layer + 1, 0.0}; /* a layer of the fourth chunk */
    pthread_t th;
    pthread_create(&th, NULL, cancel_thread, &c);
    dsr1_token t = 0;
    dsr1_stop_reason why = DSR1_STOP_NONE;
    dsr1_status st = dsr1_generation_step(gen, &t, &why);
    double t_back = now_s();
    pthread_join(th, NULL);
    int polls_after = atomic_load(&p.polls) - atomic_load(&p.polls_at_cancel);
    CHECK(st == DSR1_ERR_CANCELLED && why == DSR1_STOP_CANCELLED && t == -1, "status %d, reason %d, token %d", st,
          why, t);
    CHECK(n_done == 1, "%d DONE events", n_done);
    /* the cancel flag is looked at before every layer: at most the layer
     * running when it was set finishes (its poll may race with the store) */
    CHECK(polls_after <= 1, "%d layers started after the cancel", polls_after);
    printf("  cancel of a %d-token prompt: returned %.2f ms after dsr1_generation_cancel; one layer of a %d-token "
           "chunk takes %.2f ms here; %d layers started after it\n", N, (t_back - c.t_cancel) * 1e3, BATCH,
           layer_s * 1e3, polls_after);
    int32_t past = dsr1_context_n_past(ctx);
    CHECK(past % BATCH == 0 && past >= 3 * BATCH && past < N, "n_past %d is not a whole number of chunks", past);
    CHECK(dsr1_generation_step(gen, NULL, NULL) == DSR1_ERR_STATE, "a cancelled generation goes on");
    dsr1_generation_free(gen);

    /* a new generation continues from what the cache holds */
    gp.on_event = NULL;
    int32_t evaluated = 0;
    int n_got = run_tokens(ctx, smp, prompt, N, &gp, got, GEN, &evaluated);
    CHECK(evaluated == N - past, "continued with %d prompt tokens, %d expected", evaluated, N - past);
    CHECK(n_got == n_want && memcmp(got, want, sizeof want) == 0, "tokens after the cancel differ");
    dsr1_context_free(ctx);

    /* the abort callback in a generation: the step says CANCELLED, the
     * generation is not over, and the next step goes on */
    memset(&p, 0, sizeof p);
    p.abort_at = n_layer + 1;
    ctx = new_ctx(m, 4096, BATCH, on_abort, &p);
    CHECK(dsr1_generation_new(ctx, smp, prompt, N, &gp, &gen) == DSR1_OK, "generation");
    st = dsr1_generation_step(gen, &t, &why);
    CHECK(st == DSR1_ERR_CANCELLED && why == DSR1_STOP_NONE, "abort in a step: %d, %d", st, why);
    CHECK(dsr1_context_n_past(ctx) == BATCH, "n_past %d", dsr1_context_n_past(ctx));
    p.abort_at = 0;
    int n = 0;
    while (why == DSR1_STOP_NONE && dsr1_generation_step(gen, &t, &why) == DSR1_OK)
        if (t >= 0 && n < GEN)
            got[n++] = t;
    CHECK(n == n_want && memcmp(got, want, sizeof want) == 0, "tokens after an aborted step differ");
    dsr1_generation_free(gen);
    dsr1_context_free(ctx);
    dsr1_context_free(ref);
    dsr1_sampler_free(smp);
    free(prompt);
}

/* ---- the per-step prompt cap ---- */

static void test_step_cap(const dsr1_model *m)
{
    enum { N = 1000, CAP = 96, GEN = 6 };
    dsr1_token *prompt = malloc(N * sizeof *prompt);
    make_prompt(m, prompt, N, 3);
    dsr1_sampler *smp = greedy(m);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = GEN;
    dsr1_context *ref = new_ctx(m, 2048, CAP, NULL, NULL); /* the same chunks: the same bits */
    dsr1_context *ctx = new_ctx(m, 2048, 512, NULL, NULL);
    dsr1_token want[GEN], got[GEN];
    int n_want = run_tokens(ref, smp, prompt, N, &gp, want, GEN, NULL);
    gp.max_prompt_per_step = CAP;
    dsr1_generation *gen = NULL;
    CHECK(dsr1_generation_new(ctx, smp, prompt, N, &gp, &gen) == DSR1_OK, "generation");
    int n = 0, steps = 0, worst = 0, silent = 0;
    dsr1_stop_reason why = DSR1_STOP_NONE;
    while (gen && why == DSR1_STOP_NONE) {
        int32_t before = dsr1_context_n_past(ctx);
        dsr1_token t;
        if (dsr1_generation_step(gen, &t, &why) != DSR1_OK)
            break;
        int32_t evaluated = dsr1_context_n_past(ctx) - before;
        if (evaluated > worst)
            worst = evaluated;
        steps++;
        if (t < 0)
            silent++;
        else if (n < GEN)
            got[n++] = t;
    }
    CHECK(worst <= CAP, "a step evaluated %d tokens, cap %d", worst, CAP);
    CHECK(silent == (N + CAP - 1) / CAP - 1, "%d steps without a token, %d expected", silent, (N + CAP - 1) / CAP - 1);
    CHECK(n == n_want && memcmp(got, want, sizeof want) == 0, "capped tokens differ from uncapped ones");
    dsr1_generation_free(gen);
    gp.max_prompt_per_step = -1;
    CHECK(dsr1_generation_new(ctx, smp, prompt, N, &gp, &gen) == DSR1_ERR_INVALID_ARGUMENT, "negative cap");
    dsr1_context_free(ctx);
    dsr1_context_free(ref);
    dsr1_sampler_free(smp);
    free(prompt);
}

/* ---- re-entrancy from on_event ---- */

typedef struct reentry {
    dsr1_generation *gen;
    dsr1_context *ctx;
    dsr1_sampler *smp;
    const dsr1_model *model;
    int done, step_st, eval_st, sample_st, tokenize_st, stats_st, n_past_ok, freed_refused;
} reentry;

static int on_event_reenter(const dsr1_event *ev, void *ud)
{
    reentry *r = ud;
    if (r->done || ev->type == DSR1_EVENT_DONE)
        return 0;
    r->done = 1;
    r->step_st = dsr1_generation_step(r->gen, NULL, NULL);
    dsr1_token t = 1;
    r->eval_st = dsr1_eval(r->ctx, &t, 1, 0, 0);
    float l[1] = {0};
    r->sample_st = dsr1_sampler_sample(r->smp, l, 1, &t);
    int32_t n = 0;
    dsr1_token buf[16];
    r->tokenize_st = dsr1_tokenize(r->model, "hi", 2, buf, 16, &n, 0);
    dsr1_generation_stats s;
    s.size = sizeof s;
    r->stats_st = dsr1_generation_get_stats(r->gen, &s);
    r->n_past_ok = dsr1_context_n_past(r->ctx) > 0;
    dsr1_generation_free(r->gen); /* refused: the generation is running */
    r->freed_refused = strstr(dsr1_last_error(), "dsr1_generation_free") != NULL;
    dsr1_generation_cancel(r->gen); /* allowed: ends it after this step */
    return 0;
}

/* The per-step hook runs under the same rules as on_event: the
 * generation, its context and its sampler are busy; the model is not. */
typedef struct step_reentry {
    dsr1_context *ctx;
    dsr1_sampler *smp;
    const dsr1_model *model;
    int calls, eval_st, sample_st, tokenize_st, n_past_kept, reset_refused;
} step_reentry;

static int on_step_reenter(dsr1_step *step, void *ud)
{
    step_reentry *r = ud;
    if (r->calls++)
        return 0;
    int32_t n_past = dsr1_context_n_past(r->ctx);
    dsr1_token t = 1;
    r->eval_st = dsr1_eval(r->ctx, &t, 1, 0, 0);
    r->sample_st = dsr1_sampler_sample(r->smp, step->logits, step->n_vocab, &t);
    dsr1_context_reset(r->ctx); /* void: refused */
    r->reset_refused = strstr(dsr1_last_error(), "dsr1_context_reset") != NULL;
    r->n_past_kept = dsr1_context_n_past(r->ctx) == n_past && n_past > 0;
    int32_t n = 0;
    dsr1_token buf[16];
    r->tokenize_st = dsr1_tokenize(r->model, "hi", 2, buf, 16, &n, 0);
    return 0;
}

static void test_step_reentrancy(const dsr1_model *m)
{
    dsr1_context *ctx = new_ctx(m, 128, 0, NULL, NULL);
    dsr1_sampler *smp = greedy(m);
    step_reentry r = {ctx, smp, m, 0, 0, 0, 0, 0, 0};
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.on_step = on_step_reenter;
    gp.step_user_data = &r;
    gp.max_new_tokens = 3;
    dsr1_token prompt[3] = {10, 11, 12};
    dsr1_stop_reason why = DSR1_STOP_NONE;
    CHECK(dsr1_generate(ctx, smp, prompt, 3, &gp, &why) == DSR1_OK && why == DSR1_STOP_LENGTH,
          "generation with a re-entering on_step: %s", dsr1_context_errmsg(ctx));
    CHECK(r.calls == 3, "on_step called %d times for 3 tokens", r.calls);
    CHECK(r.eval_st == DSR1_ERR_STATE && r.sample_st == DSR1_ERR_STATE,
          "eval / sample of the generation's handles from on_step: %d %d", r.eval_st, r.sample_st);
    CHECK(r.reset_refused && r.n_past_kept, "dsr1_context_reset from on_step emptied the cache");
    CHECK(r.tokenize_st == DSR1_OK, "the model from on_step: %d", r.tokenize_st);
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
}

static void test_reentrancy(const dsr1_model *m)
{
    dsr1_context *ctx = new_ctx(m, 128, 0, NULL, NULL);
    dsr1_sampler *smp = greedy(m);
    reentry r;
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    r.smp = smp;
    r.model = m;
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.on_event = on_event_reenter;
    gp.user_data = &r;
    gp.starts_in_reasoning = 0;
    dsr1_token prompt[3] = {10, 11, 12};
    CHECK(dsr1_generation_new(ctx, smp, prompt, 3, &gp, &r.gen) == DSR1_OK, "generation");
    dsr1_stop_reason why = DSR1_STOP_NONE;
    int steps = 0;
    while (why == DSR1_STOP_NONE && steps < 100 && dsr1_generation_step(r.gen, NULL, &why) == DSR1_OK)
        steps++;
    CHECK(r.done, "no event was delivered in %d steps", steps);
    CHECK(r.step_st == DSR1_ERR_STATE, "step from on_event: %d", r.step_st);
    CHECK(r.eval_st == DSR1_ERR_STATE, "eval of the generation's context from on_event: %d", r.eval_st);
    CHECK(r.sample_st == DSR1_ERR_STATE, "the generation's sampler from on_event: %d", r.sample_st);
    CHECK(r.tokenize_st == DSR1_OK && r.stats_st == DSR1_OK && r.n_past_ok, "allowed calls failed: %d %d %d",
          r.tokenize_st, r.stats_st, r.n_past_ok);
    CHECK(r.freed_refused, "dsr1_generation_free from on_event was not refused");
    CHECK(why == DSR1_STOP_CANCELLED, "cancel from on_event: stop reason %d", why);
    dsr1_generation_free(r.gen);
    /* after the generation, the context and sampler are free again */
    CHECK(dsr1_eval(ctx, prompt, 3, 0, 0) == DSR1_OK, "context after the generation: %s", dsr1_context_errmsg(ctx));
    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
}

/* ---- callbacks that call back into the library ---- */

/* The log callback may call functions on the model (dsr1.h); a failure of
 * its own must not replace the message of the call that logged. */
typedef struct log_reentry {
    const dsr1_model *model; /* NULL during a load: there is none yet */
    int lines, tokenize_ok, context_ok, failing_calls;
    int depth; /* the context made inside the callback logs too */
} log_reentry;

static void on_log_reenter(dsr1_log_level level, const char *message, void *ud)
{
    (void)level;
    (void)message;
    log_reentry *r = ud;
    if (r->depth)
        return;
    r->lines++;
    dsr1_model *none = NULL;
    if (dsr1_model_load("/nonexistent/from-the-log-callback.gguf", NULL, &none) == DSR1_ERR_IO &&
        strstr(dsr1_last_error(), "from-the-log-callback"))
        r->failing_calls++; /* the callback sees its own failure */
    if (!r->model)
        return;
    dsr1_token buf[16];
    int32_t n = 0;
    r->tokenize_ok += dsr1_tokenize(r->model, "hi", 2, buf, 16, &n, 0) == DSR1_OK && n > 0;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = 16;
    cp.n_threads = 1;
    dsr1_context *other = NULL; /* a context of the model: made, used, freed inside the callback */
    const dsr1_token t = 1;
    r->depth++;
    r->context_ok += dsr1_context_new(r->model, &cp, &other) == DSR1_OK && dsr1_eval(other, &t, 1, 0, 0) == DSR1_OK;
    dsr1_context_free(other);
    r->depth--;
}

typedef struct done_reentry {
    dsr1_context *ctx;
    dsr1_generation *gen;
    int cancels, done_eval_st;
} done_reentry;

static int abort_cancels_generation(void *ud) /* dsr1_generation_cancel is allowed here */
{
    done_reentry *r = ud;
    if (r->gen && !r->cancels++)
        dsr1_generation_cancel(r->gen);
    return 0;
}

static int on_done_eval(const dsr1_event *ev, void *ud)
{
    done_reentry *r = ud;
    const dsr1_token t = 1;
    if (ev->type == DSR1_EVENT_DONE)
        r->done_eval_st = dsr1_eval(r->ctx, &t, 1, 0, 0); /* refused: the context is the generation's */
    return 0;
}

/* The progress callback may call any function (there is no model yet):
 * here a whole load of another model, a call on the caller's model, and a
 * failing call; then it cancels, and the load reports its own cancel. */
typedef struct progress_reentry {
    const dsr1_model *other;
    int calls, nested_ok, tokenize_ok, cancel_at;
} progress_reentry;

static int on_progress_reenter(const dsr1_progress *p, void *ud)
{
    (void)p;
    progress_reentry *r = ud;
    r->calls++;
    dsr1_model *nested = NULL;
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.vocab_only = 1;
    r->nested_ok += dsr1_model_load(qwen_path, &mp, &nested) == DSR1_OK && dsr1_model_n_vocab(nested) > 0;
    dsr1_model_free(nested);
    dsr1_token buf[8];
    int32_t n = 0;
    r->tokenize_ok += dsr1_tokenize(r->other, "hi", 2, buf, 8, &n, 0) == DSR1_OK;
    dsr1_model *none = NULL;
    dsr1_model_load("/nonexistent/from-the-progress-callback.gguf", NULL, &none);
    return r->cancel_at > 0 && r->calls >= r->cancel_at;
}

static void test_callback_errors(const dsr1_model *m)
{
    for (int cancel = 0; cancel <= 1; cancel++) {
        progress_reentry pr = {m, 0, 0, 0, cancel ? 2 : 0};
        dsr1_model_params pp;
        dsr1_model_params_default(&pp, sizeof pp);
        pp.progress_callback = on_progress_reenter;
        pp.progress_user_data = &pr;
        dsr1_model *loaded = NULL;
        dsr1_status pst = dsr1_model_load(ds2_path, &pp, &loaded);
        CHECK(pst == (cancel ? DSR1_ERR_CANCELLED : DSR1_OK) && (loaded != NULL) == !cancel,
              "load with a re-entering progress callback: %d %s", pst, dsr1_last_error());
        CHECK(pr.calls >= 2 && pr.nested_ok == pr.calls && pr.tokenize_ok == pr.calls,
              "calls from the progress callback: %d calls, nested loads %d, tokenize %d", pr.calls, pr.nested_ok,
              pr.tokenize_ok);
        if (cancel)
            CHECK(strstr(dsr1_last_error(), "progress callback") && !strstr(dsr1_last_error(), "from-the-progress"),
                  "the cancelled load's message: '%s'", dsr1_last_error());
        dsr1_model_free(loaded);
    }

    /* a load that fails and logs its error, whose log callback fails a call of its own */
    log_reentry lr;
    memset(&lr, 0, sizeof lr);
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.log_callback = on_log_reenter;
    mp.log_user_data = &lr;
    mp.log_level = DSR1_LOG_DEBUG;
    static const char not_gguf[] = "this is not a GGUF file, and long enough to have a header......";
    dsr1_model *bad = NULL;
    dsr1_status st = dsr1_model_load_from_memory(not_gguf, sizeof not_gguf, &mp, &bad);
    CHECK(st == DSR1_ERR_FORMAT && bad == NULL, "a text file loaded: %d", st);
    CHECK(lr.lines >= 1 && lr.failing_calls == lr.lines, "log lines %d, failing calls seen %d", lr.lines,
          lr.failing_calls);
    CHECK(strstr(dsr1_last_error(), "from-the-log-callback") == NULL && strstr(dsr1_last_error(), "GGUF") != NULL,
          "the failed load's message was replaced by the log callback's: '%s'", dsr1_last_error());

    /* the model's own log, from dsr1_context_new: calls on the model work inside it */
    memset(&lr, 0, sizeof lr);
    dsr1_model *logged = NULL;
    CHECK(dsr1_model_load(qwen_path, &mp, &logged) == DSR1_OK, "load with a re-entering log: %s", dsr1_last_error());
    if (logged) {
        lr.model = logged;
        lr.lines = lr.failing_calls = 0;
        dsr1_context *ctx = new_ctx(logged, 32, 0, NULL, NULL);
        CHECK(ctx && lr.lines >= 1 && lr.tokenize_ok == lr.lines && lr.context_ok == lr.lines,
              "calls on the model from its log callback: %d lines, tokenize %d, contexts %d", lr.lines,
              lr.tokenize_ok, lr.context_ok);
        dsr1_context_free(ctx);
        dsr1_model_free(logged);
    }

    /* a step cancelled mid-evaluation sends DONE; a refused call in on_event
     * must leave the step's message saying it was cancelled */
    done_reentry r;
    memset(&r, 0, sizeof r);
    r.ctx = new_ctx(m, 128, 0, abort_cancels_generation, &r);
    dsr1_sampler *smp = greedy(m);
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.on_event = on_done_eval;
    gp.user_data = &r;
    dsr1_token prompt[20];
    make_prompt(m, prompt, 20, 5);
    CHECK(r.ctx && dsr1_generation_new(r.ctx, smp, prompt, 20, &gp, &r.gen) == DSR1_OK, "generation");
    dsr1_stop_reason why = DSR1_STOP_NONE;
    st = r.gen ? dsr1_generation_step(r.gen, NULL, &why) : DSR1_ERR_INTERNAL;
    CHECK(st == DSR1_ERR_CANCELLED && why == DSR1_STOP_CANCELLED, "cancelled step: %d, %d", st, why);
    CHECK(r.done_eval_st == DSR1_ERR_STATE, "dsr1_eval from DONE: %d", r.done_eval_st);
    CHECK(strstr(dsr1_generation_errmsg(r.gen), "cancelled") && !strstr(dsr1_generation_errmsg(r.gen), "dsr1_eval"),
          "the step's message is the callback's: '%s'", dsr1_generation_errmsg(r.gen));
    CHECK(strstr(dsr1_last_error(), "cancelled") && !strstr(dsr1_last_error(), "dsr1_eval"),
          "the thread's message is the callback's: '%s'", dsr1_last_error());
    dsr1_generation_free(r.gen);
    dsr1_sampler_free(smp);
    dsr1_context_free(r.ctx);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_host DATA_DIR\n");
        return 2;
    }
    snprintf(qwen_path, sizeof qwen_path, "%s/models/qwen2-q8_0.gguf", argv[1]);
    snprintf(ds2_path, sizeof ds2_path, "%s/models/deepseek2-q8_0.gguf", argv[1]);
    dsr1_model *m = load(qwen_path);
    if (!m)
        return check_summary("test_host");
    test_params(m);
    test_errors(m);
    test_estimate(qwen_path);
    test_estimate(ds2_path);
    test_progress();
    test_abort_eval(m);
    test_step_cap(m);
    test_reentrancy(m);
    test_step_reentrancy(m);
    test_callback_errors(m);
    test_cancel_long_prompt(m);
    dsr1_model_free(m);
    return check_summary("test_host");
}
