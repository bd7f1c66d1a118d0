#version 450
#include "common.glsl"

// g = silu(g) * u elementwise
layout(std430, binding = 0) buffer G { float g[]; };
layout(std430, binding = 1) readonly buffer U { float u[]; };
layout(push_constant) uniform P {
    uint cols;
    uint g_off, g_stride;
    uint u_off, u_stride;
} p;

void main()
{
    uint i = gl_GlobalInvocationID.x, row = gl_WorkGroupID.y;
    if (i < p.cols) {
        uint gi = p.g_off + row * p.g_stride + i;
        float v = g[gi];
        g[gi] = v / (1.0 + exp(-v)) * u[p.u_off + row * p.u_stride + i];
    }
}
