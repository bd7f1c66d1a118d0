/*
 * Dequantization of one 8-element chunk of a weight row, for every weight
 * type the library loads: the same float expressions, in the same order, as
 * lib/quant/dequant.c, so the values are bit-identical to the CPU's.
 *
 * The includer defines WTYPE (a ggml type id, lib/quant/quant.h) and
 * declares the weight buffer as 32-bit words before including:
 *     layout(std430, binding = ...) readonly buffer WBuf { uint wq[]; };
 * Blocks are read at byte offsets through word loads and shifts, so no 8- or
 * 16-bit storage feature is needed. Alignment assumed: row byte offsets are
 * multiples of 4 for F32 and of 2 otherwise (every block size is even).
 *
 * The IQ1-IQ3 types also need IQ_BINDING defined (the binding number of
 * the table buffer, see below).
 *
 * Every result is `precise` (SPIR-V NoContraction): a driver may not fuse
 * d*q - m into an FMA, which would change the last bit.
 *
 * dq8(rb, c, n, lo, hi): elements 8c .. 8c+7 of the row at byte rb; lo gets
 * 8c..8c+3, hi 8c+4..8c+7. Elements at or past n (only F32/F16/BF16 rows
 * can end inside a chunk) come out as 0.
 */

/* byte b (any alignment) */
uint rd_u8(uint b)
{
    return (wq[b >> 2] >> ((b & 3u) * 8u)) & 0xFFu;
}

/* little-endian uint16 at an even byte offset */
uint rd_u16(uint b)
{
    return (wq[b >> 2] >> ((b & 2u) * 8u)) & 0xFFFFu;
}

/* little-endian uint32 at an even byte offset */
uint rd_u32(uint b)
{
    uint w = wq[b >> 2];
    if ((b & 2u) != 0u)
        w = (w >> 16) | (wq[(b >> 2) + 1u] << 16);
    return w;
}

#include "half.glsl"

float rd_f16(uint b)
{
    return f16_bits_to_f32(rd_u16(b));
}

/* The 16 non-linear levels of IQ4_NL / IQ4_XS (dsri_kvalues_iq4nl). */
const float KVALUES_IQ4NL[16] = float[16](-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                          1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);

/* 8 values into lo/hi */
#define DQ_SET(e, val) { if ((e) < 4u) lo[(e)] = (val); else hi[(e) - 4u] = (val); }

#if WTYPE == 16 || WTYPE == 17 || WTYPE == 18 || WTYPE == 19 || WTYPE == 21 || WTYPE == 22 || WTYPE == 29
/* The lattice ("IQ") types read their grids and sign table from the device's
 * table buffer (iq_tables.glsl), bound right after the includer's own
 * bindings: the includer defines IQ_BINDING as that number. (Large const
 * arrays in the shader made lavapipe's compiler hang.) */
#include "iq_tables.glsl"
layout(std430, binding = IQ_BINDING) readonly buffer IqBuf { uint iqt[]; };

/* dsri_ksigns_iq2xs[i]: 7 sign bits and their parity bit */
uint iq_ksigns(uint i)
{
    return (iqt[IQT_KSIGNS + (i >> 2)] >> (8u * (i & 3u))) & 0xFFu;
}

/* 64-bit entry idx of the grid at word `table` */
uvec2 iq_grid8(uint table, uint idx)
{
    return uvec2(iqt[table + 2u * idx], iqt[table + 2u * idx + 1u]);
}

/* IQ2 / IQ3 (dequant_iq.c's put_signed): element e = db * grid byte e,
 * negated where bit e of signs is set; g holds bytes 0-3, 4-7. */
void iq_put8(uvec2 g, uint signs, float db, out vec4 lo, out vec4 hi)
{
    [[unroll]] for (uint e = 0u; e < 8u; e++) {
        uint q = (g[e >> 2] >> (8u * (e & 3u))) & 0xFFu;
        precise float v = db * float(q);
        if (((signs >> e) & 1u) != 0u)
            v = -v;
        DQ_SET(e, v)
    }
}

