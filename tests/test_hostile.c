/*
 * Issue 17 ("hardening, round two"): what a hostile model file and a hostile
 * host did, each on a copy of a real fixture patched in memory.
 *   1. router-driving weights: exp_probs_b -inf / NaN / huge is a load
 *      error (it loaded, then the first eval wrote past the MoE scratch);
 *   3. an f32 tensor of 2^62 + 1 values (the row size wrapped to 4 bytes);
 *   5. a context used by another eval / generation while a step-API
 *      generation is in flight on it (silently answered the wrong prompt);
 *   6. rope_freqs 1e-45 (every logit NaN, eval OK), llama.vocab_size
 *      disagreeing with the vocabulary, a NaN weight (eval must say so);
 *   7. n_threads 20000 (created 19999 threads): refused above 1024, clamped
 *      to 4 x the cores below that.
 * And the context's sizes: an n_ctx whose cache bytes do not fit in 64 bits
 * (wrapped to a small buffer the cache tensors then overran), and
 * dsr1_context_reset under an unfinished generation (it emptied the cache
 * the generation continues from).
 * And what fuzz/fuzz_model found: tensors whose data overlap.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "dsr1.h"
#include "gguf/gguf.h"
#include "model/context.h"

static const char *data_dir;

typedef struct fixture {
    uint8_t *orig, *buf;
    size_t size;
} fixture;

static int fixture_read(fixture *f, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s", data_dir, name);
    FILE *fp = fopen(path, "rb");
    memset(f, 0, sizeof *f);
    if (!fp) {
        CHECK(0, "cannot open %s", path);
        return 0;
    }
    fseek(fp, 0, SEEK_END);
    f->size = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->orig = malloc(f->size);
    f->buf = malloc(f->size);
    int ok = f->orig && f->buf && fread(f->orig, 1, f->size, fp) == f->size;
    fclose(fp);
    CHECK(ok, "cannot read %s", path);
    return ok;
}

static void fixture_free(fixture *f)
{
    free(f->orig);
    free(f->buf);
}

/* Start a new variant: buf = the intact file. */
static void fixture_reset(fixture *f) { memcpy(f->buf, f->orig, f->size); }

/* Where tensor `name`'s data and shape fields lie in the file. */
typedef struct where {
    size_t data;   /* first data byte */
    size_t dims;   /* the ne[] fields of the tensor info */
    int64_t n;     /* elements */
} where;

static int locate(const fixture *f, const char *name, where *w)
{
    dsri_gguf *g;
    if (dsri_gguf_parse(f->orig, f->size, &g) != DSR1_OK)
        return 0;
    const dsri_gguf_tensor *t = dsri_gguf_find_tensor(g, name);
    if (t) {
        w->data = (size_t)(t->data - f->orig);
        w->dims = (size_t)((const uint8_t *)t->name.ptr - f->orig) + (size_t)t->name.len + 4;
        w->n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    }
    dsri_gguf_free(g);
    CHECK(t != NULL, "fixture has no tensor '%s'", name);
    return t != NULL;
}

/* Offset of the value of integer key `key` (to patch in place). */
static size_t key_value_at(const fixture *f, const char *key)
{
    dsri_gguf *g;
    size_t at = 0;
    if (dsri_gguf_parse(f->orig, f->size, &g) == DSR1_OK) {
        const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, key);
        if (kv)
            at = (size_t)(kv->data - f->orig);
        dsri_gguf_free(g);
    }
    CHECK(at != 0, "fixture has no key '%s'", key);
    return at;
}

static void put_f32(uint8_t *p, float v) { memcpy(p, &v, 4); } /* the fixtures are little-endian, as is the host */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Load buf: expect `want` and a message containing `needle`. */
static void expect_load(const fixture *f, const char *what, dsr1_status want, const char *needle)
{
    dsr1_model *m = NULL;
    dsr1_status st = dsr1_model_load_from_memory(f->buf, f->size, NULL, &m);
    const char *msg = dsr1_last_error();
    CHECK(st == want && (want != DSR1_OK || m != NULL) && (!needle || strstr(msg, needle)),
          "%s: status %s (want %s), message '%s' (want '%s')", what, dsr1_status_string(st), dsr1_status_string(want),
          st ? msg : "", needle ? needle : "");
    dsr1_model_free(m);
}

