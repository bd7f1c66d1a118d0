#version 450
#include "common.glsl"
#include "reduce.glsl"

// Causal attention, one workgroup per (query row, head): keys 0..pos[t] in
// tiles of WG (one key per invocation), with a running max and sum
// (online softmax), so any context length fits. KF16 / VF16: f16 cache rows
// (widened exactly), else f32. Arithmetic in f32.
layout(std430, binding = 0) readonly buffer Q { float q[]; };
#ifdef KF16
layout(std430, binding = 1) readonly buffer K { float16_t k[]; };
#else
layout(std430, binding = 1) readonly buffer K { float k[]; };
#endif
#ifdef VF16
layout(std430, binding = 2) readonly buffer V { float16_t v[]; };
#else
layout(std430, binding = 2) readonly buffer V { float v[]; };
#endif
layout(std430, binding = 3) writeonly buffer O { float o[]; };
layout(std430, binding = 4) readonly buffer Pos { int pos[]; };
layout(push_constant) uniform P {
    uint q_off, q_stride;
    uint k_off, k_stride;
    uint v_off, v_stride;
    uint o_off, o_stride;
    uint group; // query heads per kv head
    uint dk, dv;
    float scale;
} p;

#define MAX_DK 1024u
#define MAX_PER_THREAD 16u // dv <= WG * MAX_PER_THREAD (checked on the C side)

shared float qs[MAX_DK];
shared float pe[WG];

void main()
{
    uint h = gl_WorkGroupID.x, row = gl_WorkGroupID.y, t = gl_LocalInvocationID.x;
    uint kvh = h / p.group;
    uint qb = p.q_off + row * p.q_stride + h * p.dk;
    for (uint i = t; i < p.dk; i += WG)
        qs[i] = q[qb + i];
    barrier();
    uint n_keys = uint(pos[row]) + 1u;
    float m = -1.0 / 0.0, l = 0.0;
    float acc[MAX_PER_THREAD];
    for (uint j = 0u; j < MAX_PER_THREAD; j++)
        acc[j] = 0.0;
    for (uint t0 = 0u; t0 < n_keys; t0 += WG) {
        uint key = t0 + t;
        float s = -1.0 / 0.0;
        if (key < n_keys) {
            uint kb = p.k_off + key * p.k_stride + kvh * p.dk;
            float dot = 0.0;
            for (uint i = 0u; i < p.dk; i++)
                dot += qs[i] * float(k[kb + i]);
            s = dot * p.scale;
        }
        float m_new = max(m, wg_max(s));
        float e = key < n_keys ? exp(s - m_new) : 0.0;
        pe[t] = e;
        float alpha = exp(m - m_new); // 0 on the first tile
        l = l * alpha + wg_sum(e);    // wg_sum's barriers also publish pe
        m = m_new;
        uint n_tile = min(WG, n_keys - t0);
        for (uint j = 0u; j < MAX_PER_THREAD; j++) {
            uint d = t + j * WG;
            if (d >= p.dv)
                break;
            float a = acc[j] * alpha;
            for (uint kk = 0u; kk < n_tile; kk++)
                a += pe[kk] * float(v[p.v_off + (t0 + kk) * p.v_stride + kvh * p.dv + d]);
            acc[j] = a;
        }
        barrier(); // pe is rewritten by the next tile
    }
    float inv = 1.0 / l;
    for (uint j = 0u; j < MAX_PER_THREAD; j++) {
        uint d = t + j * WG;
        if (d < p.dv)
            o[p.o_off + row * p.o_stride + h * p.dv + d] = acc[j] * inv;
    }
}
