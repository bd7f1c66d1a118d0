#version 450
#include "common.glsl"

// y += x elementwise; x_stride 0 adds x's single row to every row (bias).
layout(std430, binding = 0) buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(push_constant) uniform P {
    uint cols;
    uint y_off, y_stride;
    uint x_off, x_stride;
} p;

void main()
{
    uint i = gl_GlobalInvocationID.x, row = gl_WorkGroupID.y;
    if (i < p.cols)
        y[p.y_off + row * p.y_stride + i] += x[p.x_off + row * p.x_stride + i];
}
