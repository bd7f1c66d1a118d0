// IEEE binary16 <-> binary32 by bits, so every device rounds the same way
// as the CPU backends (lib/quant/fp16.c): round to nearest even, overflow to
// infinity, NaN kept quiet with the payload's top bits.

// Widening by integer arithmetic too: exact on every device, whatever it
// does with f16 subnormals (NaNs quieted, as dsri_fp16_to_fp32).
float f16_bits_to_f32(uint h)
{
    uint sign = (h & 0x8000u) << 16;
    uint e = (h >> 10) & 0x1Fu;
    uint m = h & 0x3FFu;
    if (e == 0u) // zero or subnormal: m * 2^-24, a normal f32 (exact)
        return uintBitsToFloat(sign | floatBitsToUint(float(m) * 5.9604644775390625e-8));
    if (e == 0x1Fu)
        return uintBitsToFloat(sign | 0x7F800000u | (m != 0u ? 0x400000u | (m << 13) : 0u));
    return uintBitsToFloat(sign | ((e + 112u) << 23) | (m << 13));
}

uint f32_to_f16_bits_rne(float f)
{
    uint x = floatBitsToUint(f);
    uint sign = (x >> 16) & 0x8000u;
    uint e = (x >> 23) & 0xFFu;
    uint m = x & 0x7FFFFFu;
    if (e == 0xFFu)
        return sign | 0x7C00u | (m != 0u ? 0x200u | (m >> 13) : 0u);
    int exp = int(e) - 112; // rebias 127 -> 15
    if (exp >= 31)
        return sign | 0x7C00u;
    if (exp <= 0) { // subnormal or zero in binary16
        if (exp < -10)
            return sign;
        m |= 0x800000u;
        uint shift = uint(14 - exp);
        uint r = m >> shift;
        uint rem = m & ((1u << shift) - 1u);
        uint halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (r & 1u) != 0u))
            r++;
        return sign | r;
    }
    uint r = (uint(exp) << 10) | (m >> 13);
    uint rem = m & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u) != 0u))
        r++; // a carry into the exponent is right, up to infinity
    return sign | r;
}
