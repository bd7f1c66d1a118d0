/*
 * libFuzzer target: the DeepSeek MoE router (lib/model/moe_router.c) on
 * arbitrary configurations and scores (NaN, infinities, subnormals, ties,
 * whole groups at -inf: issue 17's finding 1 made the router return -1 and
 * duplicates, and the MoE overran its buffers). Checks, for every input:
 * - a configuration dsri_router_check accepts is routed without touching
 *   memory past the work size it asked for (exact-size allocations, so
 *   AddressSanitizer sees any overrun);
 * - the n_used experts are distinct and in [0, n_expert), and come from at
 *   most n_group_used groups;
 * - with finite logits and a moderate scale, every weight is finite;
 * - the same input routes to the same experts twice (no hidden state).
 *   build-fuzz/fuzz/fuzz_router -timeout=5 CORPUS   (seeds: fuzz/corpus/router)
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/moe_router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t u8(reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

static uint32_t u32(reader *r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)u8(r) << (8 * i);
    return v;
}

/* A float: one of the values that break arithmetic, or raw bits. */
static float num(reader *r)
{
    static const float special[] = {0.0f,  -0.0f, 1.0f,     -1.0f,     0.5f,      1e-45f, -1e-45f, 1e-38f,
                                    3.4e38f, -3.4e38f, NAN, INFINITY, -INFINITY, 1e4f,  -1e4f,   88.0f, -88.0f};
    uint8_t sel = u8(r);
    if (sel < sizeof special / sizeof special[0])
        return special[sel];
    uint32_t bits = u32(r);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* A configuration: usually a consistent one (groups that divide the
 * experts, enough experts in the kept groups), sometimes raw values that
 * dsri_router_check must refuse or accept on its own. */
static void make_config(reader *r, dsri_router_config *c)
{
    uint8_t mode = u8(r);
    if (mode < 32) {
        c->n_expert = (int)(int8_t)u8(r);
        c->n_used = (int)(int8_t)u8(r);
        c->n_group = (int)(int8_t)u8(r);
        c->n_group_used = (int)(int8_t)u8(r);
        c->gating = (int)(int8_t)u8(r);
    } else {
        int per_group = 1 + u8(r) % 32;
        c->n_group = 1 + u8(r) % 8;
        c->n_expert = c->n_group * per_group;
        c->n_group_used = 1 + u8(r) % c->n_group;
        c->n_used = 1 + u8(r) % (c->n_group_used * per_group);
        c->gating = 1 + u8(r) % 2;
    }
    c->norm = u8(r) & 1;
    c->scale = num(r);
}

static void route_once(const dsri_router_config *c, const float *logits, const float *bias, int32_t *ids, float *w)
{
    int64_t n_work = dsri_router_work_floats(c);
    float *work = malloc((size_t)n_work * sizeof *work); /* exact: ASan sees an overrun */
    if (!work)
        abort();
    dsri_router_route(c, logits, bias, work, ids, w);
    free(work);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    dsri_router_config c;
    make_config(&r, &c);
    if (dsri_router_check(&c) != 0)
        return 0;
    const int n = c.n_expert;
    float *logits = malloc((size_t)n * sizeof *logits), *bias = malloc((size_t)n * sizeof *bias);
    int32_t *ids = malloc((size_t)c.n_used * sizeof *ids), *ids2 = malloc((size_t)c.n_used * sizeof *ids2);
    float *w = malloc((size_t)c.n_used * sizeof *w), *w2 = malloc((size_t)c.n_used * sizeof *w2);
    uint8_t *seen = calloc((size_t)n, 1), *group_seen = calloc((size_t)c.n_group, 1);
    if (!logits || !bias || !ids || !ids2 || !w || !w2 || !seen || !group_seen)
        abort();
    /* a fill value per array, then sparse overrides (a whole group at -inf
     * is one fill plus overrides of the other groups) */
    float fill_l = num(&r), fill_b = num(&r);
    for (int i = 0; i < n; i++) {
        logits[i] = fill_l;
        bias[i] = fill_b;
    }
    for (int k = u8(&r) % 64; k > 0; k--)
        logits[u32(&r) % (uint32_t)n] = num(&r);
    for (int k = u8(&r) % 64; k > 0; k--)
        bias[u32(&r) % (uint32_t)n] = num(&r);
    const float *b = (u8(&r) & 1) ? bias : NULL;

    route_once(&c, logits, b, ids, w);
    const int per_group = n / c.n_group;
    int n_groups = 0, finite = fabsf(c.scale) <= 1e6f;
    for (int i = 0; i < n; i++)
        finite &= isfinite(logits[i]) != 0;
    for (int j = 0; j < c.n_used; j++) {
        if (ids[j] < 0 || ids[j] >= n || seen[ids[j]])
            abort(); /* an invalid or duplicate expert */
        seen[ids[j]] = 1;
        if (!group_seen[ids[j] / per_group]++)
            n_groups++;
        if (finite && !isfinite(w[j]))
            abort();
    }
    if (n_groups > c.n_group_used)
        abort(); /* an expert of a group that was not kept */
    route_once(&c, logits, b, ids2, w2);
    if (memcmp(ids, ids2, (size_t)c.n_used * sizeof *ids) != 0)
        abort();

    free(logits);
    free(bias);
    free(ids);
    free(ids2);
    free(w);
    free(w2);
    free(seen);
    free(group_seen);
    return 0;
}