/* IQ1 (put_iq1): element e = dl * (int8 grid byte e + delta), delta -1/8 where neg, else +1/8 */
void iq1_put8(uint idx, float dl, bool neg, out vec4 lo, out vec4 hi)
{
    uvec2 g = iq_grid8(IQT_IQ1S, idx);
    float delta = neg ? -0.125 : 0.125;
    [[unroll]] for (uint e = 0u; e < 8u; e++) {
        int q = bitfieldExtract(int(g[e >> 2]), int(8u * (e & 3u)), 8);
        precise float v = dl * (float(q) + delta);
        DQ_SET(e, v)
    }
}
#endif

/* Q4_K / Q5_K 6-bit scale and min of sub-block j (dsri_scale_min_k4);
 * sb: byte offset of the 12 scale bytes */
void scale_min_k4(uint j, uint sb, out uint sc, out uint m)
{
    if (j < 4u) {
        sc = rd_u8(sb + j) & 63u;
        m = rd_u8(sb + j + 4u) & 63u;
    } else {
        sc = (rd_u8(sb + j + 4u) & 0x0Fu) | ((rd_u8(sb + j - 4u) >> 6) << 4);
        m = (rd_u8(sb + j + 4u) >> 4) | ((rd_u8(sb + j) >> 6) << 4);
    }
}

#if WTYPE == 0 /* F32 */
#define QK 1u
#define BLOCK_BYTES 4u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    for (uint e = 0u; e < 8u; e++) {
        uint i = 8u * c + e;
        float v = i < n ? uintBitsToFloat(wq[(rb >> 2) + i]) : 0.0;
        DQ_SET(e, v)
    }
}

#elif WTYPE == 1 /* F16 */
#define QK 1u
#define BLOCK_BYTES 2u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    for (uint e = 0u; e < 8u; e++) {
        uint i = 8u * c + e;
        float v = i < n ? rd_f16(rb + 2u * i) : 0.0;
        DQ_SET(e, v)
    }
}

#elif WTYPE == 30 /* BF16: the high half of an f32 */
#define QK 1u
#define BLOCK_BYTES 2u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    for (uint e = 0u; e < 8u; e++) {
        uint i = 8u * c + e;
        float v = i < n ? uintBitsToFloat(rd_u16(rb + 2u * i) << 16) : 0.0;
        DQ_SET(e, v)
    }
}

#elif WTYPE == 2 || WTYPE == 20 /* Q4_0, IQ4_NL: d@0, qs[16]@2; element j<16 low nibble of qs[j], j>=16 high of qs[j-16] */
#define QK 32u
#define BLOCK_BYTES 18u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 2) * BLOCK_BYTES;
    uint s = c & 3u; /* elements 8s..8s+7 of the block */
    float d = rd_f16(bb);
    uint q0 = rd_u32(bb + 2u + (s & 1u) * 8u), q1 = rd_u32(bb + 6u + (s & 1u) * 8u);
    uint shift = (s >> 1) * 4u;
    for (uint e = 0u; e < 8u; e++) {
        uint q = (((e < 4u ? q0 : q1) >> (8u * (e & 3u))) >> shift) & 0x0Fu;
#if WTYPE == 2
        precise float v = float(int(q) - 8) * d;
#else
        precise float v = d * KVALUES_IQ4NL[q];
#endif
        DQ_SET(e, v)
    }
}

#elif WTYPE == 3 /* Q4_1: d@0, m@2, qs[16]@4 */
#define QK 32u
#define BLOCK_BYTES 20u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 2) * BLOCK_BYTES;
    uint s = c & 3u;
    float d = rd_f16(bb), m = rd_f16(bb + 2u);
    uint q0 = rd_u32(bb + 4u + (s & 1u) * 8u), q1 = rd_u32(bb + 8u + (s & 1u) * 8u);
    uint shift = (s >> 1) * 4u;
    for (uint e = 0u; e < 8u; e++) {
        uint q = (((e < 4u ? q0 : q1) >> (8u * (e & 3u))) >> shift) & 0x0Fu;
        precise float v = float(q) * d + m;
        DQ_SET(e, v)
    }
}

