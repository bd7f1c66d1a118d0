/*
 * deepseek2 (DeepSeek-V3 / R1): the tiny random-weight fixtures against the
 * strict f32 reference logits, batched and one token at a time; the older
 * attn_kv_b weight layout; prompts past the YaRN original context (batched
 * = decompressed attention vs step = absorbed attention); the KV cache size;
 * the multi-token-prediction head; memory after a short decode. All with
 * an f32 KV cache (the strict reference); test_fixture_f16 checks the f16
 * cache (the default) against the same reference within F16_TOL.
 *
 * argv[1]: the test data directory (tests/data).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"
#include "model/context.h"
#include "model/deepseek2.h"
#include "model/model.h"
#include "quant/quant.h"
#include "check.h"

#define TOL 1e-3f
/* f16 KV cache vs the strict reference: measured at most 1.44e-3 on the
 * three fixtures (gcc 12, x86-64); about twice that as the bound. */
#define F16_TOL 3e-3f


static const char *data_dir;

static void *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *v = sz > 0 ? malloc((size_t)sz) : NULL;
    if (v && fread(v, 1, (size_t)sz, f) != (size_t)sz) {
        free(v);
        v = NULL;
    }
    fclose(f);
    *n = v ? (size_t)sz : 0;
    return v;
}

static float *read_floats(const char *path, size_t *n)
{
    float *v = read_bytes(path, n);
    *n /= sizeof(float);
    return v;
}

/* The prompt of NAME from MANIFEST. */
static int read_manifest(const char *name, dsr1_token *tokens, int cap, int *n_vocab)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/MANIFEST", data_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[8192];
    int n = -1;
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *tok = strtok_r(line, " \n", &save);
        if (!tok || strcmp(tok, name) != 0)
            continue;
        *n_vocab = atoi(strtok_r(NULL, " \n", &save));
        n = 0;
        while ((tok = strtok_r(NULL, " \n", &save)) && n < cap)
            tokens[n++] = atoi(tok);
        break;
    }
    fclose(f);
    return n;
}

static dsr1_model *load(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s.gguf", data_dir, name);
    dsr1_model *m = NULL;
    dsr1_status st = dsr1_model_load(path, NULL, &m);
    CHECK(st == DSR1_OK, "load %s: %s", path, dsr1_last_error());
    return m;
}

static dsr1_context *new_ctx_kv(const dsr1_model *m, int n_ctx, int n_batch, dsr1_kv_type kv)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.backend = "scalar";
    cp.kv_type = kv;
    dsr1_context *ctx = NULL;
    dsr1_status st = dsr1_context_new(m, &cp, &ctx);
    CHECK(st == DSR1_OK, "context: %s", dsr1_last_error());
    return ctx;
}

static dsr1_context *new_ctx(const dsr1_model *m, int n_ctx, int n_batch)
{
    return new_ctx_kv(m, n_ctx, n_batch, DSR1_KV_F32);
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float mx = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= mx)) /* NaN counts as infinite */
            mx = d == d ? d : INFINITY;
    }
    return mx;
}

/* Batched (all logits) and step-by-step logits of ctx vs ref. */
static void compare_paths_tol(dsr1_context *ctx, const dsr1_token *tok, int n, const float *ref, int n_vocab,
                              const char *what, float *out_batched, float *out_step, float tol)
{
    float mb = 0.0f, ms = 0.0f;
    dsr1_status st = dsr1_eval(ctx, tok, n, 0, DSR1_EVAL_LOGITS_ALL);
    CHECK(st == DSR1_OK, "%s batched eval: %s", what, dsr1_last_error());
    for (int i = 0; st == DSR1_OK && i < n; i++) {
        float d = max_diff(dsr1_logits(ctx, i), ref + (size_t)i * n_vocab, (size_t)n_vocab);
        mb = d > mb ? d : mb;
    }
    dsr1_context_reset(ctx);
    for (int i = 0; i < n; i++) {
        st = dsr1_eval(ctx, tok + i, 1, i, 0);
        CHECK(st == DSR1_OK, "%s step eval %d: %s", what, i, dsr1_last_error());
        if (st)
            break;
        float d = max_diff(dsr1_logits(ctx, -1), ref + (size_t)i * n_vocab, (size_t)n_vocab);
        ms = d > ms ? d : ms;
    }
    printf("  %-28s batched max|diff| %.3g, step max|diff| %.3g\n", what, (double)mb, (double)ms);
    CHECK(mb < tol, "%s batched max|diff| %g >= %g", what, (double)mb, (double)tol);
    CHECK(ms < tol, "%s step max|diff| %g >= %g", what, (double)ms, (double)tol);
    if (out_batched)
        *out_batched = mb;
    if (out_step)
        *out_step = ms;
}

