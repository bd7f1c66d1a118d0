/*
 * AVX-512 VNNI matmul kernels of the avx512 backend (internal; compiled with
 * -mavx512f -mavx512bw -mavx512vl -mavx512vnni on top of the avx2 flags,
 * called only after dsri_avx512_available() said yes).
 *
 * The backend is the SIMD backends' shared driver (lib/backend/
 * simd_driver.inc.c, compiled by avx512.c) with these kernels: the shared
 * kernel interface (simd_kernel.h; here the gemm entry, 8 weight rows by a
 * whole tile of activation rows), activation rows rounded once per matmul.
 * Types without a kernel here take the avx2 kernels.
 */
#ifndef DSRI_AVX512_KERNELS_H
#define DSRI_AVX512_KERNELS_H

#include "backend/avx2/kernels.h"

/* DSRI_ACT_X8_0 block: dsri_aq8_0's layout with an exact integer in place
 * of s (the kernels compute sum((w + 128) * y) and start from c). */
typedef struct dsri_ax8_0 {
    float d;
    int32_t c; /* -128 * sum(q) */
    int8_t q[32];
} dsri_ax8_0;

/* DSRI_ACT_BF16 rows (BF16 weights where the CPU has AVX512_BF16): the
 * activations rounded to bf16 (to nearest even), zero up to a multiple of
 * 32 elements; dsri_avx512_act_row_bytes gives the padded size. */

const dsri_simd_kernel *dsri_avx512_kernel_for(uint32_t type);
size_t dsri_avx512_act_row_bytes(dsri_act_kind act, int64_t n);
void dsri_avx512_quantize_act(dsri_act_kind act, const float *x, void *dst, int64_t n);

/* CPUID check (cpu.c, compiled without the AVX flags). */
int dsri_avx512_available(void);

#endif
