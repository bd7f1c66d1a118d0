/*
 * libdsr1 - ggml type table, row sizes, reference dot product.
 */
#include "quant.h"

static const dsri_type_traits k_f32 = {"f32", 1, 4};
static const dsri_type_traits k_f16 = {"f16", 1, 2};
static const dsri_type_traits k_q4_0 = {"q4_0", DSRI_QK4_0, 2 + DSRI_QK4_0 / 2};          /* 18 */
static const dsri_type_traits k_q4_1 = {"q4_1", DSRI_QK4_1, 2 + 2 + DSRI_QK4_1 / 2};      /* 20 */
static const dsri_type_traits k_q5_0 = {"q5_0", DSRI_QK5_0, 2 + 4 + DSRI_QK5_0 / 2};      /* 22 */
static const dsri_type_traits k_q5_1 = {"q5_1", DSRI_QK5_1, 2 + 2 + 4 + DSRI_QK5_1 / 2};  /* 24 */
static const dsri_type_traits k_q8_0 = {"q8_0", DSRI_QK8_0, 2 + DSRI_QK8_0};              /* 34 */
static const dsri_type_traits k_q2_k = {"q2_K", DSRI_QK_K, DSRI_QK_K / 16 + DSRI_QK_K / 4 + 2 + 2}; /* 84 */
static const dsri_type_traits k_q3_k = {"q3_K", DSRI_QK_K, DSRI_QK_K / 8 + DSRI_QK_K / 4 + 12 + 2}; /* 110 */
static const dsri_type_traits k_q4_k = {"q4_K", DSRI_QK_K, 2 + 2 + DSRI_K_SCALE_SIZE + DSRI_QK_K / 2}; /* 144 */
static const dsri_type_traits k_q5_k = {"q5_K", DSRI_QK_K,
                                        2 + 2 + DSRI_K_SCALE_SIZE + DSRI_QK_K / 8 + DSRI_QK_K / 2}; /* 176 */
static const dsri_type_traits k_q6_k = {"q6_K", DSRI_QK_K, DSRI_QK_K / 2 + DSRI_QK_K / 4 + DSRI_QK_K / 16 + 2}; /* 210 */
static const dsri_type_traits k_iq4_nl = {"iq4_nl", DSRI_QK4_NL, 2 + DSRI_QK4_NL / 2}; /* 18 */
static const dsri_type_traits k_iq4_xs = {"iq4_xs", DSRI_QK_K, 2 + 2 + DSRI_QK_K / 64 + DSRI_QK_K / 2}; /* 136 */
static const dsri_type_traits k_bf16 = {"bf16", 1, 2};
static const dsri_type_traits k_iq2_xxs = {"iq2_xxs", DSRI_QK_K, 2 + DSRI_QK_K / 4};                  /* 66 */
static const dsri_type_traits k_iq2_xs = {"iq2_xs", DSRI_QK_K, 2 + DSRI_QK_K / 4 + DSRI_QK_K / 32};    /* 74 */
static const dsri_type_traits k_iq2_s = {"iq2_s", DSRI_QK_K, 2 + DSRI_QK_K / 4 + DSRI_QK_K / 16};      /* 82 */
static const dsri_type_traits k_iq3_xxs = {"iq3_xxs", DSRI_QK_K, 2 + 3 * DSRI_QK_K / 8};              /* 98 */
static const dsri_type_traits k_iq3_s = {"iq3_s", DSRI_QK_K, 2 + 13 * DSRI_QK_K / 32 + DSRI_QK_K / 64}; /* 110 */
static const dsri_type_traits k_iq1_s = {"iq1_s", DSRI_QK_K, 2 + DSRI_QK_K / 8 + DSRI_QK_K / 16};      /* 50 */
static const dsri_type_traits k_iq1_m = {"iq1_m", DSRI_QK_K, DSRI_QK_K / 8 + DSRI_QK_K / 16 + DSRI_QK_K / 32}; /* 56 */

const dsri_type_traits *dsri_type_traits_get(uint32_t ggml_type)
{
    switch (ggml_type) {
    case DSRI_TYPE_F32: return &k_f32;
    case DSRI_TYPE_F16: return &k_f16;
    case DSRI_TYPE_Q4_0: return &k_q4_0;
    case DSRI_TYPE_Q4_1: return &k_q4_1;
    case DSRI_TYPE_Q5_0: return &k_q5_0;
    case DSRI_TYPE_Q5_1: return &k_q5_1;
    case DSRI_TYPE_Q8_0: return &k_q8_0;
    case DSRI_TYPE_Q2_K: return &k_q2_k;
    case DSRI_TYPE_Q3_K: return &k_q3_k;
    case DSRI_TYPE_Q4_K: return &k_q4_k;
    case DSRI_TYPE_Q5_K: return &k_q5_k;
    case DSRI_TYPE_Q6_K: return &k_q6_k;
    case DSRI_TYPE_IQ4_NL: return &k_iq4_nl;
    case DSRI_TYPE_IQ4_XS: return &k_iq4_xs;
    case DSRI_TYPE_BF16: return &k_bf16;
    case DSRI_TYPE_IQ2_XXS: return &k_iq2_xxs;
    case DSRI_TYPE_IQ2_XS: return &k_iq2_xs;
    case DSRI_TYPE_IQ2_S: return &k_iq2_s;
    case DSRI_TYPE_IQ3_XXS: return &k_iq3_xxs;
    case DSRI_TYPE_IQ3_S: return &k_iq3_s;
    case DSRI_TYPE_IQ1_S: return &k_iq1_s;
    case DSRI_TYPE_IQ1_M: return &k_iq1_m;
    default: return NULL;
    }
}

size_t dsri_row_size(uint32_t ggml_type, int64_t n)
{
    const dsri_type_traits *t = dsri_type_traits_get(ggml_type);
    if (!t || n < 0 || n % t->block_size != 0)
        return 0;
    const uint64_t blocks = (uint64_t)n / t->block_size;
    if (blocks > SIZE_MAX / t->type_size)
        return 0;
    return (size_t)blocks * t->type_size;
}

float dsri_vec_dot_f32(const float *a, const float *b, int64_t n)
{
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}
