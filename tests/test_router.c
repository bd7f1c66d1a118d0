/*
 * The DeepSeek mixture-of-experts router (lib/model/moe_router.c) on
 * synthetic logits: gating functions, the selection bias, group limits, ties
 * (the lower index wins), normalisation and scaling, configuration checks.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/moe_router.h"
#include "check.h"


#define MAXE 64

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* logit whose sigmoid is p */
static float logit(float p) { return logf(p / (1.0f - p)); }

static void route(const dsri_router_config *c, const float *logits, const float *bias, int32_t *ids, float *w)
{
    float work[4 * MAXE];
    CHECK(dsri_router_work_floats(c) <= 4 * MAXE, "work size");
    CHECK(dsri_router_check(c) == 0, "config rejected");
    dsri_router_route(c, logits, bias, work, ids, w);
}

static int has(const int32_t *ids, int n, int e)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == e)
            return 1;
    return 0;
}

static void test_plain_topk(void)
{
    /* 8 experts, no groups, sigmoid, no norm, scale 1 */
    dsri_router_config c = {8, 3, 1, 1, 2, 0, 1.0f};
    float lg[8] = {0.1f, 2.0f, -1.0f, 1.5f, 0.3f, 3.0f, -2.0f, 0.0f};
    int32_t ids[3];
    float w[3];
    route(&c, lg, NULL, ids, w);
    CHECK(ids[0] == 5 && ids[1] == 1 && ids[2] == 3, "top-3 order %d %d %d", ids[0], ids[1], ids[2]);
    CHECK(fabsf(w[0] - sigmoid(3.0f)) < 1e-7f && fabsf(w[1] - sigmoid(2.0f)) < 1e-7f &&
              fabsf(w[2] - sigmoid(1.5f)) < 1e-7f,
          "weights are the sigmoid scores");
}

static void test_bias_only_for_choice(void)
{
    dsri_router_config c = {8, 2, 1, 1, 2, 0, 1.0f};
    float lg[8] = {logit(0.9f), logit(0.8f), logit(0.1f), logit(0.2f), logit(0.3f), logit(0.4f), logit(0.5f),
                   logit(0.6f)};
    float bias[8] = {0, 0, 1.0f, 0, 0, 0, 0, 0.5f};
    int32_t ids[2];
    float w[2];
    route(&c, lg, bias, ids, w);
    /* biased: e2 = 1.1, e7 = 1.1, e0 = 0.9: the tie 2 vs 7 goes to 2 */
    CHECK(ids[0] == 2 && ids[1] == 7, "biased choice %d %d", ids[0], ids[1]);
    CHECK(fabsf(w[0] - 0.1f) < 1e-6f && fabsf(w[1] - 0.6f) < 1e-6f, "weights unbiased: %g %g", (double)w[0],
          (double)w[1]);
}

static void test_ties(void)
{
    dsri_router_config c = {6, 3, 1, 1, 2, 0, 1.0f};
    float lg[6] = {1, 1, 1, 1, 1, 1};
    int32_t ids[3];
    float w[3];
    route(&c, lg, NULL, ids, w);
    CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 2, "all equal: lowest indices first (%d %d %d)", ids[0], ids[1],
          ids[2]);
    /* group ties: 4 groups of 2, equal group scores: groups 0 and 1 kept */
    dsri_router_config g = {8, 2, 4, 2, 2, 0, 1.0f};
    float lg2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int32_t id2[2];
    float w2[2];
    route(&g, lg2, NULL, id2, w2);
    CHECK(id2[0] == 0 && id2[1] == 1, "tied groups: %d %d", id2[0], id2[1]);
}

