/*
 * The avx2 backend: x86-64 with AVX2, FMA and F16C (checked with CPUID at run
 * time). Matmuls round each activation row once to 8-bit blocks and take
 * integer dot products with the quantized weights, as llama.cpp does, so
 * results differ from the scalar reference by that rounding (the tolerances
 * are in tests/test_backend.c). Output rows are split over the context's
 * thread pool; results do not depend on the thread count.
 *
 * The driver is the SIMD backends' shared one (lib/backend/simd_driver.inc.c);
 * this file names the AVX2 kernels (kernels.c) it runs, kernels.h the vector
 * helpers. This file and kernels.c are the only ones compiled with -mavx2
 * -mfma -mf16c; nothing here runs before dsri_avx2_available() (cpu.c, built
 * without them) said yes.
 */
#include "backend/avx2/kernels.h"

#define SIMD_OPS dsri_backend_avx2
#define SIMD_NAME "avx2"
#define SIMD_AVAILABLE dsri_avx2_available
#define SIMD_KERNEL_FOR dsri_avx2_kernel_for
#define SIMD_KERNEL_F32 dsri_avx2_kernel_f32
#define SIMD_QUANTIZE dsri_avx2_quantize_act
#define SIMD_ACT_ROW_BYTES dsri_avx2_act_row_bytes

#include "backend/simd_driver.inc.c"
