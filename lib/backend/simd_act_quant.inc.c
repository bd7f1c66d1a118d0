/*
 * Activation rows to the 8-bit block forms of simd_kernel.h (DSRI_ACT_Q8_0,
 * DSRI_ACT_Q8_K), the rounding of llama.cpp's quantize_row_q8_0/q8_K: per
 * block d = max|x| / 127 and q = round-half-even(x * 127 / max|x|). One copy
 * for the avx2 and neon kernels so the rule is written once; included by
 * their kernels.c after they define, in their instruction set:
 *   float absmax(const float *x, int64_t n)     max |x[i]|, n a multiple of 32
 *   int round32(const float *x, float id, int8_t *q)
 *                                               q[i] = round-half-even(x[i] * id)
 *                                               (saturated to int8) for i < 32;
 *                                               returns sum(q)
 *   int sum16(const int8_t *q)                  q[0] + ... + q[15]
 * It defines act_row_bytes() and quantize_act() (static), which the kernels
 * export under their backend's names.
 */

/* Bytes of one activation row of n elements in that form (n a multiple of
 * the block size for the quantized forms). */
static size_t act_row_bytes(dsri_act_kind act, int64_t n)
{
    switch (act) {
    case DSRI_ACT_Q8_0: return (size_t)(n / 32) * sizeof(dsri_aq8_0);
    case DSRI_ACT_Q8_K: return (size_t)(n / 256) * sizeof(dsri_aq8_k);
    default: return (size_t)n * sizeof(float);
    }
}

static void quantize_act(dsri_act_kind act, const float *x, void *dst, int64_t n)
{
    if (act == DSRI_ACT_Q8_0) {
        dsri_aq8_0 *y = dst;
        for (int64_t ib = 0; ib < n / 32; ib++, x += 32) {
            float amax = absmax(x, 32);
            float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
            int sum = round32(x, id, y[ib].q);
            y[ib].d = d;
            y[ib].s = d * (float)sum;
        }
    } else if (act == DSRI_ACT_Q8_K) {
        dsri_aq8_k *y = dst;
        for (int64_t ib = 0; ib < n / 256; ib++, x += 256) {
            float amax = absmax(x, 256);
            float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (int k = 0; k < 8; k++)
                round32(x + 32 * k, id, y[ib].q + 32 * k);
            for (int j = 0; j < 16; j++)
                y[ib].bsums[j] = (int16_t)sum16(y[ib].q + 16 * j);
            y[ib].d = d;
        }
    }
}
