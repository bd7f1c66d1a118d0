#version 450
#include "common.glsl"
#include "reduce.glsl"

// y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w; one workgroup a row.
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint cols;
    uint x_off, x_stride;
    uint w_off;
    uint y_off, y_stride;
    float eps;
} p;

void main()
{
    uint row = gl_WorkGroupID.x, t = gl_LocalInvocationID.x;
    uint xb = p.x_off + row * p.x_stride, yb = p.y_off + row * p.y_stride;
    float ss = 0.0;
    for (uint i = t; i < p.cols; i += WG)
        ss += x[xb + i] * x[xb + i];
    ss = wg_sum(ss);
    float scale = 1.0 / sqrt(ss / float(p.cols) + p.eps);
    for (uint i = t; i < p.cols; i += WG)
        y[yb + i] = x[xb + i] * scale * w[p.w_off + i];
}
