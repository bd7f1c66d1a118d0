#version 450
/*
 * y = x w^T for many rows of x (prefill): each workgroup computes a tile of
 * MM_TM output columns x MM_TN rows of x. Per round, the workgroup
 * dequantizes MM_TM weight rows x 256 columns (32 chunks of 8, chunk j of
 * the round to lane j) and loads MM_TN x rows x 256 columns into shared
 * memory; lane j of each of the 8 groups then accumulates its chunk for a
 * 4 x 4 block of outputs. Per output this is exactly mm_common.glsl's
 * arithmetic (the same as mm_mv.comp), so the batch never changes a row.
 * Shared tiles are stored [row][element of chunk][lane]: lanes read
 * consecutive words.
 * Bindings: 0 weights (uint words, type WTYPE), 1 x (f32), 2 y (f32),
 * 3 the IQ tables (IQ1-IQ3 types only).
 * Grid: x = ceil(n_out / MM_TM), y = ceil(n_rows / MM_TN), z = heads.
 */
#define MM_PUSH
#include "mm_common.glsl"

#define MM_TM 16u /* weight rows (output columns) of a tile */
#define MM_TN 8u  /* x rows of a tile */
#define GROUPS 8u
#define ROUND (LANES * 8u) /* columns per round */
layout(local_size_x = 256) in; /* LANES * GROUPS */

layout(std430, binding = 0) readonly buffer WBuf { uint wq[]; };
layout(std430, binding = 1) readonly buffer XBuf { float xf[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float yf[]; };

#define IQ_BINDING 3 /* the IQ types' table buffer (dequant.glsl) */
#include "dequant.glsl"

/* weight tile, then x tile; reused for the final lane reduction
 * (GROUPS * 16 * LANES floats) */
#define SH_X (MM_TM * ROUND)
shared float sh[(MM_TM + MM_TN) * ROUND];

void main()
{
    const uint lane = gl_LocalInvocationIndex % LANES, g = gl_LocalInvocationIndex / LANES;
    const uint o0 = gl_WorkGroupID.x * MM_TM, t0 = gl_WorkGroupID.y * MM_TN;
    const uint head = gl_WorkGroupID.z;
    const uint wb = pc.w_skip + head * pc.w_head;
    const uint xb = pc.x_skip + head * pc.x_head;
    const uint n_chunks = (pc.n_in + 7u) / 8u;
    const uint wr = (g % 4u) * 4u, xr = (g / 4u) * 4u; /* this group's 4 x 4 outputs */

    precise float acc[16];
    [[unroll]] for (uint u = 0u; u < 16u; u++)
        acc[u] = 0.0;

    for (uint first = 0u; first < n_chunks; first += LANES) {
        const uint c = first + lane;
        const bool live = c < n_chunks;
        for (uint k = 0u; k < MM_TM / GROUPS; k++) {
            const uint row = g + k * GROUPS;
            vec4 lo = vec4(0.0), hi = vec4(0.0);
            if (live && o0 + row < pc.n_out)
                dq8(wb + (o0 + row) * pc.w_stride, c, pc.n_in, lo, hi);
            for (uint e = 0u; e < 8u; e++)
                sh[row * ROUND + e * LANES + lane] = e < 4u ? lo[e] : hi[e - 4u];
        }
        for (uint k = 0u; k < MM_TN / GROUPS; k++) {
            const uint row = g + k * GROUPS;
            const bool row_live = live && t0 + row < pc.n_rows;
            const uint xo = xb + (t0 + row) * pc.x_stride + 8u * c;
            for (uint e = 0u; e < 8u; e++)
                sh[SH_X + row * ROUND + e * LANES + lane] = row_live && 8u * c + e < pc.n_in ? xf[xo + e] : 0.0;
        }
        barrier();
        if (live) {
            [[unroll]] for (uint e = 0u; e < 8u; e++) {
                float wv[4], xv[4];
                [[unroll]] for (uint a = 0u; a < 4u; a++) {
                    wv[a] = sh[(wr + a) * ROUND + e * LANES + lane];
                    xv[a] = sh[SH_X + (xr + a) * ROUND + e * LANES + lane];
                }
                [[unroll]] for (uint a = 0u; a < 4u; a++)
                    [[unroll]] for (uint b = 0u; b < 4u; b++)
                        acc[a * 4u + b] = fma(wv[a], xv[b], acc[a * 4u + b]);
            }
        }
        barrier();
    }

    const uint span = shuffle_span();
    for (uint s = 1u; s < LANES; s <<= 1) {
        if (s < span) {
            [[unroll]] for (uint u = 0u; u < 16u; u++)
                acc[u] = acc[u] + subgroupShuffleXor(acc[u], s);
        } else {
            [[unroll]] for (uint u = 0u; u < 16u; u++)
                sh[(g * 16u + u) * LANES + lane] = acc[u];
            barrier();
            [[unroll]] for (uint u = 0u; u < 16u; u++)
                acc[u] = acc[u] + sh[(g * 16u + u) * LANES + (lane ^ s)];
            barrier();
        }
    }

    if (lane == 0u) {
        const uint yb = pc.y_skip + head * pc.y_head;
        [[unroll]] for (uint a = 0u; a < 4u; a++)
            [[unroll]] for (uint b = 0u; b < 4u; b++) {
                const uint o = o0 + wr + a, t = t0 + xr + b;
                if (o < pc.n_out && t < pc.n_rows)
                    yf[yb + t * pc.y_stride + o] = acc[a * 4u + b];
            }
    }
}
