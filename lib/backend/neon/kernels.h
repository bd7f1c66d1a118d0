/*
 * NEON kernels of the neon backend (internal; aarch64 only).
 *
 * The scheme, the kernel interface and the activation blocks are the SIMD
 * backends' shared ones (lib/backend/simd_kernel.h); only dot kernels here
 * (no dot2 / gemm entries); the IQ lattice types' in iq_dot.inc.c. Types
 * without a kernel are dequantized to f32 and use the f32 kernel.
 *
 * kernels.c is compiled twice: once for plain ARMv8 NEON (the integer dots
 * use smull + sadalp) and once with -march=armv8.2-a+dotprod and
 * DSRI_NEON_DOTPROD defined (sdot), which names its table
 * dsri_neon_kernel_for_dotprod. Both compute the same exact int32 block sums
 * and the same float arithmetic around them, so they give the same bits.
 */
#ifndef DSRI_NEON_KERNELS_H
#define DSRI_NEON_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "backend/simd_kernel.h"

/* NULL when the type has no fast kernel (dequantize and use the F32 one). */
const dsri_simd_kernel *dsri_neon_kernel_for(uint32_t type);
const dsri_simd_kernel *dsri_neon_kernel_for_dotprod(uint32_t type); /* only where built (DSRI_NEON_HAVE_DOTPROD) */
extern const dsri_simd_kernel dsri_neon_kernel_f32;

/* Bytes of one activation row of n elements in that form (n a multiple of
 * the block size for the quantized forms). */
size_t dsri_neon_act_row_bytes(dsri_act_kind act, int64_t n);
/* Round one row of n floats to the form (not DSRI_ACT_F32). */
void dsri_neon_quantize_act(dsri_act_kind act, const float *x, void *dst, int64_t n);

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

/* The same under the names the shared ops (lib/backend/simd_ops.inc.c) use;
 * there is no separate sum of squares. */
#define SIMD_DOT_F32 dsri_neon_dot_f32
#define SIMD_SUMSQ(x, n) dsri_neon_dot_f32((x), (x), (n))
#define SIMD_AXPY dsri_neon_axpy
#define SIMD_SCALE_MUL dsri_neon_scale_mul
#define SIMD_ADD dsri_neon_add
#define SIMD_SILU_MUL dsri_neon_silu_mul
#define SIMD_MAX dsri_neon_max
#define SIMD_EXP_SUM dsri_neon_exp_sum

#endif