static void test_router_bias(void)
{
    fixture f;
    where w;
    if (!fixture_read(&f, "deepseek2-q4_k_m.gguf") || !locate(&f, "blk.1.exp_probs_b.bias", &w)) {
        fixture_free(&f);
        return;
    }
    const float bad[3] = {-INFINITY, NAN, 1e30f};
    const char *what[3] = {"exp_probs_b all -inf", "exp_probs_b all NaN", "exp_probs_b all 1e30"};
    for (int k = 0; k < 3; k++) {
        fixture_reset(&f);
        for (int64_t i = 0; i < w.n; i++)
            put_f32(f.buf + w.data + 4 * i, bad[k]);
        expect_load(&f, what[k], DSR1_ERR_FORMAT, "blk.1.exp_probs_b.bias");
    }
    /* one element is enough */
    fixture_reset(&f);
    put_f32(f.buf + w.data + 4 * 7, NAN);
    expect_load(&f, "exp_probs_b[7] NaN", DSR1_ERR_FORMAT, "element 7");
    /* a norm weight that is not finite poisons everything too */
    if (locate(&f, "blk.0.attn_norm.weight", &w)) {
        fixture_reset(&f);
        put_f32(f.buf + w.data, INFINITY);
        expect_load(&f, "attn_norm inf", DSR1_ERR_FORMAT, "blk.0.attn_norm.weight");
    }
    fixture_free(&f);
}

static void test_size_overflow(void)
{
    fixture f;
    where w;
    if (!fixture_read(&f, "qwen2-f32.gguf") || !locate(&f, "blk.0.attn_norm.weight", &w)) {
        fixture_free(&f);
        return;
    }
    /* a 1-D f32 tensor of 2^62 + 1 values: 4 x ne0 wraps to 4 bytes */
    fixture_reset(&f);
    put_u64(f.buf + w.dims, (1ull << 62) + 1);
    expect_load(&f, "ne0 = 2^62 + 1", DSR1_ERR_FORMAT, "overflows");
    dsri_gguf *g = NULL;
    CHECK(dsri_gguf_parse(f.buf, f.size, &g) == DSR1_ERR_FORMAT, "the parser accepts ne0 = 2^62 + 1");
    dsri_gguf_free(g);
    fixture_free(&f);
}

/* fuzz_model: two tensors whose data overlap loaded, and the model
 * reported more weight bytes than its file holds. */
static void test_overlapping_tensors(void)
{
    fixture f;
    where a, b;
    if (!fixture_read(&f, "qwen2-f32.gguf") || !locate(&f, "blk.0.attn_norm.weight", &a) ||
        !locate(&f, "blk.0.ffn_norm.weight", &b)) {
        fixture_free(&f);
        return;
    }
    /* the offset field follows ne[n_dims] and the type */
    uint32_t a_dims, b_dims;
    memcpy(&a_dims, f.orig + a.dims - 4, 4);
    memcpy(&b_dims, f.orig + b.dims - 4, 4);
    uint8_t *a_offset = f.buf + a.dims + 8 * (size_t)a_dims + 4, *b_offset = f.buf + b.dims + 8 * (size_t)b_dims + 4;
    fixture_reset(&f);
    memcpy(b_offset, a_offset, 8); /* ffn_norm's data is attn_norm's */
    expect_load(&f, "two tensors on the same bytes", DSR1_ERR_FORMAT, "overlap");
    dsri_gguf *g = NULL;
    CHECK(dsri_gguf_parse(f.buf, f.size, &g) == DSR1_ERR_FORMAT, "the parser accepts overlapping tensors");
    dsri_gguf_free(g);
    fixture_reset(&f); /* the intact file still loads */
    expect_load(&f, "intact", DSR1_OK, NULL);
    fixture_free(&f);
}

