/*
 * The neon backend: little-endian aarch64 (Advanced SIMD is part of every
 * ARMv8-A core). The SIMD backends' shared driver
 * (lib/backend/simd_driver.inc.c: tiling, threads, elementwise ops,
 * attention) over NEON kernels (kernels.c): matmuls round each activation
 * row once to 8-bit blocks and take integer dot products with the quantized
 * weights, as llama.cpp does, so results differ from the scalar reference by
 * that rounding (the tolerances are in tests/test_backend.c). Output rows are
 * split over the context's thread pool; results do not depend on the thread
 * count.
 *
 * Where the CPU has the ARMv8.2 dot product instructions (getauxval on
 * Linux) the integer kernels use sdot (kernels.c compiled a second time with
 * +dotprod); they give exactly the same results as the plain NEON ones.
 */
#if defined(__linux__)
#include <sys/auxv.h>
#endif

#include "backend/neon/kernels.h"

#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20) /* Linux arch/arm64 uapi hwcap.h */
#endif

int dsri_neon_has_dotprod(void)
{
#if !defined(DSRI_NEON_HAVE_DOTPROD)
    return 0;
#elif defined(__ARM_FEATURE_DOTPROD)
    return 1;
#elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0;
#endif
}

static int neon_available(void) { return 1; }

static const dsri_simd_kernel *kernel_for(uint32_t type)
{
#ifdef DSRI_NEON_HAVE_DOTPROD
    if (dsri_neon_has_dotprod()) /* getauxval: cheap, once per matmul */
        return dsri_neon_kernel_for_dotprod(type);
#endif
    return dsri_neon_kernel_for(type);
}

#define SIMD_OPS dsri_backend_neon
#define SIMD_NAME "neon"
#define SIMD_AVAILABLE neon_available
#define SIMD_KERNEL_FOR kernel_for
#define SIMD_KERNEL_F32 dsri_neon_kernel_f32
#define SIMD_QUANTIZE dsri_neon_quantize_act
#define SIMD_ACT_ROW_BYTES dsri_neon_act_row_bytes

#include "backend/simd_driver.inc.c"
