/*
 * libdsr1 - fp16 / bf16 <-> fp32 conversions (pure integer bit manipulation,
 * independent of the host's FPU rounding mode).
 */
#include <string.h>

#include "quant.h"

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float dsri_fp16_to_fp32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;

    if (exp == 0) {
        if (mant == 0)
            return f32_from_bits(sign); /* +-0 */
        /* subnormal: value = mant * 2^-24; normalise into an f32 normal */
        uint32_t e = 127 - 15 + 1;
        while ((mant & 0x400u) == 0) {
            mant <<= 1;
            e--;
        }
        mant &= 0x3FFu;
        return f32_from_bits(sign | (e << 23) | (mant << 13));
    }
    if (exp == 0x1F) {
        if (mant == 0)
            return f32_from_bits(sign | 0x7F800000u); /* +-inf */
        return f32_from_bits(sign | 0x7FC00000u | (mant << 13)); /* quiet NaN */
    }
    return f32_from_bits(sign | ((exp + (127 - 15)) << 23) | (mant << 13));
}

uint16_t dsri_fp32_to_fp16(float f)
{
    const uint32_t u = f32_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7FFFFFFFu;

    if (a > 0x7F800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
    if (a >= 0x477FF000u) /* >= 65520 rounds (to even) past 65504: inf */
        return (uint16_t)(sign | 0x7C00u);
    if (a >= 0x38800000u) { /* >= 2^-14: normal half */
        const uint32_t rem = a & 0x1FFFu;
        uint32_t h = ((a >> 13) - ((127u - 15u) << 10));
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++; /* a carry into the exponent is the correct result */
        return (uint16_t)(sign | h);
    }
    if (a < 0x33000000u) /* < 2^-25 (half of the smallest subnormal): 0 */
        return sign;
    {
        /* subnormal half: value in units of 2^-24 */
        const uint32_t e = a >> 23; /* 102 .. 112 */
        const uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
        const uint32_t shift = 126u - e; /* 14 .. 24 */
        const uint32_t half = 1u << (shift - 1);
        const uint32_t rem = mant & ((1u << shift) - 1u);
        uint32_t h = mant >> shift;
        if (rem > half || (rem == half && (h & 1u)))
            h++; /* may carry into the smallest normal: still correct */
        return (uint16_t)(sign | h);
    }
}

float dsri_bf16_to_fp32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

uint16_t dsri_fp32_to_bf16(float f)
{
    const uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: truncate, force quiet */
        return (uint16_t)((u >> 16) | 0x40u);
    /* round to nearest even; inf stays inf, large finite rounds up to inf */
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
