/*
 * Dequantization of the lattice ("IQ") weight types, bit-exact with ggml's
 * dequantize_row_iq*: the same float expressions in the same order (see
 * quant.h). Groups of 8 (IQ2, IQ1) or 4 (IQ3) weights are one grid entry
 * (iq_tables.h) times a scale, with signs from a sign byte. Block layouts
 * (byte offsets; fp16 and u16/u32 fields little-endian):
 *
 *   IQ2_XXS  66 B / 256: d@0, 8 x {4 grid bytes, u32: 4 x 7 sign bits, 4-bit scale}@2
 *   IQ2_XS   74 B / 256: d@0, 32 x u16 {9-bit grid index, 7 sign bits}@2, scales[8]@66
 *   IQ2_S    82 B / 256: d@0, grid low bytes[32]@2, signs[32]@34, qh[8]@66, scales[8]@74
 *   IQ3_XXS  98 B / 256: d@0, grid bytes[64]@2, 8 x u32 {4 x 7 sign bits, 4-bit scale}@66
 *   IQ3_S   110 B / 256: d@0, grid low bytes[64]@2, qh[8]@66, signs[32]@74, scales[4]@106
 *   IQ1_S    50 B / 256: d@0, grid low bytes[32]@2, 8 x u16 {4 x 3 high index bits,
 *                        3-bit scale, delta sign}@34
 *   IQ1_M    56 B / 256: grid low bytes[32]@0, qh[16]@32 (per byte: two 3-bit high
 *                        index bits + delta sign), scales[8]@48 (3-bit scales; the
 *                        fp16 super-scale in the top nibbles of its 4 u16)
 *
 * Scales are odd multiples: IQ2 (0.5 + s) / 4, IQ3_XXS (0.5 + s) / 2, IQ3_S
 * and IQ1 2s + 1.
 */
#include "quant/iq_tables.h"
#include "quant_internal.h"

/* y[j] = db * grid byte j, negated where sign bit j is set, j < n. */
static void put_signed(float *y, float db, const uint8_t *grid, unsigned signs, int n)
{
    for (int j = 0; j < n; j++)
        y[j] = db * (float)grid[j] * (signs & (1u << j) ? -1.0f : 1.0f);
}

/* The bytes of a grid entry, lowest first, whatever the host's order. */
static void grid8(uint64_t v, uint8_t *b)
{
    for (int j = 0; j < 8; j++)
        b[j] = (uint8_t)(v >> (8 * j));
}

static void grid4(uint32_t v, uint8_t *b)
{
    for (int j = 0; j < 4; j++)
        b[j] = (uint8_t)(v >> (8 * j));
}

static void dq_iq2_xxs(const uint8_t *x, float *y, int64_t nb)
{
    uint8_t g[8];
    for (int64_t i = 0; i < nb; i++, x += 66) {
        const float d = dsri_rd_f16(x);
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = x + 2 + 8 * ib;
            const uint32_t aux = dsri_rd_u32(q + 4);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8) {
                grid8(dsri_iq2xxs_grid[q[l]], g);
                put_signed(y, db, g, dsri_ksigns_iq2xs[(aux >> (7 * l)) & 127], 8);
            }
        }
    }
}