static void test_poisoning_values(void)
{
    fixture f;
    where w;
    /* llama3 frequency divisors: 1e-45 is > 0 and finite, the frequency is not */
    if (fixture_read(&f, "llama-q8_0.gguf") && locate(&f, "rope_freqs.weight", &w)) {
        fixture_reset(&f);
        put_f32(f.buf + w.data, 1e-45f);
        expect_load(&f, "rope_freqs[0] = 1e-45", DSR1_ERR_FORMAT, "RoPE frequency 0");
        fixture_reset(&f);
        put_f32(f.buf + w.data + 4 * 3, 1e-30f);
        expect_load(&f, "rope_freqs[3] = 1e-30", DSR1_ERR_FORMAT, "RoPE frequency 3");
        size_t at = key_value_at(&f, "llama.vocab_size");
        if (at) {
            fixture_reset(&f);
            memset(f.buf + at, 0, 4);
            f.buf[at] = 7; /* u32 (or wider) little-endian 7 */
            expect_load(&f, "llama.vocab_size = 7", DSR1_ERR_FORMAT, "llama.vocab_size");
        }
        fixture_reset(&f);
        expect_load(&f, "intact llama", DSR1_OK, NULL);
    }
    fixture_free(&f);

    /* a NaN in a matrix loads (matrices are not scanned) but eval reports it */
    if (!fixture_read(&f, "qwen2-f32.gguf") || !locate(&f, "output.weight", &w)) {
        fixture_free(&f);
        return;
    }
    fixture_reset(&f);
    put_f32(f.buf + w.data + 4 * 256 * 5, NAN); /* row 5: the logit of token 5 */
    dsr1_model *m = NULL;
    dsr1_context *ctx = NULL;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = 32;
    cp.n_threads = 1;
    if (dsr1_model_load_from_memory(f.buf, f.size, NULL, &m) == DSR1_OK && dsr1_context_new(m, &cp, &ctx) == DSR1_OK) {
        const dsr1_token toks[3] = {1, 2, 3};
        dsr1_status st = dsr1_eval(ctx, toks, 3, 0, 0);
        CHECK(st == DSR1_ERR_NUMERIC, "NaN logits: eval returned %s", dsr1_status_string(st));
        CHECK(strstr(dsr1_last_error(), "token 5") != NULL, "message: %s", dsr1_last_error());
        CHECK(dsr1_context_n_past(ctx) == 0, "the failed batch stays in the cache (n_past %d)",
              dsr1_context_n_past(ctx));
        CHECK(dsr1_logits(ctx, -1) == NULL, "logits of a failed eval are handed out");
        st = dsr1_eval(ctx, toks, 3, 0, DSR1_EVAL_LOGITS_ALL);
        CHECK(st == DSR1_ERR_NUMERIC, "NaN logits (all rows): eval returned %s", dsr1_status_string(st));
    } else {
        CHECK(0, "a NaN in output.weight: %s", dsr1_last_error());
    }
    dsr1_context_free(ctx);
    dsr1_model_free(m);
    fixture_free(&f);
}

static dsr1_model *load_fixture(const char *name, dsr1_log_fn log, void *user)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s", data_dir, name);
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.log_callback = log;
    mp.log_user_data = user;
    mp.log_level = DSR1_LOG_WARN;
    dsr1_model *m = NULL;
    CHECK(dsr1_model_load(path, &mp, &m) == DSR1_OK, "load %s: %s", path, dsr1_last_error());
    return m;
}

static void remember_clamp(dsr1_log_level level, const char *msg, void *user)
{
    (void)level;
    if (strstr(msg, "n_threads 1000 clamped"))
        *(int *)user = 1;
}