static void compare_paths(dsr1_context *ctx, const dsr1_token *tok, int n, const float *ref, int n_vocab,
                          const char *what, float *out_batched, float *out_step)
{
    compare_paths_tol(ctx, tok, n, ref, n_vocab, what, out_batched, out_step, TOL);
}

/* A fixture: its prompt (MANIFEST; at most its first 64 tokens), its strict
 * reference logits (n rows of n_vocab: the first rows of the file, which
 * holds one row per MANIFEST token) and the model. 0 (nothing to free) when
 * any part is missing. */
typedef struct fixture {
    dsr1_token tok[64];
    int n, n_vocab;
    float *ref;
    dsr1_model *m;
} fixture;

static int fixture_open(const char *name, fixture *f)
{
    f->n_vocab = 0;
    f->n = read_manifest(name, f->tok, 64, &f->n_vocab);
    CHECK(f->n > 0, "%s: no MANIFEST line", name);
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s.strict.f32", data_dir, name);
    size_t n_ref = 0;
    f->ref = read_floats(path, &n_ref);
    CHECK(f->ref && f->n_vocab > 0 && n_ref >= (size_t)f->n * (size_t)f->n_vocab && n_ref % (size_t)f->n_vocab == 0,
          "%s: cannot read %s", name, path);
    f->m = load(name);
    if (f->n <= 0 || !f->ref || !f->m || n_ref < (size_t)f->n * (size_t)f->n_vocab) {
        free(f->ref);
        dsr1_model_free(f->m);
        return 0;
    }
    return 1;
}

static void fixture_close(fixture *f)
{
    dsr1_model_free(f->m);
    free(f->ref);
}

/* ---- the fixtures against strict -------------------------------------- */

static void test_fixture(const char *name)
{
    fixture f;
    if (!fixture_open(name, &f))
        return;
    const dsr1_token *tok = f.tok;
    const int n = f.n, n_vocab = f.n_vocab;
    const float *ref = f.ref;
    dsr1_model *m = f.m;
    printf("%s\n", name);
    CHECK(strcmp(dsr1_model_arch(m), "deepseek2") == 0, "arch %s", dsr1_model_arch(m));
    CHECK(dsr1_model_n_vocab(m) == n_vocab, "n_vocab %d", dsr1_model_n_vocab(m));
    CHECK(dsr1_model_n_layer(m) == 2, "main layers %d (block_count 3 minus one MTP block)", dsr1_model_n_layer(m));
    const dsri_hparams *hp = &m->hp;
    CHECK(hp->n_head == 4 && hp->q_lora_rank == 128 && hp->kv_lora_rank == 64 && hp->qk_nope_dim == 32 &&
              hp->rope_dim == 16 && hp->head_dim_v == 32 && hp->n_leading_dense == 1 && hp->n_expert == 16 &&
              hp->n_expert_groups == 4 && hp->n_group_used == 2 && hp->n_expert_used == 4 &&
              hp->expert_gating == 2 && hp->expert_weights_norm == 1 && hp->expert_weights_scale == 2.5f &&
              hp->n_expert_shared == 1 && hp->n_nextn_layers == 1 && hp->yarn_factor == 4.0f &&
              hp->yarn_orig_ctx == 1024,
          "%s: hyper-parameters not read as expected", name);

    dsr1_context *ctx = new_ctx(m, 64, 64);
    if (ctx) {
        /* cache: normed latent (64) + rope key (16) per layer, main + MTP */
        uint64_t want = (uint64_t)(64 + 16) * (2 + 1) * sizeof(float);
        CHECK(dsr1_context_kv_bytes_per_token(ctx) == want, "kv bytes/token %llu, want %llu",
              (unsigned long long)dsr1_context_kv_bytes_per_token(ctx), (unsigned long long)want);
        compare_paths(ctx, tok, n, ref, n_vocab, "split attn_k_b/attn_v_b", NULL, NULL);
        /* a rewind re-evaluates exactly */
        CHECK(dsr1_eval(ctx, tok, n, 0, 0) == DSR1_OK, "eval");
        CHECK(dsr1_eval(ctx, tok + 10, n - 10, 10, DSR1_EVAL_LOGITS_ALL) == DSR1_OK, "rewind eval");
        float mr = 0.0f;
        for (int i = 10; i < n; i++) {
            float d = max_diff(dsr1_logits(ctx, i - 10), ref + (size_t)i * n_vocab, (size_t)n_vocab);
            mr = d > mr ? d : mr;
        }
        CHECK(mr < TOL, "rewound batch max|diff| %g", (double)mr);
        dsr1_context_free(ctx);
    }
    /* small n_batch: later chunks take the absorbed path with several rows */
    ctx = new_ctx(m, 64, 5);
    if (ctx) {
        compare_paths(ctx, tok, n, ref, n_vocab, "n_batch 5", NULL, NULL);
        dsr1_context_free(ctx);
    }
    fixture_close(&f);
}

