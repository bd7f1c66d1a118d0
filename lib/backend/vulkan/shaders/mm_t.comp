#version 450
/*
 * The product with the transposed weight matrix (matmul_t, and
 * matmul_heads with transposed = 1): y[t][i] = sum_o w[o][i] * x[t][o].
 * Each invocation owns 8 columns i (one chunk) of up to MT_COLS rows of x
 * and runs over the weight rows o = 0, 1, ... in order, one fma per term:
 * a row's arithmetic does not depend on the batch.
 * Bindings: 0 weights (uint words, type WTYPE), 1 x (f32), 2 y (f32),
 * 3 the IQ tables (IQ1-IQ3 types only).
 * Push constants as mm_common.glsl (n_in: weight columns = y columns,
 * n_out: weight rows = x columns).
 * Grid: x = ceil(ceil(n_in / 8) / 64), y = ceil(n_rows / MT_COLS), z = heads.
 */
#define MM_PUSH
#include "mm_common.glsl"

#define MT_COLS 4u
layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer WBuf { uint wq[]; };
layout(std430, binding = 1) readonly buffer XBuf { float xf[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float yf[]; };

#define IQ_BINDING 3 /* the IQ types' table buffer (dequant.glsl) */
#include "dequant.glsl"

void main()
{
    const uint c = gl_GlobalInvocationID.x;
    const uint t0 = gl_WorkGroupID.y * MT_COLS;
    const uint head = gl_WorkGroupID.z;
    if (8u * c >= pc.n_in)
        return;
    const uint n_cols = min(MT_COLS, pc.n_rows - t0);
    const uint wb = pc.w_skip + head * pc.w_head;
    const uint xb = pc.x_skip + head * pc.x_head + t0 * pc.x_stride;

    precise vec4 acc_lo[MT_COLS], acc_hi[MT_COLS];
    [[unroll]] for (uint t = 0u; t < MT_COLS; t++) {
        acc_lo[t] = vec4(0.0);
        acc_hi[t] = vec4(0.0);
    }
    for (uint o = 0u; o < pc.n_out; o++) {
        vec4 lo, hi;
        dq8(wb + o * pc.w_stride, c, pc.n_in, lo, hi);
        [[unroll]] for (uint t = 0u; t < MT_COLS; t++) {
            if (t < n_cols) {
                const float xv = xf[xb + t * pc.x_stride + o];
                acc_lo[t] = fma(lo, vec4(xv), acc_lo[t]);
                acc_hi[t] = fma(hi, vec4(xv), acc_hi[t]);
            }
        }
    }

    const uint yb = pc.y_skip + head * pc.y_head + t0 * pc.y_stride + 8u * c;
    [[unroll]] for (uint t = 0u; t < MT_COLS; t++) {
        if (t < n_cols) {
            [[unroll]] for (uint e = 0u; e < 8u; e++)
                if (8u * c + e < pc.n_in)
                    yf[yb + t * pc.y_stride + e] = e < 4u ? acc_lo[t][e] : acc_hi[t][e - 4u];
        }
    }
}
