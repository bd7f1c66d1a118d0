/*
 * The matrix ops of the Vulkan backend: get_rows, matmul, matmul_t and
 * matmul_heads, recorded with the shaders shaders/mm_*.comp (one variant per
 * weight type, dequantizing through shaders/dequant.glsl; the IQ1-IQ3 types
 * also bind the device's IQ table buffer, vk_bind_iq_tables).
 *
 * matmul picks mm_mv (a few rows of x: decode) or mm_mm (tiles: prefill);
 * both compute each output with the arithmetic mm_common.glsl defines, so the
 * choice never changes a row's result (backend.h's contract).
 *
 * Weights larger than one binding are split by the runtime into row chunks
 * (vk_view_rows binds as many rows as fit): matmul and get_rows record one
 * dispatch per chunk. matmul_t sums over every weight row in one pass, so its
 * weight must fit one binding (the MLA key weights are a few MiB).
 */
#include <stdint.h>

#include "backend/vulkan/vk_internal.h"
#include "quant/quant.h"

/* mm_common.glsl's push constants (byte offsets for w, float offsets for x
 * and y) */
typedef struct vk_mm_push {
    uint32_t w_skip, w_stride, w_head;
    uint32_t x_skip, x_stride, x_head;
    uint32_t y_skip, y_stride, y_head;
    uint32_t n_in, n_out, n_rows;
} vk_mm_push;

/* mm_get_rows.comp's push constants */
typedef struct vk_get_rows_push {
    uint32_t w_skip, w_stride;
    uint32_t ids_skip;
    uint32_t y_skip, y_stride;
    uint32_t n_cols, n_rows;
    uint32_t row_lo, row_hi;
} vk_get_rows_push;

/* Shapes of the kernels (the constants of the same names in the shaders). */
#define MV_ROWS 4   /* mm_mv: output columns per workgroup */
#define MV_COLS 4   /* mm_mv: rows of x per workgroup */
#define MM_TM 16    /* mm_mm: output columns per workgroup */
#define MM_TN 8     /* mm_mm: rows of x per workgroup */
#define MT_COLS 4   /* mm_t: rows of x per workgroup */
#define MT_WG 64    /* mm_t, mm_get_rows: invocations per workgroup (8 columns each) */
#define MAX_GROUPS 65535u /* workgroups per grid dimension */

/* Batches of at most this many rows go to mm_mv (it dequantizes the weights
 * once per MV_COLS rows, mm_mm once per MM_TN). */
#define MV_MAX_BATCH 4

/* The shader variants of a weight type. */
typedef struct mm_variants {
    uint32_t type;
    int mv, mm, t, get_rows;
} mm_variants;

