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
    /* scores, selection scores, group scores */
    return 2 * (int64_t)c->n_expert + c->n_group;
}

/* Index of the largest value in v[0..n), skipping -inf; the lowest index
 * wins ties. -1 when every value is -inf. */
static int argmax(const float *v, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (v[i] != -INFINITY && (best < 0 || v[i] > v[best]))
            best = i;
    return best;
}

void dsri_router_route(const dsri_router_config *c, const float *logits, const float *bias, float *work,
                       int32_t *ids, float *weights)
{
    const int n = c->n_expert;
    float *score = work;        /* s_e: what the weights are made of */
    float *sel = work + n;      /* c_e: what the choice is made on */
    float *group = work + 2 * n;

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

    /* 2. selection scores */
    for (int e = 0; e < n; e++)
        sel[e] = bias ? score[e] + bias[e] : score[e];

    /* 3. group limit */
    if (c->n_group > 1 && c->n_group_used < c->n_group) {
        const int per = n / c->n_group;
        for (int g = 0; g < c->n_group; g++) {
            const float *v = sel + g * per;
            int a = argmax(v, per), b = -1;
            for (int i = 0; i < per; i++)
                if (i != a && (b < 0 || v[i] > v[b]))
                    b = i;
            group[g] = b >= 0 ? v[a] + v[b] : v[a];
        }
        for (int k = 0; k < c->n_group_used; k++) {
            int g = argmax(group, c->n_group);
            group[g] = -INFINITY; /* taken: mark so the next pick skips it */
        }
        /* groups still finite were not kept: exclude their experts */
        for (int g = 0; g < c->n_group; g++)
            if (group[g] != -INFINITY)
                for (int i = 0; i < per; i++)
                    sel[g * per + i] = -INFINITY;
    }

    /* 4. top n_used experts */
    for (int k = 0; k < c->n_used; k++) {
        int e = argmax(sel, n);
        if (e < 0) /* unreachable with dsri_router_check()ed settings */
            e = 0;
        ids[k] = e;
        weights[k] = score[e];
        sel[e] = -INFINITY;
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
