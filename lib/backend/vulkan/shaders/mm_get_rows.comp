#version 450
/*
 * Embedding lookup: y row t = weight row ids[t], dequantized to f32 (the
 * exact values of lib/quant/dequant.c). A weight split into row chunks
 * (larger than one binding) takes one dispatch per chunk: this one writes
 * only the rows whose id lies in [row_lo, row_hi), the chunk bound at
 * w_skip.
 * Bindings: 0 weights (uint words, type WTYPE), 1 ids (i32), 2 y (f32),
 * 3 the IQ tables (IQ1-IQ3 types only).
 * Grid: x = ceil(ceil(n_cols / 8) / 64), y = rows.
 */
#include "mm_common.glsl"

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer WBuf { uint wq[]; };
layout(std430, binding = 1) readonly buffer IBuf { int ids[]; };
layout(std430, binding = 2) writeonly buffer YBuf { float yf[]; };

/* mirrored by vk_get_rows_push in mm.c */
layout(push_constant) uniform Push {
    uint w_skip, w_stride; /* bytes: row row_lo of the weight, row to row */
    uint ids_skip;         /* ints */
    uint y_skip, y_stride; /* floats */
    uint n_cols, n_rows;
    uint row_lo, row_hi;   /* weight rows in this binding */
} pc;

#define IQ_BINDING 3 /* the IQ types' table buffer (dequant.glsl) */
#include "dequant.glsl"

void main()
{
    const uint c = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (8u * c >= pc.n_cols || t >= pc.n_rows)
        return;
    const uint id = uint(ids[pc.ids_skip + t]);
    if (id < pc.row_lo || id >= pc.row_hi)
        return;
    vec4 lo, hi;
    dq8(pc.w_skip + (id - pc.row_lo) * pc.w_stride, c, pc.n_cols, lo, hi);
    const uint yb = pc.y_skip + t * pc.y_stride + 8u * c;
    [[unroll]] for (uint e = 0u; e < 8u; e++)
        if (8u * c + e < pc.n_cols)
            yf[yb + e] = e < 4u ? lo[e] : hi[e - 4u];
}
