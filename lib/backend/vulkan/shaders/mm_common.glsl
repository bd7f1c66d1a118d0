/*
 * What the matmul-family kernels share: the push constants of matmul /
 * matmul_heads, and the definition of a dot product's arithmetic.
 *
 * Row independence (backend.h): an output y[t][o] = w[o] . x[t] is computed
 * the same way by the matrix-vector kernel (mm_mv.comp, decode) and the
 * tiled one (mm_mm.comp, prefill), whatever the batch, so a row's result
 * never depends on the rows beside it:
 *   - the row's elements are split into chunks of 8 (element i in chunk i/8);
 *     chunk c belongs to lane c % 32 of 32 lanes;
 *   - each lane accumulates its chunks in increasing order, elements in
 *     increasing order, acc = fma(w, x, acc), from +0;
 *   - the 32 lane sums are added pairwise: at step s = 1, 2, 4, 8, 16 each
 *     lane adds the sum of lane ^ s, so lane 0 ends with
 *     (((l0+l1)+(l2+l3))+...). Steps with s below the subgroup size use
 *     subgroup shuffles, the others shared memory: the same additions in the
 *     same order either way (IEEE addition is commutative).
 * Elements past the row end (a partial last chunk) count as w = x = 0.
 */
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require

#define LANES 32u

/* The device's subgroup size (README-dev.md: specialization constant 1). */
layout(constant_id = 1) const uint DEVICE_SUBGROUP = 1u;

/* Lane distances reduced through shuffles: those below this. The pipeline's
 * actual subgroup size may be smaller than the device's (variable-size
 * subgroups), so take the smaller of the two. Invocations are assumed to
 * fill subgroups in local index order (as on every known implementation);
 * the per-op tests compare against the CPU on the device at hand. */
uint shuffle_span()
{
    return min(min(DEVICE_SUBGROUP, gl_SubgroupSize), LANES);
}

#ifdef MM_PUSH
/* matmul / matmul_heads: mirrored by vk_mm_push in mm.c. Byte offsets for
 * the weights (binding 0), float offsets for x (1) and y (2). Head h of
 * matmul_heads (workgroup z) is displaced by h * *_head. */
layout(push_constant) uniform Push {
    uint w_skip, w_stride, w_head;
    uint x_skip, x_stride, x_head;
    uint y_skip, y_stride, y_head;
    uint n_in;   /* weight columns = x columns */
    uint n_out;  /* weight rows of this dispatch = y columns written */
    uint n_rows; /* rows of x and y */
} pc;
#endif
