#version 450
#include "common.glsl"
// y[t] += weight of the slot-th smallest expert of row t * d[t]
layout(std430, binding = 0) buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer D { float d[]; };
layout(std430, binding = 2) readonly buffer IBuf { int ids[]; };
layout(std430, binding = 3) readonly buffer W { float w[]; };
layout(push_constant) uniform P {
    uint cols;
    uint y_off, y_stride;
    uint d_off, d_stride;
    uint i_off, i_stride, n_used, slot;
    uint w_off, w_stride;
} p;

#include "moe_slot.glsl"

void main()
{
    uint i = gl_GlobalInvocationID.x, t = gl_WorkGroupID.y;
    if (i < p.cols) {
        float a = w[p.w_off + t * p.w_stride + uint(slot_index(t))];
        y[p.y_off + t * p.y_stride + i] += a * d[p.d_off + t * p.d_stride + i];
    }
}
