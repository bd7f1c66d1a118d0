/*
 * Context shift (dsr1_context_shift, and generations with ctx_policy
 * DSR1_CTX_SHIFT).
 *
 *   test_shift DATA_DIR    (DATA_DIR/models/{qwen2-f32,llama-f16,deepseek2-f16}.gguf)
 *
 * The three fixtures cover the rotations: qwen2 NEOX pairs, llama adjacent
 * pairs with the llama3 divisors (rope_freqs.weight), deepseek2 YaRN (factor
 * 4) on the rope part of MLA's latent cache, and its MTP cache layer.
 *
 * Cache: after a shift every layer holds, below n_keep, the same rows bit
 * for bit; above, the values of the moved positions bit for bit, and their
 * keys rotated (each head's norm kept, MLA's latent part bit for bit). At
 * layer 0 a key depends only on its token and position, so there the moved
 * keys must equal the keys a fresh context caches for the kept tokens.
 *
 * Logits: in a deeper model the moved entries keep what they attended to
 * when they were evaluated (the dropped tokens too), so only a one-layer
 * model's shifted cache is what evaluating the kept tokens from scratch
 * gives. Each fixture is therefore also run as a one-layer model (its
 * first layer and its output head): a stream of four n_ctx of tokens,
 * shifted whenever full, must give at every step the logits of a fresh
 * context that evaluates the tokens kept, within the cache's tolerance.
 * The tolerances and the measured worst cases are printed.
 *
 * Bad arguments give their status and message and change nothing; a shift
 * during a generation is DSR1_ERR_STATE. With a Vulkan device the logits
 * test runs with the layer on the device for qwen2 and llama (skipped,
 * saying so, without one).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"
#include "model/context.h"
#include "model/model.h"
#include "check.h"

#define N_CTX 48
#define N_BATCH 8
#define N_KEEP 5

/* Logit tolerances of the one-layer comparison (measured worst cases about
 * 10x below them, printed): f32 keys rotated once more than fresh ones
 * differ by float rounding (about 1e-6); f16 keys are also rounded to f16
 * once more (about 5e-4 on these logits). */
#define TOL_F32 1e-5f
#define TOL_F16 5e-3f

static const char *data_dir;

static dsr1_model *load(const char *name, int one_layer, int on_device)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s.gguf", data_dir, name);
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    dsr1_model *m = NULL;
    if (dsr1_model_load(path, &mp, &m) != DSR1_OK) {
        CHECK(0, "cannot load %s: %s", path, dsr1_last_error());
        return NULL;
    }
    if (one_layer) { /* its first layer and the output head; no MTP block */
        m->hp.n_layer = 1;
        m->hp.n_nextn_layers = 0;
    }
    if (on_device && dsri_model_place_from_params(m, 1, NULL) != DSR1_OK) {
        CHECK(0, "%s with a layer on the device: %s", name, dsr1_last_error());
        dsr1_model_free(m);
        return NULL;
    }
    return m;
}

static dsr1_context *new_ctx(const dsr1_model *m, int32_t n_ctx, int32_t n_batch, dsr1_kv_type kv)
{
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_threads = 2;
    cp.kv_type = kv;
    dsr1_context *c = NULL;
    CHECK(dsr1_context_new(m, &cp, &c) == DSR1_OK, "context: %s", dsr1_last_error());
    return c;
}

static dsr1_token token_at(int i, int32_t n_vocab)
{
    return (dsr1_token)((i * 97 + 11) % n_vocab);
}

static const char *kv_name(dsr1_kv_type kv)
{
    return kv == DSR1_KV_F16 ? "f16" : "f32";
}

/* Every cache row of every layer as f32: [layer][pos][k | v]. */
static float *read_cache(dsr1_context *c, int32_t n_rows)
{
    const dsr1_model *m = dsr1_context_model(c);
    const int64_t w = m->kv_k_width + m->kv_v_width;
    const int L = c->n_cache_layers;
    float *all = malloc((size_t)L * (size_t)n_rows * (size_t)w * sizeof *all);
    for (int l = 0; l < L; l++)
        for (int32_t p = 0; p < n_rows; p++) {
            float *row = all + ((size_t)l * (size_t)n_rows + (size_t)p) * (size_t)w;
            CHECK(dsri_ctx_k_f32(c, l, p, row) == DSR1_OK && dsri_ctx_v_f32(c, l, p, row + m->kv_k_width) == DSR1_OK,
                  "reading cache row %d of layer %d", p, l);
        }
    return all;
}

static double norm(const float *v, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)v[i] * (double)v[i];
    return sqrt(s);
}

