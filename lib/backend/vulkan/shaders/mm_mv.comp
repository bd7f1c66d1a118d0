#version 450
/*
 * y = x w^T for a few rows of x (decode): each workgroup computes MV_ROWS
 * output columns for up to MV_COLS rows of x. 32 lanes share one weight row
 * (mm_common.glsl's arithmetic), so each weight chunk is dequantized once
 * and used for every x row of the workgroup.
 * Bindings: 0 weights (uint words, type WTYPE), 1 x (f32), 2 y (f32),
 * 3 the IQ tables (IQ1-IQ3 types only).
 * Grid: x = ceil(n_out / MV_ROWS), y = ceil(n_rows / MV_COLS), z = heads.
 */
#define MM_PUSH
#include "mm_common.glsl"

#define MV_ROWS 4u
#define MV_COLS 4u
layout(local_size_x = 128) in; /* LANES * MV_ROWS */

layout(std430, binding = 0) readonly buffer WBuf { uint wq[]; };
layout(std430, binding = 1) readonly buffer XBuf { float xf[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float yf[]; };

#define IQ_BINDING 3 /* the IQ types' table buffer (dequant.glsl) */
#include "dequant.glsl"

shared float red[MV_ROWS * LANES * MV_COLS];

void main()
{
    const uint lane = gl_LocalInvocationIndex % LANES, r = gl_LocalInvocationIndex / LANES;
    const uint o = gl_WorkGroupID.x * MV_ROWS + r;
    const uint t0 = gl_WorkGroupID.y * MV_COLS;
    const uint n_cols = min(MV_COLS, pc.n_rows - t0);
    const uint head = gl_WorkGroupID.z;
    const uint xb = pc.x_skip + head * pc.x_head;
    const uint n_chunks = (pc.n_in + 7u) / 8u;

    precise float acc[MV_COLS];
    [[unroll]] for (uint t = 0u; t < MV_COLS; t++)
        acc[t] = 0.0;
    if (o < pc.n_out) {
        const uint rb = pc.w_skip + head * pc.w_head + o * pc.w_stride;
        for (uint c = lane; c < n_chunks; c += LANES) {
            vec4 lo, hi;
            dq8(rb, c, pc.n_in, lo, hi);
            [[unroll]] for (uint t = 0u; t < MV_COLS; t++) {
                if (t < n_cols) {
                    const uint xr = xb + (t0 + t) * pc.x_stride + 8u * c;
                    [[unroll]] for (uint e = 0u; e < 8u; e++) {
                        const float xv = 8u * c + e < pc.n_in ? xf[xr + e] : 0.0;
                        acc[t] = fma(e < 4u ? lo[e] : hi[e - 4u], xv, acc[t]);
                    }
                }
            }
        }
    }

    const uint span = shuffle_span();
    for (uint s = 1u; s < LANES; s <<= 1) {
        if (s < span) {
            [[unroll]] for (uint t = 0u; t < MV_COLS; t++)
                acc[t] = acc[t] + subgroupShuffleXor(acc[t], s);
        } else {
            [[unroll]] for (uint t = 0u; t < MV_COLS; t++)
                red[(r * LANES + lane) * MV_COLS + t] = acc[t];
            barrier();
            [[unroll]] for (uint t = 0u; t < MV_COLS; t++)
                acc[t] = acc[t] + red[(r * LANES + (lane ^ s)) * MV_COLS + t];
            barrier();
        }
    }

    if (lane == 0u && o < pc.n_out) {
        const uint yb = pc.y_skip + head * pc.y_head + o;
        [[unroll]] for (uint t = 0u; t < MV_COLS; t++)
            if (t < n_cols)
                yf[yb + (t0 + t) * pc.y_stride] = acc[t];
    }
}