static void dq_iq2_xs(const uint8_t *x, float *y, int64_t nb)
{
    uint8_t g[8];
    for (int64_t i = 0; i < nb; i++, x += 74) {
        const float d = dsri_rd_f16(x);
        const uint8_t *scales = x + 66;
        for (int ib = 0; ib < 8; ib++) {
            const float db[2] = {d * (0.5f + (float)(scales[ib] & 0x0F)) * 0.25f,
                                 d * (0.5f + (float)(scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, y += 8) {
                const unsigned q = dsri_rd_u16(x + 2 + 2 * (4 * ib + l));
                grid8(dsri_iq2xs_grid[q & 511], g);
                put_signed(y, db[l / 2], g, dsri_ksigns_iq2xs[q >> 9], 8);
            }
        }
    }
}

static void dq_iq2_s(const uint8_t *x, float *y, int64_t nb)
{
    uint8_t g[8];
    for (int64_t i = 0; i < nb; i++, x += 82) {
        const float d = dsri_rd_f16(x);
        const uint8_t *qs = x + 2, *signs = x + 34, *qh = x + 66, *scales = x + 74;
        for (int ib = 0; ib < 8; ib++, qs += 4, signs += 4) {
            const float db[2] = {d * (0.5f + (float)(scales[ib] & 0x0F)) * 0.25f,
                                 d * (0.5f + (float)(scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, y += 8) {
                grid8(dsri_iq2s_grid[qs[l] | ((qh[ib] << (8 - 2 * l)) & 0x300)], g);
                put_signed(y, db[l / 2], g, signs[l], 8);
            }
        }
    }
}

static void dq_iq3_xxs(const uint8_t *x, float *y, int64_t nb)
{
    uint8_t g1[4], g2[4];
    for (int64_t i = 0; i < nb; i++, x += 98) {
        const float d = dsri_rd_f16(x);
        const uint8_t *qs = x + 2;
        for (int ib = 0; ib < 8; ib++, qs += 8) {
            const uint32_t aux = dsri_rd_u32(x + 66 + 4 * ib);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, y += 8) {
                const unsigned signs = dsri_ksigns_iq2xs[(aux >> (7 * l)) & 127];
                grid4(dsri_iq3xxs_grid[qs[2 * l]], g1);
                grid4(dsri_iq3xxs_grid[qs[2 * l + 1]], g2);
                put_signed(y, db, g1, signs, 4);
                put_signed(y + 4, db, g2, signs >> 4, 4);
            }
        }
    }
}

static void dq_iq3_s(const uint8_t *x, float *y, int64_t nb)
{
    uint8_t g1[4], g2[4];
    for (int64_t i = 0; i < nb; i++, x += 110) {
        const float d = dsri_rd_f16(x);
        const uint8_t *qs = x + 2, *qh = x + 66, *signs = x + 74, *scales = x + 106;
        for (int ib = 0; ib < 8; ib++, qs += 8, signs += 4) {
            /* sub-blocks 2k and 2k+1 share scales[k], low and high nibble */
            const float db = d * (float)(1 + 2 * ((scales[ib / 2] >> (4 * (ib % 2))) & 0x0F));
            for (int l = 0; l < 4; l++, y += 8) {
                grid4(dsri_iq3s_grid[qs[2 * l] | ((qh[ib] << (8 - 2 * l)) & 256)], g1);
                grid4(dsri_iq3s_grid[qs[2 * l + 1] | ((qh[ib] << (7 - 2 * l)) & 256)], g2);
                put_signed(y, db, g1, signs[l], 4);
                put_signed(y + 4, db, g2, (unsigned)signs[l] >> 4, 4);
            }
        }
    }
}

/* y[j] = dl * (grid value j + delta), j < 8 (IQ1_S and IQ1_M). */
static void put_iq1(float *y, float dl, unsigned index, float delta)
{
    const uint64_t v = dsri_iq1s_grid[index];
    for (int j = 0; j < 8; j++)
        y[j] = dl * ((float)(int8_t)(uint8_t)(v >> (8 * j)) + delta);
}

static void dq_iq1_s(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 50) {
        const float d = dsri_rd_f16(x);
        const uint8_t *qs = x + 2;
        for (int ib = 0; ib < 8; ib++, qs += 4) {
            const unsigned qh = dsri_rd_u16(x + 34 + 2 * ib);
            const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -DSRI_IQ1_DELTA : DSRI_IQ1_DELTA;
            for (int l = 0; l < 4; l++, y += 8)
                put_iq1(y, dl, qs[l] | (((qh >> (3 * l)) & 7) << 8), delta);
        }
    }
}

static void dq_iq1_m(const uint8_t *x, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 56) {
        const uint8_t *qs = x, *qh = x + 32;
        unsigned sc[4];
        for (int k = 0; k < 4; k++)
            sc[k] = dsri_rd_u16(x + 48 + 2 * k);
        const unsigned bits = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000);
        const float d = dsri_fp16_to_fp32((uint16_t)bits);
        for (int ib = 0; ib < 8; ib++, qs += 4, qh += 2) {
            const float dl1 = d * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) + 1);
            const float dl2 = d * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1);
            /* each qh byte: the high index bits of two groups (bits 0-2,
             * 4-6) and their delta signs (bits 3, 7) */
            for (int l = 0; l < 4; l++, y += 8) {
                const unsigned h = qh[l / 2] >> (4 * (l % 2));
                put_iq1(y, l < 2 ? dl1 : dl2, qs[l] | ((h & 7) << 8), h & 8 ? -DSRI_IQ1_DELTA : DSRI_IQ1_DELTA);
            }
        }
    }
}

int dsri_dequantize_iq(uint32_t ggml_type, const uint8_t *x, float *y, int64_t nb)
{
    switch (ggml_type) {
    case DSRI_TYPE_IQ2_XXS: dq_iq2_xxs(x, y, nb); return 0;
    case DSRI_TYPE_IQ2_XS: dq_iq2_xs(x, y, nb); return 0;
    case DSRI_TYPE_IQ2_S: dq_iq2_s(x, y, nb); return 0;
    case DSRI_TYPE_IQ3_XXS: dq_iq3_xxs(x, y, nb); return 0;
    case DSRI_TYPE_IQ3_S: dq_iq3_s(x, y, nb); return 0;
    case DSRI_TYPE_IQ1_S: dq_iq1_s(x, y, nb); return 0;
    case DSRI_TYPE_IQ1_M: dq_iq1_m(x, y, nb); return 0;
    default: return -1;
    }
}