static void test_thread_cap(void)
{
    int logged = 0;
    dsr1_model *m = load_fixture("qwen2-q8_0.gguf", remember_clamp, &logged);
    if (!m)
        return;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = 16;
    cp.backend = "scalar";
    dsr1_context *ctx = NULL;
    cp.n_threads = 20000; /* beyond any machine: refused */
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_ERR_INVALID_ARGUMENT && ctx == NULL, "n_threads 20000 accepted");
    CHECK(strstr(dsr1_last_error(), "n_threads") != NULL, "message: %s", dsr1_last_error());
    /* more than 4 x the cores: clamped, and the log says so */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int cap = (int)(4 * (cores > 0 && cores < 1024 ? cores : 1));
    cap = cap < 16 ? 16 : cap > 1024 ? 1024 : cap;
    cp.n_threads = 1000;
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_OK, "n_threads 1000: %s", dsr1_last_error());
    if (ctx) {
        CHECK(dsr1_context_n_threads(ctx) == (cap < 1000 ? cap : 1000), "n_threads 1000 gave %d (cap %d)",
              dsr1_context_n_threads(ctx), cap);
        CHECK(logged == (cap < 1000), "the clamp was %slogged (cap %d)", logged ? "" : "not ", cap);
        const dsr1_token t = 1;
        CHECK(dsr1_eval(ctx, &t, 1, 0, 0) == DSR1_OK, "eval with clamped threads: %s", dsr1_last_error());
    }
    dsr1_context_free(ctx);
    dsr1_model_free(m);
}

/* Every size of a context is computed with checked products: a model
 * whose cache rows are 2^41 bytes (cache widths patched into the loaded
 * model: a file would need to be that large) with n_ctx 2^31-1 needs more
 * than 64 bits of bytes. It must be refused before anything is allocated,
 * by dsr1_context_new and by the computation dsr1_model_estimate_memory
 * shares. */
static void test_context_size_overflow(void)
{
    dsr1_model *m = load_fixture("qwen2-q8_0.gguf", NULL, NULL);
    if (!m)
        return;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_threads = 1;
    cp.n_batch = 8;
    dsri_ctx_sizes sz;
    dsr1_context_params resolved;
    CHECK(dsri_ctx_resolve_params(m, &cp, &resolved) == DSR1_OK && dsri_ctx_sizes_of(m, &resolved, &sz) == DSR1_OK &&
              sz.kv_bytes == sz.kv_bytes_per_token * (uint64_t)resolved.n_ctx && sz.kv_layer_bytes > 0,
          "the fixture's sizes: %s", dsr1_last_error());
    const int64_t k_width = m->kv_k_width;
    m->kv_k_width = INT64_C(1) << 40;
    cp.n_ctx = INT32_MAX;
    cp.kv_type = DSR1_KV_F16;
    dsr1_context *ctx = NULL;
    dsr1_status st = dsr1_context_new(m, &cp, &ctx);
    CHECK(st == DSR1_ERR_OUT_OF_MEMORY && !ctx, "a cache of more than 2^64 bytes: %s", dsr1_status_string(st));
    CHECK(strstr(dsr1_last_error(), "64 bits") != NULL, "message: %s", dsr1_last_error());
    CHECK(dsri_ctx_resolve_params(m, &cp, &resolved) == DSR1_OK &&
              dsri_ctx_sizes_of(m, &resolved, &sz) == DSR1_ERR_OUT_OF_MEMORY,
          "the shared size computation accepted it");
    /* a total of 2^63 bytes and more with every product below 2^64 */
    m->kv_k_width = INT64_C(1) << 30;
    CHECK(dsri_ctx_resolve_params(m, &cp, &resolved) == DSR1_OK &&
              dsri_ctx_sizes_of(m, &resolved, &sz) == DSR1_ERR_OUT_OF_MEMORY,
          "a cache of %d layers x 2^62 bytes accepted", dsr1_model_n_layer(m));
    dsr1_context_free(ctx);
    m->kv_k_width = k_width;
    cp.n_ctx = 32;
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_OK, "the unpatched model: %s", dsr1_last_error());
    dsr1_context_free(ctx);
    dsr1_model_free(m);
}

