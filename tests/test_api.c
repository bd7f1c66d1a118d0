/*
 * The public API's contracts: versions, status strings, parameter structs,
 * argument checking, error messages, metadata and tensor queries, backend
 * selection, cache editing, and two contexts on two threads.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"

static int failures;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            printf("FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, \
                   #cond, dsr1_last_error());                               \
            failures++;                                                     \
        }                                                                   \
    } while (0)

static char model_path[1024];

static void test_basics(void)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", DSR1_VERSION_MAJOR, DSR1_VERSION_MINOR, DSR1_VERSION_PATCH);
    CHECK(strcmp(dsr1_version(), want) == 0);
    CHECK(dsr1_abi_version() == DSR1_ABI_VERSION);
    for (int s = 0; s <= DSR1_ERR_INTERNAL; s++)
        CHECK(strncmp(dsr1_status_string((dsr1_status)s), "DSR1_", 5) == 0);
    CHECK(strstr(dsr1_status_string((dsr1_status)999), "UNKNOWN") != NULL);
    CHECK(strcmp(dsr1_type_name(DSR1_TYPE_Q4_K), "q4_K") == 0);
    CHECK(strcmp(dsr1_type_name(12345), "unknown") == 0);
    CHECK(dsr1_backend_count() >= 1);
    CHECK(strcmp(dsr1_backend_name(dsr1_backend_count() - 1), "scalar") == 0 ||
          dsr1_backend_available("scalar"));
    CHECK(dsr1_backend_name(-1) == NULL);
    CHECK(!dsr1_backend_available("no-such-backend"));
}

static void test_load_errors(void)
{
    dsr1_model *m = (dsr1_model *)1;
    CHECK(dsr1_model_load("/nonexistent/model.gguf", NULL, &m) == DSR1_ERR_IO);
    CHECK(m == NULL);
    CHECK(strstr(dsr1_last_error(), "/nonexistent/model.gguf") != NULL);
    CHECK(dsr1_model_load(NULL, NULL, &m) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_model_load(model_path, NULL, NULL) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_model_load("/", NULL, &m) == DSR1_ERR_IO);
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    CHECK(mp.size == sizeof mp);
    mp.size = 0;
    CHECK(dsr1_model_load(model_path, &mp, &m) == DSR1_ERR_INVALID_ARGUMENT);
    /* an older caller's smaller struct is accepted */
    dsr1_model_params_default(&mp, sizeof mp);
    mp.size = offsetof(dsr1_model_params, log_callback);
    CHECK(dsr1_model_load(model_path, &mp, &m) == DSR1_OK);
    dsr1_model_free(m);
    dsr1_model_free(NULL);
}

static atomic_int log_lines; /* the callback runs on every thread that uses the model */
static void count_log(dsr1_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)msg;
    CHECK(ud == &log_lines);
    log_lines++;
}

static void test_model_queries(dsr1_model *m)
{
    CHECK(strcmp(dsr1_model_arch(m), "qwen2") == 0);
    CHECK(dsr1_model_n_vocab(m) == 303);
    CHECK(dsr1_model_n_embd(m) == 256);
    CHECK(dsr1_model_n_layer(m) > 0);
    CHECK(dsr1_model_n_head(m) == 4 && dsr1_model_n_head_kv(m) == 2);
    CHECK(dsr1_model_n_ctx_train(m) > 0);
    CHECK(dsr1_model_n_params(m) > 100000);
    CHECK(dsr1_model_size_bytes(m) > 0);

    char buf[64];
    size_t need = 0;
    CHECK(dsr1_model_meta_value(m, "general.architecture", buf, sizeof buf, &need) == DSR1_OK);
    CHECK(strcmp(buf, "qwen2") == 0 && need == 5);
    CHECK(dsr1_model_meta_value(m, "general.architecture", buf, 3, &need) == DSR1_ERR_BUFFER_TOO_SMALL);
    CHECK(need == 5);
    CHECK(dsr1_model_meta_value(m, "no.such.key", buf, sizeof buf, &need) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_model_meta_value(m, "qwen2.attention.head_count", buf, sizeof buf, &need) == DSR1_OK);
    CHECK(strcmp(buf, "4") == 0);
    char big[4096];
    CHECK(dsr1_model_meta_value(m, "tokenizer.ggml.tokens", big, sizeof big, &need) == DSR1_OK);
    CHECK(big[0] == '[' && strstr(big, "(303 items)]") != NULL);

    int64_t n_meta = dsr1_model_meta_count(m);
    CHECK(n_meta > 5);
    int found = 0;
    for (int64_t i = 0; i < n_meta; i++) {
        char key[128];
        CHECK(dsr1_model_meta_key(m, i, key, sizeof key, &need) == DSR1_OK);
        found += strcmp(key, "general.architecture") == 0;
    }
    CHECK(found == 1);
    CHECK(dsr1_model_meta_key(m, n_meta, buf, sizeof buf, &need) == DSR1_ERR_INVALID_ARGUMENT);

    int64_t n_t = dsr1_model_tensor_count(m);
    CHECK(n_t > 10);
    int saw_embd = 0;
    for (int64_t i = 0; i < n_t; i++) {
        dsr1_tensor_info ti;
        ti.size = sizeof ti;
        CHECK(dsr1_model_tensor_info(m, i, &ti) == DSR1_OK);
        if (strcmp(ti.name, "token_embd.weight") == 0) {
            saw_embd = 1;
            CHECK(ti.n_dims == 2 && ti.ne[0] == 256 && ti.ne[1] == 303);
            CHECK(ti.type == DSR1_TYPE_Q8_0 && ti.n_bytes == 303u * 256 / 32 * 34);
        }
    }
    CHECK(saw_embd);
    dsr1_tensor_info ti;
    ti.size = 3;
    CHECK(dsr1_model_tensor_info(m, 0, &ti) == DSR1_ERR_INVALID_ARGUMENT);
    /* an older caller's smaller struct gets only the fields it has */
    memset(&ti, 0x5a, sizeof ti);
    ti.size = offsetof(dsr1_tensor_info, n_bytes);
    CHECK(dsr1_model_tensor_info(m, 0, &ti) == DSR1_OK);
    CHECK(ti.size == offsetof(dsr1_tensor_info, n_bytes) && ti.name != NULL);
    CHECK(ti.n_bytes == 0x5a5a5a5a5a5a5a5aull);
}