/* The rotated groups of a cached key row: n_groups of `width` values from
 * column `first`, `stride` apart (dense: each kv head; MLA: the rope part). */
typedef struct key_layout {
    int64_t first, width, stride;
    int n_groups;
} key_layout;

static key_layout layout_of(const dsr1_model *m)
{
    key_layout k;
    if (m->hp.kv_lora_rank > 0) {
        k.first = m->hp.kv_lora_rank;
        k.width = m->hp.rope_dim;
        k.stride = 0;
        k.n_groups = 1;
    } else {
        k.first = 0;
        k.width = m->hp.head_dim_k;
        k.stride = m->hp.head_dim_k;
        k.n_groups = m->hp.n_head_kv;
    }
    return k;
}

/* The cache after a shift against the cache before it and, at layer 0,
 * against a fresh evaluation of the kept tokens. */
static void cache_rows(const char *name, dsr1_kv_type kv)
{
    dsr1_model *m = load(name, 0, 0);
    if (!m)
        return;
    const int32_t n_vocab = dsr1_model_n_vocab(m), n_past = 44, n_discard = 17;
    const int32_t n_after = n_past - n_discard;
    dsr1_context *a = new_ctx(m, N_CTX, N_BATCH, kv), *b = new_ctx(m, N_CTX, N_BATCH, kv);
    dsr1_token toks[64], kept[64];
    for (int i = 0; i < n_past; i++)
        toks[i] = token_at(i, n_vocab);
    memcpy(kept, toks, N_KEEP * sizeof *toks);
    memcpy(kept + N_KEEP, toks + N_KEEP + n_discard, (size_t)(n_past - N_KEEP - n_discard) * sizeof *toks);
    CHECK(dsr1_eval(a, toks, n_past, 0, 0) == DSR1_OK, "%s: eval: %s", name, dsr1_context_errmsg(a));
    CHECK(dsr1_eval(b, kept, n_after, 0, 0) == DSR1_OK, "%s: fresh eval: %s", name, dsr1_context_errmsg(b));
    float *before = read_cache(a, n_past);
    CHECK(dsr1_context_shift(a, N_KEEP, n_discard) == DSR1_OK, "%s: shift: %s", name, dsr1_context_errmsg(a));
    CHECK(dsr1_context_n_past(a) == n_after, "%s: n_past %d after the shift, not %d", name, dsr1_context_n_past(a),
          n_after);
    CHECK(dsr1_logits(a, -1) == NULL, "%s: the logits of before the shift are still offered", name);
    float *after = read_cache(a, n_after), *fresh = read_cache(b, n_after);

    const int64_t kw = m->kv_k_width, w = kw + m->kv_v_width;
    const key_layout kl = layout_of(m);
    int rows_kept = 1, values_moved = 1, unrotated_moved = 1, rotated = 1;
    double worst_norm = 0.0, worst_l0 = 0.0, scale_l0 = 0.0;
    for (int l = 0; l < a->n_cache_layers; l++)
        for (int32_t p = 0; p < n_after; p++) {
            const float *now = after + ((size_t)l * (size_t)n_after + (size_t)p) * (size_t)w;
            const int32_t from = p < N_KEEP ? p : p + n_discard;
            const float *was = before + ((size_t)l * (size_t)n_past + (size_t)from) * (size_t)w;
            if (p < N_KEEP) {
                rows_kept &= memcmp(now, was, (size_t)w * sizeof *now) == 0;
                continue;
            }
            values_moved &= memcmp(now + kw, was + kw, (size_t)(w - kw) * sizeof *now) == 0;
            unrotated_moved &= memcmp(now, was, (size_t)kl.first * sizeof *now) == 0;
            rotated &= memcmp(now + kl.first, was + kl.first, (size_t)kl.width * sizeof *now) != 0;
            for (int g = 0; g < kl.n_groups; g++) {
                const int64_t at = kl.first + g * kl.stride;
                double n0 = norm(was + at, kl.width), n1 = norm(now + at, kl.width);
                double rel = fabs(n1 - n0) / (n0 > 1e-30 ? n0 : 1e-30);
                worst_norm = rel > worst_norm ? rel : worst_norm;
            }
            if (l == 0) {
                const float *want = fresh + (size_t)p * (size_t)w;
                for (int64_t i = 0; i < w; i++) {
                    double d = fabs((double)now[i] - (double)want[i]);
                    worst_l0 = d > worst_l0 ? d : worst_l0;
                    scale_l0 = fabs((double)want[i]) > scale_l0 ? fabs((double)want[i]) : scale_l0;
                }
            }
        }
    /* one more rounding of each rotated key: f32 a few ulp (measured about
     * 1e-7 relative), f16 up to an ulp of f16 (measured about 5e-4) */
    const double tol = kv == DSR1_KV_F16 ? 2e-3 : 1e-6;
    CHECK(rows_kept, "%s %s: the first %d rows changed", name, kv_name(kv), N_KEEP);
    CHECK(values_moved, "%s %s: a moved value row is not the one of its old position", name, kv_name(kv));
    CHECK(unrotated_moved, "%s %s: the latent part of a moved key changed", name, kv_name(kv));
    CHECK(rotated, "%s %s: a moved key was not rotated", name, kv_name(kv));
    CHECK(worst_norm <= tol, "%s %s: a rotated key's norm changed by %.3g (relative)", name, kv_name(kv), worst_norm);
    CHECK(worst_l0 <= tol * scale_l0, "%s %s: layer 0 differs from a fresh evaluation of the kept tokens by %.3g "
          "(values up to %.3g)", name, kv_name(kv), worst_l0, scale_l0);
    printf("%s %s cache: %d layers, %d rows moved by %d; rotated key norms within %.2g, layer 0 within %.2g of "
           "a fresh evaluation (values up to %.2g)\n",
           name, kv_name(kv), a->n_cache_layers, n_after - N_KEEP, n_discard, worst_norm, worst_l0, scale_l0);
    free(before);
    free(after);
    free(fresh);
    dsr1_context_free(a);
    dsr1_context_free(b);
    dsr1_model_free(m);
}