#elif WTYPE == 6 || WTYPE == 7 /* Q5_0: d@0, qh@2, qs@6; Q5_1: d@0, m@2, qh@4, qs@8; 5th bit of element i is qh bit i */
#define QK 32u
#if WTYPE == 6
#define BLOCK_BYTES 22u
#define QH_AT 2u
#else
#define BLOCK_BYTES 24u
#define QH_AT 4u
#endif
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 2) * BLOCK_BYTES;
    uint s = c & 3u;
    float d = rd_f16(bb);
    uint qh = rd_u32(bb + QH_AT);
    uint q0 = rd_u32(bb + QH_AT + 4u + (s & 1u) * 8u), q1 = rd_u32(bb + QH_AT + 8u + (s & 1u) * 8u);
    uint shift = (s >> 1) * 4u;
#if WTYPE == 7
    float m = rd_f16(bb + 2u);
#endif
    for (uint e = 0u; e < 8u; e++) {
        uint i = 8u * s + e;
        uint q = ((((e < 4u ? q0 : q1) >> (8u * (e & 3u))) >> shift) & 0x0Fu) | (((qh >> i) & 1u) << 4);
#if WTYPE == 6
        precise float v = float(int(q) - 16) * d;
#else
        precise float v = float(q) * d + m;
#endif
        DQ_SET(e, v)
    }
}

#elif WTYPE == 8 /* Q8_0: d@0, qs[32] int8 @2 */
#define QK 32u
#define BLOCK_BYTES 34u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 2) * BLOCK_BYTES;
    uint s = c & 3u;
    float d = rd_f16(bb);
    uint q0 = rd_u32(bb + 2u + 8u * s), q1 = rd_u32(bb + 6u + 8u * s);
    for (uint e = 0u; e < 8u; e++) {
        int v = bitfieldExtract(int(e < 4u ? q0 : q1), int(8u * (e & 3u)), 8);
        precise float y = float(v) * d;
        DQ_SET(e, y)
    }
}

#elif WTYPE == 10 /* Q2_K: scales[16]@0, qs[64]@16, d@80, dmin@82 */
#define QK 256u
#define BLOCK_BYTES 84u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint i0 = (c & 31u) * 8u; /* first element in the block */
    uint half_ = i0 >> 7, plane = (i0 >> 5) & 3u, part = (i0 >> 4) & 1u, l0 = i0 & 15u;
    uint sc = rd_u8(bb + half_ * 8u + plane * 2u + part);
    float d = rd_f16(bb + 80u), dmin = rd_f16(bb + 82u);
    precise float dl = d * float(sc & 0x0Fu);
    precise float ml = dmin * float(sc >> 4);
    uint qb = bb + 16u + half_ * 32u + part * 16u + l0;
    uint q0 = rd_u32(qb), q1 = rd_u32(qb + 4u);
    for (uint e = 0u; e < 8u; e++) {
        uint q = ((e < 4u ? q0 : q1) >> (8u * (e & 3u) + 2u * plane)) & 3u;
        precise float v = dl * float(q) - ml;
        DQ_SET(e, v)
    }
}

