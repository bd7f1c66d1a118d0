/* Run-time check for the avx2 backend. Built without -mavx2 etc. so it can
 * run on any x86-64. Reads CPUID directly (clang's __builtin_cpu_supports
 * does not know "f16c") and XGETBV for the OS's support of the YMM state. */
#include "backend/avx2/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 bits the OS has enabled (0 when XGETBV is unavailable). */
static unsigned long long xcr0(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
}

int dsri_x86_os_saves(unsigned long long mask)
{
    return (xcr0() & mask) == mask;
}

int dsri_avx2_available(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int fma = (c & bit_FMA) != 0, f16c = (c & bit_F16C) != 0, avx = (c & bit_AVX) != 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    int avx2 = (b & bit_AVX2) != 0;
    return avx && avx2 && fma && f16c && dsri_x86_os_saves(0x6); /* XMM and YMM state */
}
#else
int dsri_x86_os_saves(unsigned long long mask)
{
    (void)mask;
    return 0;
}

int dsri_avx2_available(void)
{
    return 0;
}
#endif