#define MM_VARIANTS(TYPE, NAME)                                                                           \
    {DSRI_TYPE_##TYPE, DSRI_VK_SHADER_MM_MV_##NAME, DSRI_VK_SHADER_MM_MM_##NAME, DSRI_VK_SHADER_MM_T_##NAME, \
     DSRI_VK_SHADER_MM_GET_ROWS_##NAME},
static const mm_variants VARIANTS[] = {
    MM_VARIANTS(F32, F32) MM_VARIANTS(F16, F16) MM_VARIANTS(BF16, BF16) MM_VARIANTS(Q4_0, Q4_0)
    MM_VARIANTS(Q4_1, Q4_1) MM_VARIANTS(Q5_0, Q5_0) MM_VARIANTS(Q5_1, Q5_1) MM_VARIANTS(Q8_0, Q8_0)
    MM_VARIANTS(Q2_K, Q2_K) MM_VARIANTS(Q3_K, Q3_K) MM_VARIANTS(Q4_K, Q4_K) MM_VARIANTS(Q5_K, Q5_K)
    MM_VARIANTS(Q6_K, Q6_K) MM_VARIANTS(IQ4_NL, IQ4_NL) MM_VARIANTS(IQ4_XS, IQ4_XS)
    MM_VARIANTS(IQ2_XXS, IQ2_XXS) MM_VARIANTS(IQ2_XS, IQ2_XS) MM_VARIANTS(IQ2_S, IQ2_S)
    MM_VARIANTS(IQ3_XXS, IQ3_XXS) MM_VARIANTS(IQ3_S, IQ3_S) MM_VARIANTS(IQ1_S, IQ1_S) MM_VARIANTS(IQ1_M, IQ1_M)
};
#undef MM_VARIANTS

int vk_mm_has_kernel(uint32_t type)
{
    for (size_t i = 0; i < sizeof VARIANTS / sizeof VARIANTS[0]; i++)
        if (VARIANTS[i].type == type)
            return 1;
    return 0;
}

static const mm_variants *variants_of(dsri_backend *be, const char *op, const dsri_tensor *w)
{
    for (size_t i = 0; i < sizeof VARIANTS / sizeof VARIANTS[0]; i++)
        if (VARIANTS[i].type == w->type)
            return &VARIANTS[i];
    vk_fail(be, DSR1_ERR_UNSUPPORTED, "vulkan %s: no kernel for weight type %u", op, w->type);
    return NULL;
}

static uint32_t div_up(int64_t a, int64_t b)
{
    return (uint32_t)((a + b - 1) / b);
}

/* The shaders read weights as 32-bit words and f32 activations as floats:
 * bindings and f32 rows must be 4-byte aligned, and every offset must fit
 * the shaders' 32-bit arithmetic. */
static int check_f32(dsri_backend *be, const char *op, const char *what, const dsri_tensor *t)
{
    if (t->type != DSRI_TYPE_F32 || t->stride % 4 != 0 || t->offset % 4 != 0 || t->stride / 4 > UINT32_MAX ||
        t->cols > UINT32_MAX) {
        vk_fail(be, DSR1_ERR_INVALID_ARGUMENT, "vulkan %s: %s must be f32 rows at 4-byte aligned offsets", op, what);
        return 0;
    }
    return 1;
}

static int check_weight_view(dsri_backend *be, const char *op, const dsri_tensor *w, const vk_view *v)
{
    if (v->offset % 4 != 0 || (w->type == DSRI_TYPE_F32 && v->skip % 4 != 0) || v->skip % 2 != 0 ||
        w->stride % 2 != 0 || w->stride > UINT32_MAX) {
        vk_fail(be, DSR1_ERR_UNSUPPORTED, "vulkan %s: weight rows not aligned for the shaders (offset %llu)", op,
                (unsigned long long)w->offset);
        return 0;
    }
    return 1;
}

/* Record y = x w^T (transposed = 0) or y = x w (transposed = 1) for
 * n_heads heads (workgroup z): head h's weight rows start h * w_step rows
 * after w's, its x and y columns h * x_step and h * y_step columns after
 * x's and y's. Returns 0 when the heads do not fit one weight binding (the
 * caller then records them one by one), 1 otherwise (done or failed). */
static int record_heads(dsri_backend *be, const mm_variants *var, const dsri_tensor *w, int64_t w_step, int n_heads,
                        int transposed, const dsri_tensor *x, int64_t x_step, const dsri_tensor *y, int64_t y_step)
{
    const char *op = transposed ? "matmul_t" : "matmul";
    const int64_t in = transposed ? w->rows : w->cols;   /* x columns a head reads */
    const int64_t out = transposed ? w->cols : w->rows;  /* y columns a head writes */
    if (!check_f32(be, op, "x", x) || !check_f32(be, op, "y", y))
        return 1;
    if (n_heads < 1 || n_heads > (int)MAX_GROUPS || w->cols > UINT32_MAX || w->rows > UINT32_MAX) {
        vk_fail(be, DSR1_ERR_INVALID_ARGUMENT, "vulkan %s: bad shape (%d heads of %lld x %lld)", op, n_heads,
                (long long)w->rows, (long long)w->cols);
        return 1;
    }
    /* views covering every head's rows and columns */
    dsri_tensor wa = *w, xa = *x, ya = *y;
    wa.rows = (int64_t)(n_heads - 1) * w_step + w->rows;
    xa.cols = (int64_t)(n_heads - 1) * x_step + in;
    ya.cols = (int64_t)(n_heads - 1) * y_step + out;

    /* the weight rows of this dispatch: all of them, except for a single
     * non-transposed head, which may go in row chunks */
    for (int64_t o0 = 0; o0 < wa.rows;) {
        vk_view wv;
        int64_t nw = vk_view_rows(be, &wa, o0, wa.rows - o0, &wv);
        if (nw == 0)
            return 1;
        if (nw < wa.rows - o0 && (n_heads > 1 || transposed)) {
            if (n_heads > 1)
                return 0;
            vk_fail(be, DSR1_ERR_UNSUPPORTED, "vulkan matmul_t: the weight (%lld rows) must fit one binding",
                    (long long)w->rows);
            return 1;
        }
        if (!check_weight_view(be, op, w, &wv))
            return 1;
        if (!transposed && nw > (int64_t)MAX_GROUPS * MV_ROWS)
            nw = (int64_t)MAX_GROUPS * MV_ROWS; /* the grid limit of the smaller tile */
        for (int64_t t0 = 0; t0 < x->rows;) {
            vk_view views[4];
            views[0] = wv;
            int64_t n = vk_view_rows(be, &xa, t0, x->rows - t0, &views[1]);
            if (n == 0)
                return 1;
            n = vk_view_rows(be, &ya, t0, n, &views[2]);
            const int n_views = vk_bind_iq_tables(be, w->type, views, 3);
            if (n == 0 || n_views == 0)
                return 1;
            const int mv = !transposed && x->rows <= MV_MAX_BATCH;
            const int64_t per_group = transposed ? MT_COLS : mv ? MV_COLS : MM_TN;
            if (n > (int64_t)MAX_GROUPS * per_group)
                n = (int64_t)MAX_GROUPS * per_group;
            vk_mm_push p = {
                .w_skip = wv.skip,
                .w_stride = (uint32_t)w->stride,
                .w_head = (uint32_t)((uint64_t)w_step * w->stride),
                .x_skip = views[1].skip / 4,
                .x_stride = (uint32_t)(x->stride / 4),
                .x_head = (uint32_t)x_step,
                .y_skip = views[2].skip / 4 + (uint32_t)o0,
                .y_stride = (uint32_t)(y->stride / 4),
                .y_head = (uint32_t)y_step,
                .n_in = (uint32_t)w->cols,
                .n_out = (uint32_t)(n_heads > 1 ? w->rows : nw),
                .n_rows = (uint32_t)n,
            };
            if (transposed)
                vk_dispatch(be, var->t, views, n_views, &p, sizeof p, div_up(div_up(w->cols, 8), MT_WG),
                            div_up(n, MT_COLS), (uint32_t)n_heads);
            else if (mv)
                vk_dispatch(be, var->mv, views, n_views, &p, sizeof p, div_up(p.n_out, MV_ROWS), div_up(n, MV_COLS),
                            (uint32_t)n_heads);
            else
                vk_dispatch(be, var->mm, views, n_views, &p, sizeof p, div_up(p.n_out, MM_TM), div_up(n, MM_TN),
                            (uint32_t)n_heads);
            t0 += n;
        }
        o0 += nw;
    }
    return 1;
}

static void record(dsri_backend *be, const dsri_tensor *w, int64_t w_step, int n_heads, int transposed,
                   const dsri_tensor *x, int64_t x_step, const dsri_tensor *y, int64_t y_step)
{
    if (be->status || x->rows == 0 || n_heads == 0)
        return;
    const mm_variants *var = variants_of(be, transposed ? "matmul_t" : "matmul", w);
    if (!var || record_heads(be, var, w, w_step, n_heads, transposed, x, x_step, y, y_step))
        return;
    /* the heads span more than one binding: one dispatch (or more) per head */
    const int64_t in = transposed ? w->rows : w->cols, out = transposed ? w->cols : w->rows;
    for (int h = 0; h < n_heads && !be->status; h++) {
        dsri_tensor wh = dsri_rows(w, (int64_t)h * w_step, w->rows);
        dsri_tensor xh = dsri_cols(x, (int64_t)h * x_step, in), yh = dsri_cols(y, (int64_t)h * y_step, out);
        record_heads(be, var, &wh, 0, 1, transposed, &xh, 0, &yh, 0);
    }
}

void vk_op_matmul(dsri_backend *be, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y)
{
    record(be, w, 0, 1, 0, x, 0, y, 0);
}

void vk_op_matmul_t(dsri_backend *be, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y)
{
    record(be, w, 0, 1, 1, x, 0, y, 0);
}

/* One dispatch for all heads: the strided views need no gathering, so work
 * is unused. */
void vk_op_matmul_heads(dsri_backend *be, const dsri_tensor *w, int64_t w_step, int n_heads, int transposed,
                        const dsri_tensor *x, int64_t x_step, const dsri_tensor *y, int64_t y_step,
                        const dsri_tensor *work)
{
    (void)work;
    record(be, w, w_step, n_heads, transposed, x, x_step, y, y_step);
}

void vk_op_get_rows(dsri_backend *be, const dsri_tensor *w, const int32_t *ids, const dsri_tensor *y)
{
    if (be->status || y->rows == 0)
        return;
    const mm_variants *var = variants_of(be, "get_rows", w);
    if (!var || !check_f32(be, "get_rows", "y", y))
        return;
    for (int64_t t = 0; t < y->rows; t++)
        if (ids[t] < 0 || ids[t] >= w->rows) {
            vk_fail(be, DSR1_ERR_INVALID_ARGUMENT, "vulkan get_rows: row %d of a %lld-row tensor", (int)ids[t],
                    (long long)w->rows);
            return;
        }
    for (int64_t t0 = 0; t0 < y->rows;) {
        vk_view views[4];
        int64_t n = vk_view_rows(be, y, t0, y->rows - t0, &views[2]);
        if (n == 0)
            return;
        if (n > (int64_t)MAX_GROUPS)
            n = MAX_GROUPS;
        const int n_views = vk_bind_iq_tables(be, w->type, views, 3);
        if (n_views == 0 || !vk_view_host(be, ids + t0, (uint64_t)n * sizeof *ids, &views[1]))
            return;
        /* one dispatch per weight chunk holding one of these rows */
        for (int64_t r0 = 0; r0 < w->rows;) {
            int64_t nw = vk_view_rows(be, w, r0, w->rows - r0, &views[0]);
            if (nw == 0 || !check_weight_view(be, "get_rows", w, &views[0]))
                return;
            int used = 0;
            for (int64_t t = t0; t < t0 + n && !used; t++)
                used = ids[t] >= r0 && ids[t] < r0 + nw;
            if (used) {
                vk_get_rows_push p = {
                    .w_skip = views[0].skip,
                    .w_stride = (uint32_t)w->stride,
                    .ids_skip = views[1].skip / 4,
                    .y_skip = views[2].skip / 4,
                    .y_stride = (uint32_t)(y->stride / 4),
                    .n_cols = (uint32_t)w->cols,
                    .n_rows = (uint32_t)n,
                    .row_lo = (uint32_t)r0,
                    .row_hi = (uint32_t)(r0 + nw),
                };
                vk_dispatch(be, var->get_rows, views, n_views, &p, sizeof p, div_up(div_up(w->cols, 8), MT_WG), (uint32_t)n,
                            1);
            }
            r0 += nw;
        }
        t0 += n;
    }
}