/* ---- the f16 KV cache against strict ---------------------------------- */

/* The default cache type: half the bytes per token, logits within F16_TOL
 * of the strict reference batched, one token at a time and in chunks of 5
 * (the absorbed path with several rows), the argmax the reference's
 * wherever its top-1 margin exceeds 2 * F16_TOL. */
static float worst_f16;

static void test_fixture_f16(const char *name)
{
    fixture f;
    if (!fixture_open(name, &f))
        return;
    const dsr1_token *tok = f.tok;
    const int n = f.n, n_vocab = f.n_vocab;
    const float *ref = f.ref;
    dsr1_model *m = f.m;
    printf("%s, f16 KV cache\n", name);
    dsr1_context *ctx = new_ctx_kv(m, 64, 64, DSR1_KV_DEFAULT), *ctx5 = new_ctx_kv(m, 64, 5, DSR1_KV_F16);
    if (ctx && ctx5) {
        uint64_t want = (uint64_t)(64 + 16) * (2 + 1) * 2; /* the default is f16: 2 bytes a value */
        CHECK(dsr1_context_kv_bytes_per_token(ctx) == want, "f16 kv bytes/token %llu, want %llu",
              (unsigned long long)dsr1_context_kv_bytes_per_token(ctx), (unsigned long long)want);
        float mb = 0.0f, ms = 0.0f, mc = 0.0f;
        compare_paths_tol(ctx, tok, n, ref, n_vocab, "f16 KV", &mb, &ms, F16_TOL);
        compare_paths_tol(ctx5, tok, n, ref, n_vocab, "f16 KV, n_batch 5", &mc, NULL, F16_TOL);
        float w = mb > ms ? mb : ms;
        w = mc > w ? mc : w;
        worst_f16 = w > worst_f16 ? w : worst_f16;
        /* argmax of the batched logits (ctx5 holds them) */
        CHECK(dsr1_eval(ctx5, tok, n, 0, DSR1_EVAL_LOGITS_ALL) == DSR1_OK, "eval: %s", dsr1_last_error());
        int misses = 0;
        for (int i = 0; i < n; i++) {
            const float *r = ref + (size_t)i * n_vocab;
            int best = argmax(r, n_vocab);
            float second = -INFINITY;
            for (int v = 0; v < n_vocab; v++)
                if (v != best && r[v] > second)
                    second = r[v];
            misses += r[best] - second > 2 * F16_TOL && argmax(dsr1_logits(ctx5, i), n_vocab) != best;
        }
        CHECK(misses == 0, "%s f16 KV: the argmax differs from the reference at %d confident positions", name,
              misses);
    }
    dsr1_context_free(ctx);
    dsr1_context_free(ctx5);
    fixture_close(&f);
}

/* ---- the older single attn_kv_b layout -------------------------------- */

/* Rebuild attn_kv_b [R, H*(nope+dv)] (f32) from a loaded model's split
 * attn_k_b [nope, R, H] / attn_v_b [R, dv, H] and make the model use it. */
