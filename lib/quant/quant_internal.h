/*
 * libdsr1 - helpers shared by the files of lib/quant (not part of quant.h).
 * Little-endian byte access, so block fields can be read at any alignment.
 */
#ifndef DSRI_QUANT_INTERNAL_H
#define DSRI_QUANT_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "quant.h"

/*
 * Bit-exactness with ggml needs every a*b+c evaluated as two rounded
 * operations.  GCC in GNU mode (-ffp-contract=fast) and clang (contract=on)
 * would otherwise fuse them into FMAs wherever the target has FMA (x86 with
 * -march=native, every aarch64), which changes dequantized values in the last
 * bit and makes the K-quant searches pick different levels.  Everything that
 * includes this header does float arithmetic meant to match ggml.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ggml's GROUP_MAX_EPS: a block whose largest magnitude is below it is zero */
#define DSRI_GROUP_MAX_EPS 1e-15f

/* round half to even for |f| < 2^22 (ggml's nearest_int), no UB for any f */
static inline int dsri_nearest_int(float f)
{
    const float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007FFFFF) - 0x00400000;
}

static inline uint16_t dsri_rd_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t dsri_rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void dsri_wr_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)(v >> 8);
}

static inline void dsri_wr_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)((v >> 8) & 0xFF);
    p[2] = (uint8_t)((v >> 16) & 0xFF);
    p[3] = (uint8_t)(v >> 24);
}

/* fp16 stored little-endian at p, as float. */
static inline float dsri_rd_f16(const uint8_t *p)
{
    return dsri_fp16_to_fp32(dsri_rd_u16(p));
}

/*
 * Q4_K / Q5_K packed 6-bit scales and mins (12 bytes for 8 sub-blocks):
 *   j < 4 : scale = q[j] & 63,                       min = q[j+4] & 63
 *   j >= 4: scale = (q[j+4] & 15) | (q[j-4] >> 6) << 4,
 *           min   = (q[j+4] >> 4) | (q[j]   >> 6) << 4
 */
static inline void dsri_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = (uint8_t)(q[j] & 63);
        *m = (uint8_t)(q[j + 4] & 63);
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q3_K: 16 signed 6-bit scales packed in 12 bytes, returned minus 32.
 * Low 4 bits: j < 8 ? q[j] & 15 : q[j-8] >> 4; high 2 bits: q[8 + j%4] >> (2*(j/4)). */
static inline int dsri_scale_q3_k(int j, const uint8_t *q)
{
    int lo = j < 8 ? (q[j] & 0x0F) : (q[j - 8] >> 4);
    int hi = (q[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Dequantize nb blocks of one of the lattice types IQ1_S, IQ1_M, IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S (dequant_iq.c); -1 for any other type. */
int dsri_dequantize_iq(uint32_t ggml_type, const uint8_t *x, float *y, int64_t nb);

/* IQ4_NL / IQ4_XS: nb blocks from x into y, imatrix (the blocks' columns'
 * importance, or NULL) as quant_iq4.c says; -1 for any other type. */
int dsri_quantize_iq4(uint32_t ggml_type, const float *x, uint8_t *y, int64_t nb, const float *imatrix);

/* The 16 non-linear levels of IQ4_NL / IQ4_XS. */
extern const int8_t dsri_kvalues_iq4nl[16];

#endif /* DSRI_QUANT_INTERNAL_H */
