// Workgroup reductions over WG values in shared memory (WG is a power of
// two). Every invocation must call them; the result is returned to all.
// The order of the additions depends only on WG, never on the batch.

shared float red_f[WG];
shared uint red_i[WG];

float wg_sum(float v)
{
    uint t = gl_LocalInvocationID.x;
    red_f[t] = v;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (t < s)
            red_f[t] += red_f[t + s];
        barrier();
    }
    float r = red_f[0];
    barrier();
    return r;
}

float wg_max(float v)
{
    uint t = gl_LocalInvocationID.x;
    red_f[t] = v;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (t < s)
            red_f[t] = max(red_f[t], red_f[t + s]);
        barrier();
    }
    float r = red_f[0];
    barrier();
    return r;
}
