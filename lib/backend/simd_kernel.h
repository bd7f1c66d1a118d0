/*
 * The matmul kernel interface of the SIMD backends (avx2, avx512, neon;
 * internal). One definition for all of them because one driver,
 * lib/backend/simd_driver.inc.c, calls every backend's kernels; each
 * backend's kernels.h adds its own tables and quantizers. Plain C: the x86
 * and the arm kernels both include it.
 *
 * Matmuls work like llama.cpp's CPU backend: each activation row is rounded
 * once per matmul to 8-bit blocks (Q8_0-like blocks of 32 for the 32-element
 * weight types, Q8_K-like blocks of 256 for the K types and IQ4_XS) and every
 * weight row is then an integer dot product with it, scaled per block.
 * F32/F16/BF16 weights use f32 FMA dots against the f32 activations.
 */
#ifndef DSRI_SIMD_KERNEL_H
#define DSRI_SIMD_KERNEL_H

#include <stddef.h>
#include <stdint.h>

/* The form the activations take for a weight type. */
typedef enum dsri_act_kind {
    DSRI_ACT_F32 = 0, /* as they are */
    DSRI_ACT_Q8_0,    /* blocks of 32: f32 d, f32 d*sum(q), 32 x int8 */
    DSRI_ACT_Q8_K,    /* blocks of 256: f32 d, 16 x int16 sums of 16, 256 x int8 */
    DSRI_ACT_X8_0,    /* avx512 only: blocks of 32: f32 d, int32 -128*sum(q), 32 x int8 */
    DSRI_ACT_BF16     /* avx512 only: bf16 (rounded to nearest even), zero to a multiple of 32 */
} dsri_act_kind;

typedef struct dsri_aq8_0 {
    float d;
    float s; /* d * sum(q) */
    int8_t q[32];
} dsri_aq8_0;

typedef struct dsri_aq8_k {
    float d;
    int16_t bsums[16];
    int8_t q[256];
} dsri_aq8_k;

/* out[r] = dot(weight row w, activation row r) for r < nr (1..DSRI_SIMD_NR);
 * n elements; activation row r at (const char *)x + r * x_stride. Taking
 * several activation rows lets one decoded weight block serve them all; each
 * row's result is the same whatever rows share the call. */
#define DSRI_SIMD_NR 4
typedef void (*dsri_simd_dot_fn)(int64_t n, const void *w, const void *x, size_t x_stride, int nr, float *out);

/* The same for two weight rows (w and w + w_stride bytes) and up to
 * DSRI_SIMD_NR2 activation rows at once: out[2*r + k] = dot(weight row k,
 * activation row r), bit-identical to what dot gives for each pair. Where a
 * weight row costs little to decode (f32/f16/bf16), this halves the
 * activation loads. */
#define DSRI_SIMD_NR2 2
typedef void (*dsri_simd_dot2_fn)(int64_t n, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                  int nr, float *out);

/* Up to gemm_nw weight rows (nw of them, w_stride bytes apart) times nr
 * activation rows (any number): y[r * y_stride + k] = dot(weight row k,
 * activation row r). Each value bit-identical to what the kernel gives for
 * that pair in any other call (grouping never changes a result). A kernel's
 * gemm_nw of 0 means DSRI_SIMD_GEMM_NW. */
#define DSRI_SIMD_GEMM_NW 8
typedef void (*dsri_simd_gemm_fn)(int64_t n, const void *w, size_t w_stride, int nw, const void *x, size_t x_stride,
                                  int nr, float *y, size_t y_stride);

typedef struct dsri_simd_kernel {
    dsri_act_kind act;
    dsri_simd_dot_fn dot;
    dsri_simd_dot2_fn dot2; /* NULL: none */
    dsri_simd_gemm_fn gemm; /* NULL: none; else used for every matmul of the type (avx512) */
    int gemm_nw;            /* the most weight rows gemm takes per call; 0: DSRI_SIMD_GEMM_NW */
} dsri_simd_kernel;

#endif
