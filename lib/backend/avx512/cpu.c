/* Run-time check for the avx512 backend. Built without -mavx512* so it can
 * run on any x86-64 (GCC's and clang's checks include the OS's support for
 * the AVX-512 register state). */
#include "backend/avx2/kernels.h"
#include "backend/avx512/kernels.h"

int dsri_avx512_available(void)
{
#if defined(__GNUC__) || defined(__clang__)
    __builtin_cpu_init();
    return dsri_avx2_available() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}
