/*
 * The avx512 backend: x86-64 with AVX-512 F/BW/VL and VNNI (checked with
 * CPUID at run time, cpu.c). The SIMD backends' shared driver
 * (lib/backend/simd_driver.inc.c: matmul tiling and threads, elementwise ops,
 * attention) over the matmul kernels of kernels.c, which use vpdpbusd /
 * vpdpwssd where avx2 needs maddubs + madd (and the sign trick for signed
 * weights); the types they do not cover, the f32 kernel for dequantized rows
 * and the vector helpers are avx2's.
 */
#include "backend/avx512/kernels.h"

#define SIMD_OPS dsri_backend_avx512
#define SIMD_NAME "avx512"
#define SIMD_AVAILABLE dsri_avx512_available
#define SIMD_KERNEL_FOR dsri_avx512_kernel_for
#define SIMD_KERNEL_F32 dsri_avx2_kernel_f32
#define SIMD_QUANTIZE dsri_avx512_quantize_act
#define SIMD_ACT_ROW_BYTES dsri_avx512_act_row_bytes

#include "backend/simd_driver.inc.c"
