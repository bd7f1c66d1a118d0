/* Run-time check for the avx512 backend. Built without -mavx512* so it can
 * run on any x86-64; CPUID for the features, XGETBV for the OS's support of
 * the AVX-512 register state (opmask, upper ZMM halves, ZMM16-31). */
#include "backend/avx2/kernels.h"
#include "backend/avx512/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

int dsri_avx512_available(void)
{
    unsigned a, b, c, d;
    if (!dsri_avx2_available() || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    int f = (b & bit_AVX512F) != 0, bw = (b & bit_AVX512BW) != 0, vl = (b & bit_AVX512VL) != 0;
    int vnni = (c & bit_AVX512VNNI) != 0, bmi2 = (b & bit_BMI2) != 0;
    return f && bw && vl && vnni && bmi2 && dsri_x86_os_saves(0xE6);
}
#else
int dsri_avx512_available(void)
{
    return 0;
}
#endif
