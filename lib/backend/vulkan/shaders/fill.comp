#version 450
#include "common.glsl"

layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(push_constant) uniform P {
    uint cols;
    uint y_off, y_stride;
    float value;
} p;

void main()
{
    uint i = gl_GlobalInvocationID.x, row = gl_WorkGroupID.y;
    if (i < p.cols)
        y[p.y_off + row * p.y_stride + i] = p.value;
}
