/*
 * NEON kernels of the neon backend (internal; aarch64 only).
 *
 * The scheme of the avx2 backend (lib/backend/avx2/kernels.h): each
 * activation row is rounded once to 8-bit blocks (Q8_0-like blocks of 32 for
 * the 32-element weight types, Q8_K-like blocks of 256 for the K types) and
 * every weight row is an integer dot product with it, scaled per block;
 * F32/F16/BF16 weights use f32 FMA dots against the f32 activations. Types
 * without a kernel are dequantized to f32 and use the f32 kernel.
 *
 * kernels.c is compiled twice: once for plain ARMv8 NEON (the integer dots
 * use smull + sadalp) and once with -march=armv8.2-a+dotprod and
 * DSRI_NEON_DOTPROD defined (sdot), which names its table
 * dsri_neon_kernel_for_dotprod. Both compute the same exact int32 block sums
 * and the same float arithmetic around them, so they give the same bits.
 *
 * A dot kernel takes up to DSRI_NEON_NR activation rows at once (x_stride
 * bytes apart) so one decoded weight block serves several rows; each row's
 * result is the same whatever rows share the call.
 */
#ifndef DSRI_NEON_KERNELS_H
#define DSRI_NEON_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define DSRI_NEON_NR 4

/* The form the activations take for a weight type. */
typedef enum dsri_neon_act {
    DSRI_NEON_ACT_F32 = 0, /* as they are */
    DSRI_NEON_ACT_Q8_0,    /* blocks of 32: f32 d, f32 d*sum(q), 32 x int8 */
    DSRI_NEON_ACT_Q8_K     /* blocks of 256: f32 d, 16 x int16 sums of 16, 256 x int8 */
} dsri_neon_act;

typedef struct dsri_neon_q8_0 {
    float d;
    float s; /* d * sum(q) */
    int8_t q[32];
} dsri_neon_q8_0;

typedef struct dsri_neon_q8_k {
    float d;
    int16_t bsums[16];
    int8_t q[256];
} dsri_neon_q8_k;

/* out[r] = dot(weight row w, activation row r) for r < nr (1..DSRI_NEON_NR);
 * n elements; activation row r at (const char *)x + r * x_stride. */
typedef void (*dsri_neon_dot_fn)(int64_t n, const void *w, const void *x, size_t x_stride, int nr, float *out);

typedef struct dsri_neon_kernel {
    dsri_neon_act act;
    dsri_neon_dot_fn dot;
} dsri_neon_kernel;

/* NULL when the type has no fast kernel (dequantize and use the F32 one). */
const dsri_neon_kernel *dsri_neon_kernel_for(uint32_t type);
const dsri_neon_kernel *dsri_neon_kernel_for_dotprod(uint32_t type); /* only where built (DSRI_NEON_HAVE_DOTPROD) */
extern const dsri_neon_kernel dsri_neon_kernel_f32;

/* Bytes of one activation row of n elements in that form (n a multiple of
 * the block size for the quantized forms). */
size_t dsri_neon_act_row_bytes(dsri_neon_act act, int64_t n);
/* Round one row of n floats to the form (not DSRI_NEON_ACT_F32). */
void dsri_neon_quantize_act(dsri_neon_act act, const float *x, void *dst, int64_t n);

/* 1 when the CPU has the dot product instructions (and the dotprod kernels
 * are built). */
int dsri_neon_has_dotprod(void);

/* Elementwise helpers. */
float dsri_neon_dot_f32(const float *a, const float *b, int64_t n);
void dsri_neon_axpy(float *y, const float *x, float a, int64_t n); /* y += a*x */
void dsri_neon_add(float *y, const float *x, int64_t n);
void dsri_neon_silu_mul(float *g, const float *u, int64_t n);
void dsri_neon_scale_mul(float *y, const float *x, float s, const float *w, int64_t n); /* y = x*s*w */
/* v[i] = exp(v[i] - mx) for i < n; returns the sum. */
float dsri_neon_exp_sum(float *v, float mx, int64_t n);
float dsri_neon_max(const float *v, int64_t n);

#endif