#elif WTYPE == 11 /* Q3_K: hmask[32]@0, qs[64]@32, scales[12]@96, d@108 */
#define QK 256u
#define BLOCK_BYTES 110u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint i0 = (c & 31u) * 8u;
    uint half_ = i0 >> 7, plane = (i0 >> 5) & 3u, part = (i0 >> 4) & 1u, l0 = i0 & 15u;
    uint j = half_ * 8u + plane * 2u + part; /* scale index (dsri_scale_q3_k) */
    uint sl = j < 8u ? (rd_u8(bb + 96u + j) & 0x0Fu) : (rd_u8(bb + 96u + j - 8u) >> 4);
    uint sh = (rd_u8(bb + 104u + (j & 3u)) >> (2u * (j >> 2))) & 3u;
    float d_all = rd_f16(bb + 108u);
    precise float dl = d_all * float(int(sl | (sh << 4)) - 32);
    uint qb = bb + 32u + half_ * 32u + part * 16u + l0;
    uint hb = bb + part * 16u + l0;
    uint q0 = rd_u32(qb), q1 = rd_u32(qb + 4u);
    uint h0 = rd_u32(hb), h1 = rd_u32(hb + 4u);
    uint mbit = half_ * 4u + plane;
    for (uint e = 0u; e < 8u; e++) {
        uint q = ((e < 4u ? q0 : q1) >> (8u * (e & 3u) + 2u * plane)) & 3u;
        uint h = ((e < 4u ? h0 : h1) >> (8u * (e & 3u) + mbit)) & 1u;
        precise float v = dl * float(int(q) - (h != 0u ? 0 : 4));
        DQ_SET(e, v)
    }
}

#elif WTYPE == 12 || WTYPE == 13 /* Q4_K: d@0, dmin@2, scales[12]@4, qs[128]@16; Q5_K: qh[32]@16, qs@48 */
#define QK 256u
#if WTYPE == 12
#define BLOCK_BYTES 144u
#define QS_AT 16u
#else
#define BLOCK_BYTES 176u
#define QS_AT 48u
#endif
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint i0 = (c & 31u) * 8u;
    uint c4 = i0 >> 6, upper = (i0 >> 5) & 1u, l0 = i0 & 31u; /* 64-chunk, high nibbles?, byte */
    uint sc, mn;
    scale_min_k4(2u * c4 + upper, bb + 4u, sc, mn);
    float d = rd_f16(bb), dmin = rd_f16(bb + 2u);
    precise float d1 = d * float(sc);
    precise float m1 = dmin * float(mn);
    uint q0 = rd_u32(bb + QS_AT + c4 * 32u + l0), q1 = rd_u32(bb + QS_AT + c4 * 32u + l0 + 4u);
#if WTYPE == 13
    uint h0 = rd_u32(bb + 16u + l0), h1 = rd_u32(bb + 20u + l0);
    uint hbit = 2u * c4 + upper;
#endif
    for (uint e = 0u; e < 8u; e++) {
        uint q = ((e < 4u ? q0 : q1) >> (8u * (e & 3u) + 4u * upper)) & 0x0Fu;
#if WTYPE == 13
        q += (((e < 4u ? h0 : h1) >> (8u * (e & 3u) + hbit)) & 1u) * 16u;
#endif
        precise float v = d1 * float(q) - m1;
        DQ_SET(e, v)
    }
}

#elif WTYPE == 14 /* Q6_K: ql[128]@0, qh[64]@128, scales[16] int8 @192, d@208 */
#define QK 256u
#define BLOCK_BYTES 210u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint i0 = (c & 31u) * 8u;
    uint half_ = i0 >> 7, g = (i0 >> 5) & 3u, l0 = i0 & 31u;
    uint qlb = bb + half_ * 64u + l0 + 32u * (g & 1u);
    uint qhb = bb + 128u + half_ * 32u + l0;
    uint q0 = rd_u32(qlb), q1 = rd_u32(qlb + 4u);
    uint h0 = rd_u32(qhb), h1 = rd_u32(qhb + 4u);
    int s = bitfieldExtract(int(rd_u8(bb + 192u + half_ * 8u + (l0 >> 4) + 2u * g)), 0, 8);
    float d = rd_f16(bb + 208u);
    precise float ds = d * float(s);
    for (uint e = 0u; e < 8u; e++) {
        uint sh = 8u * (e & 3u);
        uint nib = ((e < 4u ? q0 : q1) >> (sh + 4u * (g >> 1))) & 0x0Fu;
        uint hb2 = ((e < 4u ? h0 : h1) >> (sh + 2u * g)) & 3u;
        precise float v = ds * float(int(nib | (hb2 << 4)) - 32);
        DQ_SET(e, v)
    }
}