static void *to_kv_b(dsr1_model *m, int l)
{
    const dsri_hparams *hp = &m->hp;
    dsri_layer *L = &m->layers[l];
    const int H = hp->n_head, R = hp->kv_lora_rank, nope = hp->qk_nope_dim, dv = hp->head_dim_v;
    /* a host buffer: its header, then the floats */
    size_t bytes = (size_t)H * (nope + dv) * R * sizeof(float);
    dsri_buf *buf = calloc(1, sizeof *buf + bytes);
    float *w = buf ? (float *)(void *)(buf + 1) : NULL;
    float *row = calloc((size_t)(R > nope ? R : nope), sizeof(float));
    if (!w || !row) {
        free(buf);
        free(row);
        return NULL;
    }
    buf->host = w;
    buf->size = bytes;
    for (int h = 0; h < H; h++) {
        for (int c = 0; c < R; c++) { /* k_b row (h, c) holds nope values */
            dsri_dequantize_row(L->wk_b.type, (const uint8_t *)dsri_host_ptr(&L->wk_b) + (size_t)(h * R + c) * L->wk_b.stride,
                                row, nope);
            for (int j = 0; j < nope; j++)
                w[((size_t)h * (nope + dv) + j) * R + c] = row[j];
        }
        for (int j = 0; j < dv; j++) /* v_b row (h, j) holds R values */
            dsri_dequantize_row(L->wv_b.type, (const uint8_t *)dsri_host_ptr(&L->wv_b) + (size_t)(h * dv + j) * L->wv_b.stride,
                                w + ((size_t)h * (nope + dv) + nope + j) * R, R);
    }
    free(row);
    L->wkv_b = dsri_tensor_2d(buf, 0, DSRI_TYPE_F32, R, (int64_t)H * (nope + dv));
    memset(&L->wk_b, 0, sizeof L->wk_b);
    memset(&L->wv_b, 0, sizeof L->wv_b);
    return buf;
}

static void test_legacy_kv_b(const char *name)
{
    fixture f;
    if (!fixture_open(name, &f))
        return;
    const dsr1_token *tok = f.tok;
    const int n = f.n, n_vocab = f.n_vocab;
    const float *ref = f.ref;
    dsr1_model *m = f.m;
    printf("%s with attn_kv_b\n", name);
    float *owned[8] = {0};
    int n_all = m->hp.n_layer + m->hp.n_nextn_layers;
    for (int l = 0; l < n_all && l < 8; l++)
        CHECK((owned[l] = to_kv_b(m, l)) != NULL, "out of memory");
    dsr1_context *ctx = new_ctx(m, 64, 64);
    if (ctx) {
        compare_paths(ctx, tok, n, ref, n_vocab, "attn_kv_b", NULL, NULL);
        dsr1_context_free(ctx);
    }
    fixture_close(&f);
    for (int l = 0; l < 8; l++)
        free(owned[l]);
}

/* ---- past the YaRN original context ------------------------------------ */

static void test_long(const char *name, int n_total, dsr1_kv_type kv)
{
    dsr1_token prompt[64];
    int n_vocab = 0;
    int n = read_manifest(name, prompt, 64, &n_vocab);
    dsr1_model *m = load(name);
    if (n <= 0 || !m) {
        dsr1_model_free(m);
        return;
    }
    printf("%s, %d tokens (YaRN original context %d), %s KV cache\n", name, n_total, m->hp.yarn_orig_ctx,
           kv == DSR1_KV_F16 ? "f16" : "f32");
    dsr1_token *tok = malloc((size_t)n_total * sizeof *tok);
    float *step = malloc((size_t)n_total * (size_t)n_vocab * sizeof(float));
    dsr1_context *ctx = new_ctx_kv(m, n_total, n_total, kv);
    if (!tok || !step || !ctx)
        goto done;
    /* one token at a time (absorbed attention), feeding greedy choices */
    memcpy(tok, prompt, (size_t)n * sizeof *tok);
    for (int i = 0; i < n_total; i++) {
        dsr1_status st = dsr1_eval(ctx, tok + i, 1, i, 0);
        CHECK(st == DSR1_OK, "step %d: %s", i, dsr1_last_error());
        if (st)
            goto done;
        memcpy(step + (size_t)i * n_vocab, dsr1_logits(ctx, -1), (size_t)n_vocab * sizeof(float));
        if (i + 1 < n_total && i + 1 >= n)
            tok[i + 1] = argmax(step + (size_t)i * n_vocab, n_vocab);
    }
    /* all at once (decompressed attention, one chunk) */
    dsr1_status st = dsr1_eval(ctx, tok, n_total, 0, DSR1_EVAL_LOGITS_ALL);
    CHECK(st == DSR1_OK, "batched: %s", dsr1_last_error());
    float mx = 0.0f, mx_far = 0.0f;
    for (int i = 0; st == DSR1_OK && i < n_total; i++) {
        float d = max_diff(dsr1_logits(ctx, i), step + (size_t)i * n_vocab, (size_t)n_vocab);
        mx = d > mx ? d : mx;
        if (i >= m->hp.yarn_orig_ctx)
            mx_far = d > mx_far ? d : mx_far;
    }
    printf("  batched (decompressed) vs step (absorbed): max|diff| %.3g, past %d: %.3g\n", (double)mx,
           m->hp.yarn_orig_ctx, (double)mx_far);
    CHECK(mx < TOL, "long batched vs step max|diff| %g", (double)mx);
    CHECK(n_total <= m->hp.yarn_orig_ctx || mx_far > 0.0f || mx == 0.0f, "positions past the original context ran");
    dsr1_context_free(ctx);

    /* chunks of 100: the first decompressed, the rest absorbed with many rows */
    ctx = new_ctx_kv(m, n_total, 100, kv);
    if (!ctx)
        goto done;
    st = dsr1_eval(ctx, tok, n_total, 0, DSR1_EVAL_LOGITS_ALL);
    CHECK(st == DSR1_OK, "chunked: %s", dsr1_last_error());
    mx = 0.0f;
    for (int i = 0; st == DSR1_OK && i < n_total; i++) {
        float d = max_diff(dsr1_logits(ctx, i), step + (size_t)i * n_vocab, (size_t)n_vocab);
        mx = d > mx ? d : mx;
    }
    printf("  chunks of 100 (absorbed batches) vs step: max|diff| %.3g\n", (double)mx);
    CHECK(mx < TOL, "chunked vs step max|diff| %g", (double)mx);
done:
    dsr1_context_free(ctx);
    free(tok);
    free(step);
    dsr1_model_free(m);
}

