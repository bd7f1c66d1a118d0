#version 450
#include "common.glsl"

// Rotate pair i of head h of row t by pos[t] * freq[i] (backend.h rope).
// The angle is reduced modulo pi/2 before sin/cos, so long positions keep
// their accuracy: in f64 where the device has it (ROPE_F64), else with a
// three-part pi/2 in f32 (then the product pos * freq itself is rounded to
// f32). sin/cos are polynomials on [-pi/4, pi/4] (Cephes' sinf/cosf), not
// the builtins, whose accuracy Vulkan leaves loose.
#ifdef ROPE_F64
#extension GL_ARB_gpu_shader_fp64 : require
#endif
layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Pos { int pos[]; };
layout(std430, binding = 2) readonly buffer F { float freq[]; };
layout(push_constant) uniform P {
    uint n_heads, head_dim, rot_dim;
    uint x_off, x_stride;
    uint freq_off;
    float mscale;
    uint neox;
} p;

float sin_poly(float y)
{
    float z = y * y;
    return ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * y + y;
}

float cos_poly(float y)
{
    float z = y * y;
    return ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
}

void main()
{
    uint half_rot = p.rot_dim / 2u;
    uint k = gl_GlobalInvocationID.x, row = gl_WorkGroupID.y;
    if (k >= p.n_heads * half_rot)
        return;
    uint h = k / half_rot, i = k % half_rot;
    float f = freq[p.freq_off + i];
    int q;
    float y;
#ifdef ROPE_F64
    double a = double(pos[row]) * double(f);
    double qd = floor(a * 0.63661977236758134308LF + 0.5LF);
    y = float(a - qd * 1.5707963267948966192LF);
    q = int(qd - 4.0LF * floor(qd * 0.25LF));
#else
    float a = float(pos[row]) * f;
    float qf = floor(a * 0.63661977236758134308 + 0.5);
    y = ((a - qf * 1.5703125) - qf * 4.837512969970703125e-4) - qf * 7.54978995489188216e-8;
    q = int(qf - 4.0 * floor(qf * 0.25));
#endif
    float s0 = sin_poly(y), c0 = cos_poly(y);
    float c = q == 0 ? c0 : q == 1 ? -s0 : q == 2 ? -c0 : s0;
    float s = q == 0 ? s0 : q == 1 ? c0 : q == 2 ? -s0 : -c0;
    c *= p.mscale;
    s *= p.mscale;
    uint base = p.x_off + row * p.x_stride + h * p.head_dim;
    uint ia = p.neox != 0u ? i : 2u * i, ib = p.neox != 0u ? i + half_rot : 2u * i + 1u;
    float x0 = x[base + ia], x1 = x[base + ib];
    x[base + ia] = x0 * c - x1 * s;
    x[base + ib] = x0 * s + x1 * c;
}