#elif WTYPE == 23 /* IQ4_XS: d@0, scales_h(u16)@2, scales_l[4]@4, qs[128]@8 */
#define QK 256u
#define BLOCK_BYTES 136u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint i0 = (c & 31u) * 8u;
    uint ib = i0 >> 5, j0 = i0 & 31u; /* sub-block of 32, element in it */
    float d = rd_f16(bb);
    uint ls = ((rd_u8(bb + 4u + (ib >> 1)) >> (4u * (ib & 1u))) & 0x0Fu) | (((rd_u16(bb + 2u) >> (2u * ib)) & 3u) << 4);
    precise float dl = d * float(int(ls) - 32);
    uint qb = bb + 8u + ib * 16u + (j0 & 15u);
    uint q0 = rd_u32(qb), q1 = rd_u32(qb + 4u);
    uint shift = (j0 >> 4) * 4u;
    for (uint e = 0u; e < 8u; e++) {
        uint q = ((e < 4u ? q0 : q1) >> (8u * (e & 3u) + shift)) & 0x0Fu;
        precise float v = dl * KVALUES_IQ4NL[q];
        DQ_SET(e, v)
    }
}

#elif WTYPE == 16 /* IQ2_XXS: d@0, 8 x {4 grid bytes, u32: 4 x 7 sign bits, 4-bit scale}@2 */
#define QK 256u
#define BLOCK_BYTES 66u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint ib = (c >> 2) & 7u, l = c & 3u; /* sub-block of 32, group of 8 in it */
    float d = rd_f16(bb);
    uint q = bb + 2u + 8u * ib;
    uint aux = rd_u32(q + 4u);
    precise float db = d * (0.5 + float(aux >> 28)) * 0.25;
    iq_put8(iq_grid8(IQT_IQ2XXS, rd_u8(q + l)), iq_ksigns((aux >> (7u * l)) & 127u), db, lo, hi);
}

#elif WTYPE == 17 /* IQ2_XS: d@0, 32 x u16 {9-bit grid index, 7 sign bits}@2, scales[8]@66 */
#define QK 256u
#define BLOCK_BYTES 74u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint ib = (c >> 2) & 7u, l = c & 3u;
    float d = rd_f16(bb);
    uint s = (rd_u8(bb + 66u + ib) >> (4u * (l >> 1))) & 0x0Fu;
    precise float db = d * (0.5 + float(s)) * 0.25;
    uint q = rd_u16(bb + 2u + 2u * (4u * ib + l));
    iq_put8(iq_grid8(IQT_IQ2XS, q & 511u), iq_ksigns(q >> 9), db, lo, hi);
}

#elif WTYPE == 22 /* IQ2_S: d@0, grid low bytes[32]@2, signs[32]@34, qh[8]@66, scales[8]@74 */
#define QK 256u
#define BLOCK_BYTES 82u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint ib = (c >> 2) & 7u, l = c & 3u;
    float d = rd_f16(bb);
    uint s = (rd_u8(bb + 74u + ib) >> (4u * (l >> 1))) & 0x0Fu;
    precise float db = d * (0.5 + float(s)) * 0.25;
    uint idx = rd_u8(bb + 2u + 4u * ib + l) | ((rd_u8(bb + 66u + ib) << (8u - 2u * l)) & 0x300u);
    iq_put8(iq_grid8(IQT_IQ2S, idx), rd_u8(bb + 34u + 4u * ib + l), db, lo, hi);
}