/* ---- the MTP head ------------------------------------------------------ */

static void test_mtp(const char *name)
{
    dsr1_token tok[64];
    int n_vocab = 0;
    int n = read_manifest(name, tok, 64, &n_vocab);
    dsr1_model *m = load(name);
    if (n <= 0 || !m) {
        dsr1_model_free(m);
        return;
    }
    CHECK(dsri_deepseek2_has_mtp(m), "%s: MTP block not loaded", name);
    dsr1_context *ctx = new_ctx(m, 64, 64);
    float *hid = malloc((size_t)n * m->hp.n_embd * sizeof(float));
    float *lb = malloc((size_t)n * n_vocab * sizeof(float));
    float *ls = malloc((size_t)n * n_vocab * sizeof(float));
    int32_t pos[64];
    if (!ctx || !hid || !lb || !ls)
        goto done;
    /* hidden states of the prompt; MTP rows i = (h_i, t_{i+1}) */
    CHECK(dsr1_eval(ctx, tok, n, 0, 0) == DSR1_OK, "eval");
    CHECK(dsri_ctx_hidden_f32(ctx, hid) == DSR1_OK, "hidden states");
    for (int i = 0; i < n - 1; i++)
        pos[i] = i;
    dsr1_status st = dsri_deepseek2_mtp(ctx, hid, tok + 1, pos, n - 1, lb);
    CHECK(st == DSR1_OK, "mtp batch: %s", dsr1_last_error());
    for (int i = 0; st == DSR1_OK && i < n - 1; i++) {
        st = dsri_deepseek2_mtp(ctx, hid + (size_t)i * m->hp.n_embd, tok + 1 + i, pos + i, 1, ls + (size_t)i * n_vocab);
        CHECK(st == DSR1_OK, "mtp step: %s", dsr1_last_error());
    }
    float d = max_diff(lb, ls, (size_t)(n - 1) * n_vocab);
    int finite = 1;
    for (size_t i = 0; i < (size_t)(n - 1) * n_vocab; i++)
        finite &= isfinite(lb[i]) != 0;
    printf("%s MTP draft head: batched vs step max|diff| %.3g\n", name, (double)d);
    CHECK(finite && d < TOL, "MTP logits finite %d, batched vs step %g", finite, (double)d);
    /* the main model is unaffected by MTP runs */
    CHECK(dsr1_eval(ctx, tok, n, 0, 0) == DSR1_OK, "eval");
done:
    free(hid);
    free(lb);
    free(ls);
    dsr1_context_free(ctx);
    dsr1_model_free(m);
}

/* ---- errors name the key or tensor ------------------------------------- */

/* Load a copy of the file with the first occurrence of `from` replaced by
 * `to` (same length); expect failure mentioning `want`. */