static void test_context_in_use(void)
{
    dsr1_model *m = load_fixture("qwen2-q8_0.gguf", NULL, NULL);
    if (!m)
        return;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = 64;
    cp.n_threads = 1;
    dsr1_context *ctx = NULL;
    dsr1_sampler *smp = NULL;
    if (dsr1_context_new(m, &cp, &ctx) != DSR1_OK || dsr1_sampler_new(dsr1_model_n_vocab(m), NULL, &smp) != DSR1_OK) {
        CHECK(0, "setup: %s", dsr1_last_error());
        dsr1_context_free(ctx);
        dsr1_model_free(m);
        return;
    }
    const dsr1_token p1[4] = {10, 11, 12, 13}, p2[3] = {20, 21, 22};
    dsr1_generate_params gp;
    dsr1_generate_params_default(&gp, sizeof gp);
    gp.max_new_tokens = 4;
    dsr1_generation *gen = NULL;
    CHECK(dsr1_generation_new(ctx, smp, p1, 4, &gp, &gen) == DSR1_OK, "generation: %s", dsr1_last_error());
    dsr1_token tok;
    dsr1_stop_reason why;
    CHECK(dsr1_generation_step(gen, &tok, &why) == DSR1_OK, "step: %s", dsr1_last_error());
    int32_t n_past = dsr1_context_n_past(ctx);

    /* everything that would change what it continues from */
    dsr1_status st = dsr1_eval(ctx, p2, 3, 0, 0);
    CHECK(st == DSR1_ERR_STATE, "dsr1_eval during a generation: %s", dsr1_status_string(st));
    CHECK(strstr(dsr1_last_error(), "in flight") != NULL, "message: %s", dsr1_last_error());
    st = dsr1_generate(ctx, smp, p2, 3, &gp, &why);
    CHECK(st == DSR1_ERR_STATE, "dsr1_generate during a generation: %s", dsr1_status_string(st));
    dsr1_generation *other = NULL;
    st = dsr1_generation_new(ctx, smp, p2, 3, &gp, &other);
    CHECK(st == DSR1_ERR_STATE && other == NULL, "a second generation: %s", dsr1_status_string(st));
    st = dsr1_context_truncate(ctx, 0);
    CHECK(st == DSR1_ERR_STATE, "truncate during a generation: %s", dsr1_status_string(st));
    dsr1_context_reset(ctx); /* void: refused, with the handle's message */
    CHECK(strstr(dsr1_context_errmsg(ctx), "dsr1_context_reset") && strstr(dsr1_context_errmsg(ctx), "in flight"),
          "reset during a generation: '%s'", dsr1_context_errmsg(ctx));
    CHECK(strstr(dsr1_last_error(), "dsr1_context_reset") != NULL, "message: %s", dsr1_last_error());
    CHECK(dsr1_context_n_past(ctx) == n_past, "the context changed under the generation");

    /* it goes on, and once finished the context is free again */
    st = dsr1_generation_run(gen, &why);
    CHECK(st == DSR1_OK && why == DSR1_STOP_LENGTH, "run: %s %d", dsr1_status_string(st), (int)why);
    CHECK(dsr1_eval(ctx, p2, 3, 0, 0) == DSR1_OK, "eval after the generation finished: %s", dsr1_last_error());
    dsr1_generation_free(gen);

    /* freeing an unfinished generation releases it too */
    CHECK(dsr1_generation_new(ctx, smp, p1, 4, &gp, &gen) == DSR1_OK, "generation: %s", dsr1_last_error());
    CHECK(dsr1_eval(ctx, p2, 3, 0, 0) == DSR1_ERR_STATE, "eval during an unstepped generation");
    dsr1_generation_free(gen);
    CHECK(dsr1_generate(ctx, smp, p2, 3, &gp, &why) == DSR1_OK, "generate after free: %s", dsr1_last_error());
    dsr1_context_reset(ctx);
    CHECK(dsr1_context_n_past(ctx) == 0 && dsr1_context_errmsg(ctx)[0] == '\0', "reset of a free context: '%s'",
          dsr1_context_errmsg(ctx));

    dsr1_sampler_free(smp);
    dsr1_context_free(ctx);
    dsr1_model_free(m);
}

int main(int argc, char **argv)
{
    data_dir = argc > 1 ? argv[1] : "tests/data";
    test_router_bias();
    test_size_overflow();
    test_overlapping_tensors();
    test_poisoning_values();
    test_thread_cap();
    test_context_size_overflow();
    test_context_in_use();
    return check_summary("test_hostile");
}