#elif WTYPE == 18 /* IQ3_XXS: d@0, grid bytes[64]@2, 8 x u32 {4 x 7 sign bits, 4-bit scale}@66 */
#define QK 256u
#define BLOCK_BYTES 98u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint ib = (c >> 2) & 7u, l = c & 3u;
    float d = rd_f16(bb);
    uint aux = rd_u32(bb + 66u + 4u * ib);
    precise float db = d * (0.5 + float(aux >> 28)) * 0.5;
    uint qs = bb + 2u + 8u * ib + 2u * l;
    uvec2 g = uvec2(iqt[IQT_IQ3XXS + rd_u8(qs)], iqt[IQT_IQ3XXS + rd_u8(qs + 1u)]);
    iq_put8(g, iq_ksigns((aux >> (7u * l)) & 127u), db, lo, hi);
}

#elif WTYPE == 21 /* IQ3_S: d@0, grid low bytes[64]@2, qh[8]@66, signs[32]@74, scales[4]@106 */
#define QK 256u
#define BLOCK_BYTES 110u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint ib = (c >> 2) & 7u, l = c & 3u;
    float d = rd_f16(bb);
    /* sub-blocks 2k and 2k+1 share scales[k], low and high nibble */
    uint s = (rd_u8(bb + 106u + (ib >> 1)) >> (4u * (ib & 1u))) & 0x0Fu;
    precise float db = d * float(1u + 2u * s);
    uint qs = bb + 2u + 8u * ib + 2u * l, qh = rd_u8(bb + 66u + ib);
    uvec2 g = uvec2(iqt[IQT_IQ3S + (rd_u8(qs) | ((qh << (8u - 2u * l)) & 256u))],
                    iqt[IQT_IQ3S + (rd_u8(qs + 1u) | ((qh << (7u - 2u * l)) & 256u))]);
    iq_put8(g, rd_u8(bb + 74u + 4u * ib + l), db, lo, hi);
}

#elif WTYPE == 19 /* IQ1_S: d@0, grid low bytes[32]@2, 8 x u16 {4 x 3 high index bits, 3-bit scale, delta sign}@34 */
#define QK 256u
#define BLOCK_BYTES 50u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint ib = (c >> 2) & 7u, l = c & 3u;
    float d = rd_f16(bb);
    uint qh = rd_u16(bb + 34u + 2u * ib);
    precise float dl = d * float(2u * ((qh >> 12) & 7u) + 1u);
    uint idx = rd_u8(bb + 2u + 4u * ib + l) | (((qh >> (3u * l)) & 7u) << 8);
    iq1_put8(idx, dl, (qh & 0x8000u) != 0u, lo, hi);
}

#elif WTYPE == 29 /* IQ1_M: grid low bytes[32]@0, qh[16]@32, scales[8]@48 (fp16 super-scale in the top nibbles of its 4 u16) */
#define QK 256u
#define BLOCK_BYTES 56u
void dq8(uint rb, uint c, uint n, out vec4 lo, out vec4 hi)
{
    uint bb = rb + (c >> 5) * BLOCK_BYTES;
    uint ib = (c >> 2) & 7u, l = c & 3u;
    uint sc0 = rd_u16(bb + 48u), sc1 = rd_u16(bb + 50u), sc2 = rd_u16(bb + 52u), sc3 = rd_u16(bb + 54u);
    float d = f16_bits_to_f32((sc0 >> 12) | ((sc1 >> 8) & 0x00F0u) | ((sc2 >> 4) & 0x0F00u) | (sc3 & 0xF000u));
    uint sc = rd_u16(bb + 48u + 2u * (ib >> 1));
    uint s = (sc >> (6u * (ib & 1u) + (l < 2u ? 0u : 3u))) & 7u;
    precise float dl = d * float(2u * s + 1u);
    /* each qh byte: the high index bits of two groups (bits 0-2, 4-6) and their delta signs (bits 3, 7) */
    uint h = rd_u8(bb + 32u + 2u * ib + (l >> 1)) >> (4u * (l & 1u));
    iq1_put8(rd_u8(bb + 4u * ib + l) | ((h & 7u) << 8), dl, (h & 8u) != 0u, lo, hi);
}

#else
#error "dequant.glsl: unknown WTYPE"
#endif