static void expect_error(const unsigned char *buf, size_t size, const char *from, const char *to, const char *want)
{
    unsigned char *copy = malloc(size);
    if (!copy)
        return;
    memcpy(copy, buf, size);
    size_t lf = strlen(from);
    int done = 0;
    for (size_t i = 0; i + lf <= size && !done; i++)
        if (memcmp(copy + i, from, lf) == 0) {
            memcpy(copy + i, to, lf);
            done = 1;
        }
    CHECK(done, "'%s' not found in the file", from);
    dsr1_model *m = NULL;
    dsr1_status st = dsr1_model_load_from_memory(copy, size, NULL, &m);
    CHECK(st != DSR1_OK && strstr(dsr1_last_error(), want), "renaming '%s': status %d, message '%s'", from, st,
          dsr1_last_error());
    dsr1_model_free(m);
    free(copy);
}

static void test_errors(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s.gguf", data_dir, name);
    size_t size = 0;
    unsigned char *buf = read_bytes(path, &size);
    CHECK(buf != NULL, "cannot read %s", path);
    if (!buf)
        return;
    expect_error(buf, size, "deepseek2.expert_count", "deepseek2.expert_counX", "deepseek2.expert_count");
    expect_error(buf, size, "deepseek2.attention.kv_lora_rank", "deepseek2.attention.kv_lora_ranX",
                 "deepseek2.attention.kv_lora_rank");
    expect_error(buf, size, "blk.1.ffn_up_exps.weight", "blk.1.ffn_up_exps.weighX", "blk.1.ffn_up_exps.weight");
    expect_error(buf, size, "blk.0.attn_k_b.weight", "blk.0.attn_k_X.weight", "blk.0.attn_k_b.weight");
    expect_error(buf, size, "blk.2.nextn.enorm.weight", "blk.2.nextn.enorX.weight", "blk.2.nextn.enorm.weight");
    printf("%s: load errors name the key / tensor\n", name);
    free(buf);
}

/* ---- memory: only touched weights are paged in ------------------------- */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = atol(line + 6);
    fclose(f);
    return v;
}

static void test_rss(const char *name)
{
    long before = rss_kib();
    dsr1_token tok[64];
    int n_vocab = 0;
    int n = read_manifest(name, tok, 64, &n_vocab);
    dsr1_model *m = load(name);
    if (!m || n <= 0 || before < 0) {
        dsr1_model_free(m);
        return;
    }
    dsr1_context *ctx = new_ctx(m, 64, 64);
    for (int i = 0; ctx && i < 4; i++)
        CHECK(dsr1_eval(ctx, tok + i, 1, i, 0) == DSR1_OK, "eval");
    long after = rss_kib();
    uint64_t file_kib = dsr1_model_size_bytes(m) / 1024;
    /* informative only: the tiny model is smaller than a few pages per expert */
    printf("%s: RSS grew by %ld KiB after a 4-token decode; weights %llu KiB\n", name, after - before,
           (unsigned long long)file_kib);
    dsr1_context_free(ctx);
    dsr1_model_free(m);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    data_dir = argv[1];
    const char *names[] = {"deepseek2-f16", "deepseek2-q8_0", "deepseek2-q4_k_m"};
    for (int i = 0; i < 3; i++)
        test_fixture(names[i]);
    /* R1's dynamic low-bit layout: lattice-type experts and projections */
    const char *iq_names[] = {"deepseek2-iq1_s", "deepseek2-iq2_xxs", "deepseek2-iq3_xxs"};
    for (int i = 0; i < 3; i++)
        test_fixture(iq_names[i]);
    for (int i = 0; i < 3; i++)
        test_fixture_f16(names[i]);
    printf("f16 KV cache: max|diff| vs strict %.3g over the fixtures (tolerance %.0e)\n", (double)worst_f16,
           (double)F16_TOL);
    test_legacy_kv_b("deepseek2-f16");
    test_long("deepseek2-q4_k_m", 1100, DSR1_KV_F32);
    test_long("deepseek2-q4_k_m", 1100, DSR1_KV_F16); /* both paths read the same rounded latents */
    test_mtp("deepseek2-f16");
    test_errors("deepseek2-q4_k_m");
    test_rss("deepseek2-f16");
    if (failures)
        printf("%d failure(s)\n", failures);
    else
        printf("all deepseek2 tests passed\n");
    return failures ? 1 : 0;
}
