/*
 * AVX2 kernels of the avx2 backend (internal; compiled with -mavx2 -mfma
 * -mf16c, called only after the CPU was checked). The kernel interface and
 * the activation blocks are the SIMD backends' shared ones
 * (lib/backend/simd_kernel.h); the integer dots here use maddubs/madd.
 */
#ifndef DSRI_AVX2_KERNELS_H
#define DSRI_AVX2_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "backend/simd_kernel.h"

/* NULL when the type has no fast kernel (dequantize and use the F32 one). */
const dsri_simd_kernel *dsri_avx2_kernel_for(uint32_t type);
extern const dsri_simd_kernel dsri_avx2_kernel_f32;

/* Bytes of one activation row of n elements in that form (n a multiple of
 * the block size for the quantized forms). */
size_t dsri_avx2_act_row_bytes(dsri_act_kind act, int64_t n);
/* Round one row of n floats to the form (not DSRI_ACT_F32). */
void dsri_avx2_quantize_act(dsri_act_kind act, const float *x, void *dst, int64_t n);

/* CPUID check (cpu.c, compiled without the AVX flags). */
int dsri_avx2_available(void);
/* 1 when the OS saves all the XCR0 state components in mask (cpu.c). */
int dsri_x86_os_saves(unsigned long long mask);

/* Elementwise helpers. */
float dsri_avx2_dot_f32(const float *a, const float *b, int64_t n);
void dsri_avx2_axpy(float *y, const float *x, float a, int64_t n); /* y += a*x */
void dsri_avx2_add(float *y, const float *x, int64_t n);
void dsri_avx2_silu_mul(float *g, const float *u, int64_t n);
float dsri_avx2_sumsq(const float *x, int64_t n);
void dsri_avx2_scale_mul(float *y, const float *x, float s, const float *w, int64_t n); /* y = x*s*w */
/* v[i] = exp(v[i] - mx) for i < n; returns the sum. */
float dsri_avx2_exp_sum(float *v, float mx, int64_t n);
float dsri_avx2_max(const float *v, int64_t n);
void dsri_avx2_scale(float *v, float s, int64_t n);

/* The same under the names the shared ops (lib/backend/simd_ops.inc.c) use:
 * the avx2 and avx512 backends both take these. */
#define SIMD_DOT_F32 dsri_avx2_dot_f32
#define SIMD_SUMSQ dsri_avx2_sumsq
#define SIMD_AXPY dsri_avx2_axpy
#define SIMD_SCALE_MUL dsri_avx2_scale_mul
#define SIMD_ADD dsri_avx2_add
#define SIMD_SILU_MUL dsri_avx2_silu_mul
#define SIMD_MAX dsri_avx2_max
#define SIMD_EXP_SUM dsri_avx2_exp_sum

#endif
