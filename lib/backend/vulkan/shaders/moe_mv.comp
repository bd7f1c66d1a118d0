#version 450
// Routed experts, one product: y[t][o] = W_e[o] . x[t] where e is the
// slot-th smallest expert id of row t (moe_ffn sums its experts in
// increasing id) and W_e the rows [e * expert_rows, ...) of w.
// One workgroup of 32 lanes per (o, t): lane l takes the 8-element chunks
// l, l+32, ... (dequant.glsl's dq8), then a tree sum in shared memory.
// Bindings: 0 weights (uint words, type WTYPE), 1 x, 2 ids (i32), 3 y,
// 4 the IQ tables (IQ1-IQ3 types only).
#extension GL_EXT_control_flow_attributes : require
layout(local_size_x = 32) in;
layout(std430, binding = 0) readonly buffer WBuf { uint wq[]; };
layout(std430, binding = 1) readonly buffer XBuf { float xf[]; };
layout(std430, binding = 2) readonly buffer IBuf { int ids[]; };
layout(std430, binding = 3) writeonly buffer YBuf { float yf[]; };
layout(push_constant) uniform P {
    uint w_skip, w_stride, expert_rows; // bytes, bytes, rows
    uint n_in, n_out;
    uint x_off, x_stride;
    uint i_off, i_stride, n_used, slot;
    uint y_off, y_stride;
} p;

#define IQ_BINDING 4 // the IQ types' table buffer (dequant.glsl)
#include "dequant.glsl"
#include "moe_slot.glsl"

shared float part[32];

void main()
{
    uint o = gl_WorkGroupID.x, t = gl_WorkGroupID.y, lane = gl_LocalInvocationID.x;
    uint e = uint(slot_expert(t));
    uint rb = p.w_skip + (e * p.expert_rows + o) * p.w_stride;
    uint xb = p.x_off + t * p.x_stride;
    uint n_chunks = (p.n_in + 7u) / 8u;
    float acc = 0.0;
    for (uint c = lane; c < n_chunks; c += 32u) {
        vec4 lo, hi;
        dq8(rb, c, p.n_in, lo, hi);
        [[unroll]] for (uint k = 0u; k < 8u; k++)
            if (8u * c + k < p.n_in)
                acc += (k < 4u ? lo[k] : hi[k - 4u]) * xf[xb + 8u * c + k];
    }
    part[lane] = acc;
    barrier();
    for (uint s = 16u; s > 0u; s >>= 1) {
        if (lane < s)
            part[lane] += part[lane + s];
        barrier();
    }
    if (lane == 0u)
        yf[p.y_off + t * p.y_stride + o] = part[0];
}