static void test_context(dsr1_model *m)
{
    dsr1_context *ctx;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.backend = "vulkan";
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_ERR_UNSUPPORTED || dsr1_backend_available("vulkan"));
    cp.backend = "bogus";
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(strstr(dsr1_last_error(), "bogus") != NULL);
    /* the environment picks the backend when the params do not */
    cp.backend = NULL;
    setenv("DSR1_BACKEND", "bogus-from-env", 1);
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(strstr(dsr1_last_error(), "bogus-from-env") != NULL);
    setenv("DSR1_BACKEND", "scalar", 1);
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_OK);
    CHECK(strcmp(dsr1_context_backend(ctx), "scalar") == 0);
    dsr1_context_free(ctx);
    unsetenv("DSR1_BACKEND");
    cp.n_ctx = -1;
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_ERR_INVALID_ARGUMENT);
    cp.n_ctx = 16;
    CHECK(dsr1_context_new(m, &cp, &ctx) == DSR1_OK);
    CHECK(dsr1_context_n_ctx(ctx) == 16 && dsr1_context_n_past(ctx) == 0);
    CHECK(dsr1_context_model(ctx) == m);
    /* qwen2 fixture: kv width 2 heads x 64, keys and values, f16 (the
     * default: 2 bytes a value) */
    const uint64_t kv_values = (uint64_t)dsr1_model_n_layer(m) * 2 * 2 * 64;
    CHECK(dsr1_context_kv_bytes_per_token(ctx) == kv_values * 2);
    CHECK(dsr1_logits(ctx, -1) == NULL);
    {
        /* kv_type: f32 doubles it, f16 is the default, others are refused */
        dsr1_context *c2 = NULL;
        dsr1_context_params kp = cp;
        kp.kv_type = DSR1_KV_F32;
        CHECK(dsr1_context_new(m, &kp, &c2) == DSR1_OK && dsr1_context_kv_bytes_per_token(c2) == kv_values * 4);
        dsr1_context_free(c2);
        kp.kv_type = DSR1_KV_F16;
        CHECK(dsr1_context_new(m, &kp, &c2) == DSR1_OK && dsr1_context_kv_bytes_per_token(c2) == kv_values * 2);
        dsr1_context_free(c2);
        CHECK(cp.kv_type == DSR1_KV_DEFAULT);
        const int bad_kv[3] = {3, -1, 1000};
        for (int i = 0; i < 3; i++) {
            c2 = (dsr1_context *)&kp; /* must be reset to NULL */
            kp.kv_type = (dsr1_kv_type)bad_kv[i];
            CHECK(dsr1_context_new(m, &kp, &c2) == DSR1_ERR_INVALID_ARGUMENT && c2 == NULL);
            CHECK(strstr(dsr1_last_error(), "kv_type") != NULL);
        }
        /* an older caller's struct, without kv_type: the default, whatever
         * follows it in memory */
        struct {
            dsr1_context_params p;
            char junk[16];
        } old;
        memset(&old, 0x7f, sizeof old);
        dsr1_context_params_default(&old.p, offsetof(dsr1_context_params, kv_type));
        old.p.n_ctx = 16;
        CHECK(old.p.size == offsetof(dsr1_context_params, kv_type));
        CHECK(dsr1_context_new(m, &old.p, &c2) == DSR1_OK && dsr1_context_kv_bytes_per_token(c2) == kv_values * 2);
        dsr1_context_free(c2);
    }

    dsr1_token toks[20] = {295, 12, 7, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56};
    CHECK(dsr1_eval(ctx, toks, 0, 0, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_eval(ctx, toks, 3, 1, 0) == DSR1_ERR_INVALID_ARGUMENT); /* past n_past */
    dsr1_token bad = 303;
    CHECK(dsr1_eval(ctx, &bad, 1, 0, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(strstr(dsr1_last_error(), "303") != NULL);
    CHECK(dsr1_eval(ctx, toks, 17, 0, 0) == DSR1_ERR_CONTEXT_FULL);
    CHECK(dsr1_eval(ctx, toks, 3, 0, 99) == DSR1_ERR_INVALID_ARGUMENT);

    /* regenerate: evaluating 0..5 then rewinding to 3 gives the same logits */
    CHECK(dsr1_eval(ctx, toks, 6, 0, DSR1_EVAL_LOGITS_ALL) == DSR1_OK);
    CHECK(dsr1_context_n_past(ctx) == 6);
    float *want = malloc(303 * sizeof *want);
    memcpy(want, dsr1_logits(ctx, 4), 303 * sizeof *want);
    CHECK(dsr1_logits(ctx, 6) == NULL);
    CHECK(dsr1_context_truncate(ctx, 3) == DSR1_OK);
    CHECK(dsr1_context_n_past(ctx) == 3);
    CHECK(dsr1_eval(ctx, toks + 3, 2, 3, 0) == DSR1_OK);
    CHECK(memcmp(dsr1_logits(ctx, -1), want, 303 * sizeof *want) == 0);
    CHECK(dsr1_logits(ctx, 0) == NULL); /* only the last row without LOGITS_ALL */
    /* a different token at position 3, then back: the cache is overwritten */
    dsr1_token other = 100;
    CHECK(dsr1_eval(ctx, &other, 1, 3, 0) == DSR1_OK);
    CHECK(dsr1_eval(ctx, toks + 3, 2, 3, 0) == DSR1_OK);
    CHECK(memcmp(dsr1_logits(ctx, -1), want, 303 * sizeof *want) == 0);
    dsr1_context_reset(ctx);
    CHECK(dsr1_context_n_past(ctx) == 0);
    free(want);
    dsr1_context_free(ctx);
    dsr1_context_free(NULL);
}

typedef struct thread_job {
    dsr1_model *model;
    dsr1_token first;
    float logits[303];
    int ok;
} thread_job;

static void *run_job(void *arg)
{
    thread_job *j = arg;
    dsr1_context *ctx;
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = 32;
    j->ok = 0;
    if (dsr1_context_new(j->model, &cp, &ctx) != DSR1_OK)
        return NULL;
    dsr1_token toks[8] = {j->first, 1, 2, 3, 4, 5, 6, 7};
    for (int rep = 0; rep < 20; rep++) {
        if (dsr1_eval(ctx, toks, 8, 0, 0) != DSR1_OK)
            return NULL;
        /* each thread's error state is its own */
        dsr1_eval(ctx, toks, 0, 0, 0);
        if (strstr(dsr1_last_error(), "no tokens") == NULL)
            return NULL;
    }
    memcpy(j->logits, dsr1_logits(ctx, -1), sizeof j->logits);
    dsr1_context_free(ctx);
    j->ok = 1;
    return NULL;
}

static void test_threads(dsr1_model *m)
{
    thread_job a = {m, 295, {0}, 0}, b = {m, 10, {0}, 0}, a1 = {m, 295, {0}, 0}, b1 = {m, 10, {0}, 0};
    run_job(&a1);
    run_job(&b1);
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run_job, &a);
    pthread_create(&tb, NULL, run_job, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.ok && b.ok);
    CHECK(memcmp(a.logits, a1.logits, sizeof a.logits) == 0);
    CHECK(memcmp(b.logits, b1.logits, sizeof b.logits) == 0);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data";
    snprintf(model_path, sizeof model_path, "%s/models/qwen2-q8_0.gguf", dir);
    test_basics();
    test_load_errors();

    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.log_callback = count_log;
    mp.log_user_data = &log_lines;
    dsr1_model *m;
    CHECK(dsr1_model_load(model_path, &mp, &m) == DSR1_OK);
    CHECK(log_lines > 0);
    if (m) {
        test_model_queries(m);
        test_context(m);
        test_threads(m);
        dsr1_model_free(m);
    }
    /* silent by default: nothing to observe but no crash without a callback */
    printf("%d failures\n", failures);
    return failures != 0;
}
