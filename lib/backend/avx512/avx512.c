/*
 * The avx512 backend: x86-64 with AVX-512 F/BW/VL and VNNI (checked with
 * CPUID at run time, cpu.c). It is the avx2 backend's driver (matmul tiling
 * and threads, elementwise ops, attention), compiled again here with the
 * matmul kernels of kernels.c, which use vpdpbusd / vpdpwssd where avx2
 * needs maddubs + madd (and the sign trick for signed weights).
 */
#include "backend/avx512/kernels.h"

#define DSRI_VARIANT_OPS dsri_backend_avx512
#define DSRI_VARIANT_NAME "avx512"
#define DSRI_VARIANT_AVAILABLE dsri_avx512_available
#define DSRI_VARIANT_KERNEL_FOR dsri_avx512_kernel_for
#define DSRI_VARIANT_QUANTIZE dsri_avx512_quantize_act
#define DSRI_VARIANT_ACT_ROW_BYTES dsri_avx512_act_row_bytes

#include "backend/avx2/avx2.c"