static float max_abs_diff(const float *x, const float *y, int32_t n)
{
    float d = 0.0f;
    for (int32_t i = 0; i < n; i++)
        d = fabsf(x[i] - y[i]) > d ? fabsf(x[i] - y[i]) : d;
    return d;
}

/* The logits of a fresh evaluation of hist[0..n) in ref, against row. */
static float against_fresh(dsr1_context *ref, const dsr1_token *hist, int32_t n, const float *row)
{
    const int32_t n_vocab = dsr1_model_n_vocab(dsr1_context_model(ref));
    if (dsr1_eval(ref, hist, n, 0, 0) != DSR1_OK) {
        CHECK(0, "fresh evaluation: %s", dsr1_context_errmsg(ref));
        return INFINITY;
    }
    return max_abs_diff(dsr1_logits(ref, -1), row, n_vocab);
}

/* A one-layer model fed four n_ctx of tokens (three at a time), shifted
 * by half of what follows the kept tokens whenever the next batch does not
 * fit: each batch's logits against a fresh evaluation of what is kept. */
static void one_layer_stream(const char *name, dsr1_kv_type kv, int on_device)
{
    dsr1_model *m = load(name, 1, on_device);
    if (!m)
        return;
    const int32_t n_vocab = dsr1_model_n_vocab(m);
    dsr1_context *a = new_ctx(m, N_CTX, N_BATCH, kv), *ref = new_ctx(m, N_CTX, N_BATCH, kv);
    dsr1_token hist[N_CTX];
    int32_t n = 0, shifts = 0;
    float worst = 0.0f;
    const float tol = kv == DSR1_KV_F16 ? TOL_F16 : TOL_F32;
    for (int fed = 0; fed < 4 * N_CTX; fed += 3) {
        if (n + 3 > N_CTX) {
            const int32_t d = (n - N_KEEP) / 2;
            CHECK(dsr1_context_shift(a, N_KEEP, d) == DSR1_OK, "%s: shift: %s", name, dsr1_context_errmsg(a));
            memmove(hist + N_KEEP, hist + N_KEEP + d, (size_t)(n - N_KEEP - d) * sizeof *hist);
            n -= d;
            shifts++;
        }
        for (int i = 0; i < 3; i++)
            hist[n + i] = token_at(fed + i + 1000, n_vocab);
        if (dsr1_eval(a, hist + n, 3, n, 0) != DSR1_OK) {
            CHECK(0, "%s: eval at %d: %s", name, n, dsr1_context_errmsg(a));
            break;
        }
        n += 3;
        float d = against_fresh(ref, hist, n, dsr1_logits(a, -1));
        worst = d > worst ? d : worst;
    }
    CHECK(shifts >= 6, "%s: only %d shifts", name, shifts);
    CHECK(worst <= tol, "%s %s%s one layer: the logits after shifts differ from a fresh evaluation by %g (tolerance %g)",
          name, kv_name(kv), on_device ? " on the device" : "", (double)worst, (double)tol);
    printf("%s %s%s one layer: %d tokens through n_ctx %d, %d shifts; logits within %.3g of a fresh evaluation "
           "(tolerance %g)\n", name, kv_name(kv), on_device ? " on the Vulkan device" : "", 4 * N_CTX, N_CTX, shifts,
           (double)worst, (double)tol);
    dsr1_context_free(a);
    dsr1_context_free(ref);
    dsr1_model_free(m);
}