static void test_groups(void)
{
    /* 16 experts in 4 groups of 4, keep 2 groups, pick 4 */
    dsri_router_config c = {16, 4, 4, 2, 2, 0, 1.0f};
    float p[16] = {
        /* g0: one big expert, top-2 sum 0.99 + 0.01 = 1.00 */
        0.99f, 0.01f, 0.01f, 0.01f,
        /* g1: top-2 sum 0.6 + 0.6 = 1.2 */
        0.6f, 0.6f, 0.1f, 0.1f,
        /* g2: top-2 sum 0.55 + 0.55 = 1.1 */
        0.55f, 0.55f, 0.55f, 0.2f,
        /* g3: top-2 sum 0.5 + 0.5 = 1.0 */
        0.5f, 0.5f, 0.02f, 0.02f};
    float lg[16];
    for (int i = 0; i < 16; i++)
        lg[i] = logit(p[i]);
    int32_t ids[4];
    float w[4];
    route(&c, lg, NULL, ids, w);
    /* kept groups: g1 (1.2) and g2 (1.1); e0 (0.99) is excluded although it
     * is the best single expert */
    CHECK(!has(ids, 4, 0), "expert 0 of a dropped group was chosen");
    CHECK(ids[0] == 4 && ids[1] == 5 && ids[2] == 8 && ids[3] == 9, "grouped choice %d %d %d %d", ids[0], ids[1],
          ids[2], ids[3]);
    /* the group score uses the biased scores: a bias lifts group 3 */
    float bias[16] = {0};
    bias[12] = 0.3f;
    route(&c, lg, bias, ids, w);
    /* g3: 0.8 + 0.5 = 1.3 > g1 1.2 > g2 1.1: kept g3, g1 */
    CHECK(ids[0] == 12 && has(ids, 4, 4) && has(ids, 4, 5) && has(ids, 4, 13), "biased groups %d %d %d %d",
          ids[0], ids[1], ids[2], ids[3]);
    CHECK(fabsf(w[0] - 0.5f) < 1e-6f, "weight of expert 12 is its unbiased score: %g", (double)w[0]);
    /* no group limit when all groups are kept */
    dsri_router_config all = {16, 4, 4, 4, 2, 0, 1.0f};
    route(&all, lg, NULL, ids, w);
    CHECK(ids[0] == 0, "all groups kept: best expert %d", ids[0]);
}

static void test_norm_scale(void)
{
    dsri_router_config c = {8, 4, 1, 1, 2, 1, 2.5f};
    float p[8] = {0.9f, 0.1f, 0.7f, 0.2f, 0.5f, 0.3f, 0.05f, 0.6f};
    float lg[8];
    for (int i = 0; i < 8; i++)
        lg[i] = logit(p[i]);
    int32_t ids[4];
    float w[4];
    route(&c, lg, NULL, ids, w);
    float sum = 0.9f + 0.7f + 0.6f + 0.5f;
    CHECK(ids[0] == 0 && ids[1] == 2 && ids[2] == 7 && ids[3] == 4, "choice %d %d %d %d", ids[0], ids[1], ids[2],
          ids[3]);
    CHECK(fabsf(w[0] - 0.9f / sum * 2.5f) < 1e-5f && fabsf(w[3] - 0.5f / sum * 2.5f) < 1e-5f,
          "normalised x2.5: %g %g", (double)w[0], (double)w[3]);
    float tot = w[0] + w[1] + w[2] + w[3];
    CHECK(fabsf(tot - 2.5f) < 1e-5f, "weights sum to the scale: %g", (double)tot);
    /* without norm: just scaled */
    c.norm = 0;
    route(&c, lg, NULL, ids, w);
    CHECK(fabsf(w[0] - 0.9f * 2.5f) < 1e-5f, "scaled only: %g", (double)w[0]);
}

static void test_softmax(void)
{
    dsri_router_config c = {4, 2, 1, 1, 1, 0, 1.0f};
    float lg[4] = {1.0f, 2.0f, 0.0f, 3.0f};
    int32_t ids[2];
    float w[2];
    route(&c, lg, NULL, ids, w);
    float z = expf(1.0f) + expf(2.0f) + expf(0.0f) + expf(3.0f);
    CHECK(ids[0] == 3 && ids[1] == 1, "softmax choice %d %d", ids[0], ids[1]);
    CHECK(fabsf(w[0] - expf(3.0f) / z) < 1e-6f && fabsf(w[1] - expf(2.0f) / z) < 1e-6f,
          "softmax weights over all experts");
    c.norm = 1;
    route(&c, lg, NULL, ids, w);
    CHECK(fabsf(w[0] + w[1] - 1.0f) < 1e-6f, "normalised softmax weights");
}

/* ids[0..k) are k distinct experts in [0, n) */
static int distinct_valid(const int32_t *ids, int k, int n)
{
    for (int i = 0; i < k; i++) {
        if (ids[i] < 0 || ids[i] >= n)
            return 0;
        for (int j = 0; j < i; j++)
            if (ids[j] == ids[i])
                return 0;
    }
    return 1;
}

