#version 450

// MoE routing of one row of router logits (lib/model/moe_router.c, the same
// steps in the same order, the same total order with NaN): one invocation a row.
layout(local_size_x = 1) in;
layout(std430, binding = 0) readonly buffer L { float logits[]; };
layout(std430, binding = 1) readonly buffer B { float bias[]; };
layout(std430, binding = 2) writeonly buffer I { int ids[]; };
layout(std430, binding = 3) writeonly buffer W { float weights[]; };
layout(push_constant) uniform P {
    uint l_off, l_stride;
    uint b_off, has_bias;
    uint i_off, i_stride;
    uint w_off, w_stride;
    uint n_expert, n_used, n_group, n_group_used;
    uint gating, norm;
    float scale;
} p;

#define MAX_EXPERT 512u
#define MAX_GROUP 64u
shared float score[MAX_EXPERT];
shared float sel[MAX_EXPERT];
shared bool mark[MAX_EXPERT]; // chosen, or in a dropped group
shared float group_score[MAX_GROUP];
shared bool group_mark[MAX_GROUP];

// a total order: NaN ranks below every number
bool ranks_above(float a, float b)
{
    return a > b || (isnan(b) && !isnan(a));
}

// the best unmarked expert of [first, first + n) (lowest index among ties), -1: none
int best_sel(uint first, uint n)
{
    int best = -1;
    for (uint i = 0u; i < n; i++)
        if (!mark[first + i] && (best < 0 || ranks_above(sel[first + i], sel[first + uint(best)])))
            best = int(i);
    return best;
}

int best_group(uint n)
{
    int best = -1;
    for (uint g = 0u; g < n; g++)
        if (!group_mark[g] && (best < 0 || ranks_above(group_score[g], group_score[uint(best)])))
            best = int(g);
    return best;
}

void main()
{
    uint row = gl_WorkGroupID.x, n = p.n_expert;
    uint lb = p.l_off + row * p.l_stride;
    if (p.gating == 2u) {
        for (uint e = 0u; e < n; e++)
            score[e] = 1.0 / (1.0 + exp(-logits[lb + e]));
    } else {
        float mx = logits[lb];
        for (uint e = 1u; e < n; e++)
            mx = logits[lb + e] > mx ? logits[lb + e] : mx;
        float sum = 0.0;
        for (uint e = 0u; e < n; e++) {
            score[e] = exp(logits[lb + e] - mx);
            sum += score[e];
        }
        for (uint e = 0u; e < n; e++)
            score[e] /= sum;
    }
    for (uint e = 0u; e < n; e++) {
        sel[e] = p.has_bias != 0u ? score[e] + bias[p.b_off + e] : score[e];
        mark[e] = false;
    }

    if (p.n_group > 1u && p.n_group_used < p.n_group) {
        uint per = n / p.n_group;
        for (uint g = 0u; g < p.n_group; g++) {
            int a = best_sel(g * per, per);
            mark[g * per + uint(a)] = true;
            int b = best_sel(g * per, per);
            mark[g * per + uint(a)] = false;
            float va = sel[g * per + uint(a)];
            group_score[g] = b >= 0 ? va + sel[g * per + uint(b)] : va;
            group_mark[g] = false;
        }
        for (uint k = 0u; k < p.n_group_used; k++)
            group_mark[uint(best_group(p.n_group))] = true; // kept
        for (uint g = 0u; g < p.n_group; g++)
            if (!group_mark[g])
                for (uint i = 0u; i < per; i++)
                    mark[g * per + i] = true;
    }

    // the kept groups hold at least n_used experts (dsri_router_check)
    float w[16];
    float sum = 0.0;
    for (uint k = 0u; k < p.n_used; k++) {
        int e = best_sel(0u, n);
        ids[p.i_off + row * p.i_stride + k] = e;
        w[k] = score[uint(e)];
        sum += w[k];
        mark[uint(e)] = true;
    }
    if (p.norm != 0u && sum < 6.103515625e-5)
        sum = 6.103515625e-5;
    for (uint k = 0u; k < p.n_used; k++)
        weights[p.w_off + row * p.w_stride + k] = (p.norm != 0u ? w[k] / sum : w[k]) * p.scale;
}