/* Refused arguments: a status, a message, and nothing changed. */
static void bad_arguments(const char *name)
{
    dsr1_model *m = load(name, 0, 0);
    if (!m)
        return;
    const int32_t n_vocab = dsr1_model_n_vocab(m);
    dsr1_context *c = new_ctx(m, N_CTX, N_BATCH, DSR1_KV_F16);
    dsr1_token toks[20];
    for (int i = 0; i < 20; i++)
        toks[i] = token_at(i, n_vocab);
    CHECK(dsr1_eval(c, toks, 20, 0, 0) == DSR1_OK, "eval: %s", dsr1_context_errmsg(c));
    static const int32_t bad[][2] = {{-1, 4}, {21, 1}, {5, 0}, {5, -3}, {5, 16}, {20, 1}, {0, 21}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsr1_status st = dsr1_context_shift(c, bad[i][0], bad[i][1]);
        CHECK(st == DSR1_ERR_INVALID_ARGUMENT && strstr(dsr1_context_errmsg(c), "dsr1_context_shift") &&
                  strstr(dsr1_context_errmsg(c), bad[i][0] < 0 || bad[i][0] > 20 ? "n_keep" : "n_discard"),
              "shift(%d, %d): %s, \"%s\"", bad[i][0], bad[i][1], dsr1_status_string(st), dsr1_context_errmsg(c));
        CHECK(dsr1_context_n_past(c) == 20 && dsr1_logits(c, -1) != NULL, "a refused shift changed the context");
    }
    CHECK(dsr1_context_shift(NULL, 0, 1) == DSR1_ERR_INVALID_ARGUMENT, "NULL context");
    /* the whole rest: the same as a truncation */
    CHECK(dsr1_context_shift(c, 5, 15) == DSR1_OK && dsr1_context_n_past(c) == 5, "shift(5, 15): %s",
          dsr1_context_errmsg(c));

    dsr1_sampler_params sp;
    dsr1_sampler_params_default(&sp, sizeof sp);
    dsr1_sampler *s = NULL;
    CHECK(dsr1_sampler_new(n_vocab, &sp, &s) == DSR1_OK, "sampler");
    dsr1_generation *g = NULL;
    CHECK(dsr1_generation_new(c, s, toks, 20, NULL, &g) == DSR1_OK, "generation: %s", dsr1_last_error());
    CHECK(dsr1_generation_step(g, NULL, NULL) == DSR1_OK, "step: %s", dsr1_generation_errmsg(g));
    const int32_t held = dsr1_context_n_past(c);
    dsr1_status st = dsr1_context_shift(c, 0, 4);
    CHECK(st == DSR1_ERR_STATE && strstr(dsr1_context_errmsg(c), "generation"),
          "shift during a generation: %s, \"%s\"", dsr1_status_string(st), dsr1_context_errmsg(c));
    CHECK(dsr1_context_n_past(c) == held, "a refused shift changed n_past");
    dsr1_generation_free(g);
    CHECK(dsr1_context_shift(c, 0, 4) == DSR1_OK, "shift after the generation: %s", dsr1_context_errmsg(c));
    dsr1_sampler_free(s);
    dsr1_context_free(c);
    dsr1_model_free(m);
}

int main(int argc, char **argv)
{
    data_dir = argc > 1 ? argv[1] : "tests/data";
    static const char *const models[] = {"qwen2-f32", "llama-f16", "deepseek2-f16"};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++) {
            dsr1_kv_type kv = k ? DSR1_KV_F16 : DSR1_KV_F32;
            cache_rows(models[i], kv);
            one_layer_stream(models[i], kv, 0);
        }
    bad_arguments("qwen2-f32");
    /* (deepseek2 does not run on the Vulkan backend yet: its rope op refuses
     * the per-head query view of MLA) */
    if (dsr1_device_count() > 0)
        for (int i = 0; i < 2; i++)
            one_layer_stream(models[i], DSR1_KV_F16, 1);
    else
        printf("SKIP the shift with the layer on a device: no Vulkan device (%s)\n", dsr1_last_error());
    return check_summary("test_shift");
}
