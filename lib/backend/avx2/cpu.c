/* Run-time check for the avx2 backend. Built without -mavx2 etc. so it can
 * run on any x86-64. */
#include "backend/avx2/kernels.h"

int dsri_avx2_available(void)
{
#if defined(__GNUC__) || defined(__clang__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}
