/*
 * The DeepSeek mixture-of-experts router: see moe_router.h for the rules.
 * Plain model code (a few dozen values per token), not a backend op.
 */
#include "model/moe_router.h"

#include <math.h>

int dsri_router_check(const dsri_router_config *c)
{
    if (c->n_expert < 1 || c->n_used < 1 || c->n_used > c->n_expert)
        return -1;
    if (c->gating != 1 && c->gating != 2)
        return -1;
    if (c->n_group < 1 || c->n_expert % c->n_group != 0)
        return -1;
    if (c->n_group_used < 1 || c->n_group_used > c->n_group)
        return -1;
    if ((int64_t)c->n_group_used * (c->n_expert / c->n_group) < c->n_used)
        return -1;
    if (!(c->scale == c->scale))
        return -1;
    return 0;
}

int64_t dsri_router_work_floats(const dsri_router_config *c)
{
    /* scores, selection scores, expert marks, group scores, group marks */
    return 3 * (int64_t)c->n_expert + 2 * (int64_t)c->n_group;
}

/* a ranks above b: the higher value, NaN below everything (even -inf); the
 * caller breaks ties by index. A total order whatever the values, so every
 * pick below has an answer. */
static int ranks_above(float a, float b)
{
    return a > b || (b != b && a == a);
}

/* Index of the best unmarked entry of v[0..n) (mark[i] != 0: taken or
 * excluded), the lowest index among ties; -1 only when all are marked. */
static int best_unmarked(const float *v, const float *mark, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (mark[i] == 0.0f && (best < 0 || ranks_above(v[i], v[best])))
            best = i;
    return best;
}

void dsri_router_route(const dsri_router_config *c, const float *logits, const float *bias, float *work,
                       int32_t *ids, float *weights)
{
    const int n = c->n_expert;
    float *score = work;             /* s_e: what the weights are made of */
    float *sel = work + n;           /* c_e: what the choice is made on */
    float *mark = work + 2 * n;      /* expert chosen or in a dropped group */
    float *group = work + 3 * n;     /* group scores */
    float *group_mark = group + c->n_group;

    /* 1. gating */
    if (c->gating == 2) {
        for (int e = 0; e < n; e++)
            score[e] = 1.0f / (1.0f + expf(-logits[e]));
    } else {
        float mx = logits[0];
        for (int e = 1; e < n; e++)
            if (logits[e] > mx)
                mx = logits[e];
        float sum = 0.0f;
        for (int e = 0; e < n; e++) {
            score[e] = expf(logits[e] - mx);
            sum += score[e];
        }
        for (int e = 0; e < n; e++)
            score[e] /= sum;
    }

    /* 2. selection scores. Whatever they are (-inf, NaN: a hostile file or
     * an overflowing activation), the picks below are distinct experts, so
     * the caller's per-expert buffers are never overrun; non-numbers reach
     * the weights and surface as a non-finite result instead. */
    for (int e = 0; e < n; e++) {
        sel[e] = bias ? score[e] + bias[e] : score[e];
        mark[e] = 0.0f;
    }

    /* 3. group limit */
    if (c->n_group > 1 && c->n_group_used < c->n_group) {
        const int per = n / c->n_group;
        for (int g = 0; g < c->n_group; g++) {
            const float *v = sel + g * per;
            float *m = mark + g * per;
            int a = best_unmarked(v, m, per);
            m[a] = 1.0f;
            int b = best_unmarked(v, m, per);
            m[a] = 0.0f;
            group[g] = b >= 0 ? v[a] + v[b] : v[a];
            group_mark[g] = 0.0f;
        }
        for (int k = 0; k < c->n_group_used; k++)
            group_mark[best_unmarked(group, group_mark, c->n_group)] = 1.0f; /* kept */
        for (int g = 0; g < c->n_group; g++)
            if (group_mark[g] == 0.0f)
                for (int i = 0; i < per; i++)
                    mark[g * per + i] = 1.0f;
    }

    /* 4. top n_used experts: dsri_router_check() guarantees the kept
     * groups hold at least n_used, so every pick finds one */
    for (int k = 0; k < c->n_used; k++) {
        int e = best_unmarked(sel, mark, n);
        ids[k] = e;
        weights[k] = score[e];
        mark[e] = 1.0f;
    }

    /* 5. weights */
    if (c->norm) {
        float sum = 0.0f;
        for (int k = 0; k < c->n_used; k++)
            sum += weights[k];
        if (sum < 6.103515625e-5f)
            sum = 6.103515625e-5f;
        for (int k = 0; k < c->n_used; k++)
            weights[k] /= sum;
    }
    for (int k = 0; k < c->n_used; k++)
        weights[k] *= c->scale;
}
