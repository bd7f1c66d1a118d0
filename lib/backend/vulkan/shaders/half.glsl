// IEEE binary16 <-> binary32 by bits, so every device rounds the same way
// as the CPU backends (lib/quant/fp16.c): round to nearest even, overflow to
// infinity, NaN kept quiet with the payload's top bits.

float f16_bits_to_f32(uint h)
{
    return unpackHalf2x16(h).x; // widening is exact
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
