/*
 * AVX2 kernels of the avx2 backend (internal; compiled with -mavx2 -mfma
 * -mf16c, called only after the CPU was checked).
 *
 * Matmuls work like llama.cpp's CPU backend: each activation row is rounded
 * once to 8-bit blocks (Q8_0-like blocks of 32 for the 32-element weight
 * types, Q8_K-like blocks of 256 for the K types and IQ4_XS) and every weight
 * row is then an integer dot product with it (maddubs/madd), scaled per
 * block. F32/F16/BF16 weights use f32 FMA dots against the f32 activations.
 *
 * A dot kernel takes up to DSRI_AVX2_NR activation rows at once (x_stride
 * bytes apart) so one decoded weight block serves several rows.
 */
#ifndef DSRI_AVX2_KERNELS_H
#define DSRI_AVX2_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define DSRI_AVX2_NR 4

/* The form the activations take for a weight type. */
typedef enum dsri_act_kind {
    DSRI_ACT_F32 = 0, /* as they are */
    DSRI_ACT_Q8_0,    /* blocks of 32: f32 d, f32 d*sum(q), 32 x int8 */
    DSRI_ACT_Q8_K,    /* blocks of 256: f32 d, 16 x int16 sums of 16, 256 x int8 */
    DSRI_ACT_X8_0     /* avx512 only: blocks of 32: f32 d, int32 -128*sum(q), 32 x int8 */
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

/* out[r] = dot(weight row w, activation row r) for r < nr (1..DSRI_AVX2_NR);
 * n elements; activation row r at (const char *)x + r * x_stride. */
typedef void (*dsri_avx2_dot_fn)(int64_t n, const void *w, const void *x, size_t x_stride, int nr,
                                 float *out);

/* The same for two weight rows (w and w + w_stride bytes) and up to
 * DSRI_AVX2_NR2 activation rows at once: out[2*r + k] = dot(weight row k,
 * activation row r), bit-identical to what dot gives for each pair. Where a
 * weight row costs little to decode (f32/f16/bf16), this halves the
 * activation loads. */
#define DSRI_AVX2_NR2 2
typedef void (*dsri_avx2_dot2_fn)(int64_t n, const void *w, size_t w_stride, const void *x, size_t x_stride,
                                  int nr, float *out);

/* Up to DSRI_AVX2_GEMM_NW weight rows (nw of them, w_stride bytes apart)
 * times nr activation rows (any number): y[r * y_stride + k] = dot(weight
 * row k, activation row r). Each value bit-identical to what the kernel gives
 * for that pair in any other call (grouping never changes a result). */
#define DSRI_AVX2_GEMM_NW 8
typedef void (*dsri_avx2_gemm_fn)(int64_t n, const void *w, size_t w_stride, int nw, const void *x, size_t x_stride,
                                  int nr, float *y, size_t y_stride);

typedef struct dsri_avx2_kernel {
    dsri_act_kind act;
    dsri_avx2_dot_fn dot;
    dsri_avx2_dot2_fn dot2; /* NULL: none */
    dsri_avx2_gemm_fn gemm; /* NULL: none; else used for every matmul of the type (avx512) */
} dsri_avx2_kernel;

/* NULL when the type has no fast kernel (dequantize and use the F32 one). */
const dsri_avx2_kernel *dsri_avx2_kernel_for(uint32_t type);
extern const dsri_avx2_kernel dsri_avx2_kernel_f32;

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

#endif