/* Issue 17, finding 1: a -inf (or NaN) selection bias made the argmax return
 * -1, every slot fell back to expert 0 (duplicates: the MoE gathered n*K rows
 * into buffers sized for n) and a group all -inf read v[-1]. Whatever the
 * scores, the experts must be distinct and valid. */
static void test_hostile_scores(void)
{
    dsri_router_config flat = {16, 4, 1, 1, 2, 1, 1.0f};
    dsri_router_config grouped = {16, 4, 4, 2, 2, 1, 1.0f};
    dsri_router_config soft = {16, 4, 4, 2, 1, 1, 1.0f};
    const dsri_router_config *cfgs[3] = {&flat, &grouped, &soft};
    float lg[16], bias[16];
    int32_t ids[4];
    float w[4];
    for (int ci = 0; ci < 3; ci++) {
        const dsri_router_config *c = cfgs[ci];
        /* every bias -inf */
        for (int i = 0; i < 16; i++) {
            lg[i] = (float)i * 0.1f;
            bias[i] = -INFINITY;
        }
        route(c, lg, bias, ids, w);
        CHECK(distinct_valid(ids, 4, 16), "cfg %d, all -inf: %d %d %d %d", ci, ids[0], ids[1], ids[2], ids[3]);
        /* one group all -inf, the others finite: the finite ones win */
        for (int i = 0; i < 16; i++)
            bias[i] = i < 4 ? -INFINITY : 0.0f;
        route(c, lg, bias, ids, w);
        CHECK(distinct_valid(ids, 4, 16) && !has(ids, 4, 0) && !has(ids, 4, 1), "cfg %d, group 0 -inf: %d %d %d %d",
              ci, ids[0], ids[1], ids[2], ids[3]);
        /* NaN biases rank below everything, -inf included */
        for (int i = 0; i < 16; i++)
            bias[i] = i % 2 ? NAN : -INFINITY;
        route(c, lg, bias, ids, w);
        CHECK(distinct_valid(ids, 4, 16), "cfg %d, NaN and -inf: %d %d %d %d", ci, ids[0], ids[1], ids[2], ids[3]);
        CHECK(ci == 1 || ids[0] % 2 == 0, "cfg %d: a NaN expert ranked above a -inf one (%d)", ci, ids[0]);
        /* NaN and infinite logits, no bias */
        for (int i = 0; i < 16; i++)
            lg[i] = i % 3 == 0 ? NAN : i % 3 == 1 ? INFINITY : -INFINITY;
        route(c, lg, NULL, ids, w);
        CHECK(distinct_valid(ids, 4, 16), "cfg %d, non-finite logits: %d %d %d %d", ci, ids[0], ids[1], ids[2],
              ids[3]);
    }
}

static void test_check(void)
{
    dsri_router_config ok = {256, 8, 8, 4, 2, 1, 2.5f};
    CHECK(dsri_router_check(&ok) == 0, "DeepSeek-V3 router rejected");
    dsri_router_config bad1 = {10, 2, 4, 2, 2, 1, 1.0f}; /* groups do not divide */
    dsri_router_config bad2 = {16, 9, 4, 2, 2, 1, 1.0f}; /* 2 groups of 4 < 9 */
    dsri_router_config bad3 = {16, 4, 4, 5, 2, 1, 1.0f}; /* more groups kept than exist */
    dsri_router_config bad4 = {16, 4, 4, 2, 3, 1, 1.0f}; /* unknown gating */
    dsri_router_config bad5 = {16, 17, 1, 1, 2, 1, 1.0f};
    CHECK(dsri_router_check(&bad1) != 0 && dsri_router_check(&bad2) != 0 && dsri_router_check(&bad3) != 0 &&
              dsri_router_check(&bad4) != 0 && dsri_router_check(&bad5) != 0,
          "invalid configurations accepted");
}

int main(void)
{
    test_plain_topk();
    test_bias_only_for_choice();
    test_ties();
    test_groups();
    test_norm_scale();
    test_softmax();
    test_hostile_scores();
    test_check();
    if (failures)
        printf("%d failure(s)\n", failures);
    else
        printf("all router tests passed\n");
    return failures ? 1 : 0;
}
