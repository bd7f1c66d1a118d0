#version 450
#include "common.glsl"
#include "half.glsl"

// dst = src with any strides. SRC16 / DST16: 16-bit elements (f16), else
// 32-bit (f32 or i32, copied as bits). f32 -> f16 rounds to nearest even.
#ifdef SRC16
layout(std430, binding = 0) readonly buffer S { uint16_t s[]; };
#else
layout(std430, binding = 0) readonly buffer S { uint s[]; };
#endif
#ifdef DST16
layout(std430, binding = 1) writeonly buffer D { uint16_t d[]; };
#else
layout(std430, binding = 1) writeonly buffer D { uint d[]; };
#endif
layout(push_constant) uniform P {
    uint cols;
    uint s_off, s_stride;
    uint d_off, d_stride;
} p;

void main()
{
    uint i = gl_GlobalInvocationID.x, row = gl_WorkGroupID.y;
    if (i >= p.cols)
        return;
    uint v = uint(s[p.s_off + row * p.s_stride + i]);
#if defined(SRC16) && !defined(DST16)
    v = floatBitsToUint(f16_bits_to_f32(v));
#elif !defined(SRC16) && defined(DST16)
    v = f32_to_f16_bits_rne(uintBitsToFloat(v));
#endif
#ifdef DST16
    d[p.d_off + row * p.d_stride + i] = uint16_t(v);
#else
    d[p.d_off + row * p.d_stride + i] = v;
#endif
}
