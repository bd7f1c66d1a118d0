/*
 * moe_ffn on the device: the expert ids stay in device memory (moe_route
 * wrote them), so the shaders pick the weight rows themselves. For slot j
 * = 0 .. n_used-1, every row takes its j-th smallest expert id (the order
 * backend.h asks for):
 *   G = gate_e x, U = up_e x, G = silu(G) * U, D = down_e G, y += w * D.
 * Correctness first: one 32-lane workgroup per output value.
 */
#include "backend/vulkan/vk_internal.h"
#include "quant/quant.h"

static const struct {
    uint32_t type;
    int shader;
} MOE_MV[] = {
    {DSRI_TYPE_F32, DSRI_VK_SHADER_MOE_MV_F32},       {DSRI_TYPE_F16, DSRI_VK_SHADER_MOE_MV_F16},
    {DSRI_TYPE_BF16, DSRI_VK_SHADER_MOE_MV_BF16},     {DSRI_TYPE_Q4_0, DSRI_VK_SHADER_MOE_MV_Q4_0},
    {DSRI_TYPE_Q4_1, DSRI_VK_SHADER_MOE_MV_Q4_1},     {DSRI_TYPE_Q5_0, DSRI_VK_SHADER_MOE_MV_Q5_0},
    {DSRI_TYPE_Q5_1, DSRI_VK_SHADER_MOE_MV_Q5_1},     {DSRI_TYPE_Q8_0, DSRI_VK_SHADER_MOE_MV_Q8_0},
    {DSRI_TYPE_Q2_K, DSRI_VK_SHADER_MOE_MV_Q2_K},     {DSRI_TYPE_Q3_K, DSRI_VK_SHADER_MOE_MV_Q3_K},
    {DSRI_TYPE_Q4_K, DSRI_VK_SHADER_MOE_MV_Q4_K},     {DSRI_TYPE_Q5_K, DSRI_VK_SHADER_MOE_MV_Q5_K},
    {DSRI_TYPE_Q6_K, DSRI_VK_SHADER_MOE_MV_Q6_K},     {DSRI_TYPE_IQ4_NL, DSRI_VK_SHADER_MOE_MV_IQ4_NL},
    {DSRI_TYPE_IQ4_XS, DSRI_VK_SHADER_MOE_MV_IQ4_XS},   {DSRI_TYPE_IQ2_XXS, DSRI_VK_SHADER_MOE_MV_IQ2_XXS},
    {DSRI_TYPE_IQ2_XS, DSRI_VK_SHADER_MOE_MV_IQ2_XS},   {DSRI_TYPE_IQ2_S, DSRI_VK_SHADER_MOE_MV_IQ2_S},
    {DSRI_TYPE_IQ3_XXS, DSRI_VK_SHADER_MOE_MV_IQ3_XXS}, {DSRI_TYPE_IQ3_S, DSRI_VK_SHADER_MOE_MV_IQ3_S},
    {DSRI_TYPE_IQ1_S, DSRI_VK_SHADER_MOE_MV_IQ1_S},     {DSRI_TYPE_IQ1_M, DSRI_VK_SHADER_MOE_MV_IQ1_M},
};

#define MAX_USED 16
#define MAX_GROUPS 65535

static int shader_of(uint32_t type)
{
    for (size_t i = 0; i < sizeof MOE_MV / sizeof MOE_MV[0]; i++)
        if (MOE_MV[i].type == type)
            return MOE_MV[i].shader;
    return -1;
}

/* A whole tensor in one binding, or a sticky failure. */
static int bind_all(dsri_backend *be, const dsri_tensor *t, vk_view *v)
{
    if (be->status)
        return 0;
    if (vk_view_rows(be, t, 0, t->rows, v) == t->rows)
        return 1;
    vk_fail(be, DSR1_ERR_UNSUPPORTED,
            "Vulkan moe_ffn: the experts' weights (%lld rows) exceed one binding; keep the routed experts on "
            "the CPU (dsr1_model_params.cpu_moe, dsr1 --cpu-moe)",
            (long long)t->rows);
    return 0;
}

/* y = W_e x for each row's slot-th expert (W: expert_rows rows an expert). */
static void expert_product(dsri_backend *be, const dsri_tensor *w, int64_t expert_rows, const dsri_tensor *x,
                           const vk_view *ids_v, const dsri_tensor *ids, int slot, const dsri_tensor *y)
{
    vk_view v[5];
    if (!bind_all(be, w, &v[0]) || !bind_all(be, x, &v[1]) || !bind_all(be, y, &v[3]))
        return;
    const int n_views = vk_bind_iq_tables(be, w->type, v, 4);
    if (n_views == 0)
        return;
    v[2] = *ids_v;
    struct {
        uint32_t w_skip, w_stride, expert_rows, n_in, n_out, x_off, x_stride, i_off, i_stride, n_used, slot, y_off,
            y_stride;
    } pc = {v[0].skip, (uint32_t)w->stride, (uint32_t)expert_rows, (uint32_t)x->cols, (uint32_t)y->cols,
            v[1].skip / 4, (uint32_t)(x->stride / 4), ids_v->skip / 4, (uint32_t)(ids->stride / 4),
            (uint32_t)ids->cols, (uint32_t)slot, v[3].skip / 4, (uint32_t)(y->stride / 4)};
    vk_dispatch(be, shader_of(w->type), v, n_views, &pc, sizeof pc, (uint32_t)y->cols, (uint32_t)x->rows, 1);
}

void vk_op_moe_ffn(dsri_backend *be, const dsri_tensor *gate, const dsri_tensor *up, const dsri_tensor *down,
                   int64_t ff, const dsri_tensor *x, const dsri_tensor *ids, const dsri_tensor *weights,
                   const dsri_tensor *y, const dsri_tensor *work)
{
    const int64_t n = x->rows, d = x->cols;
    int ok = ff > 0 && x->type == DSRI_TYPE_F32 && y->type == DSRI_TYPE_F32 && y->rows == n && y->cols == d &&
             ids->type == DSRI_TYPE_I32_ID && ids->rows == n && ids->cols >= 1 && ids->cols <= MAX_USED &&
             weights->type == DSRI_TYPE_F32 && weights->rows == n && weights->cols >= ids->cols &&
             shader_of(gate->type) >= 0 && shader_of(up->type) >= 0 && shader_of(down->type) >= 0 &&
             gate->cols == d && up->cols == d && gate->rows % ff == 0 && up->rows == gate->rows &&
             down->cols == ff && down->rows == gate->rows / ff * d && work->type == DSRI_TYPE_F32 &&
             work->stride == (uint64_t)work->cols * 4 && work->cols * work->rows >= n * (d + 2 * ff) &&
             n <= MAX_GROUPS && ff <= MAX_GROUPS && d <= MAX_GROUPS && x->stride % 4 == 0 && y->stride % 4 == 0 &&
             ids->stride % 4 == 0 && weights->stride % 4 == 0;
    if (!ok) {
        vk_fail(be, DSR1_ERR_INVALID_ARGUMENT, "Vulkan moe_ffn: operands of unsupported types or shapes");
        return;
    }
    /* work: G (n x ff), U (n x ff), D (n x d), dense */
    dsri_tensor g = dsri_tensor_2d(work->buf, work->offset, DSRI_TYPE_F32, ff, n);
    dsri_tensor u = dsri_tensor_2d(work->buf, work->offset + (uint64_t)(n * ff) * 4, DSRI_TYPE_F32, ff, n);
    dsri_tensor dn = dsri_tensor_2d(work->buf, work->offset + (uint64_t)(2 * n * ff) * 4, DSRI_TYPE_F32, d, n);
    vk_view iv, wv, yv, dv;
    if (!bind_all(be, ids, &iv) || !bind_all(be, weights, &wv))
        return;
    vk_op_fill(be, y, 0.0f);
    for (int slot = 0; slot < (int)ids->cols; slot++) {
        expert_product(be, gate, ff, x, &iv, ids, slot, &g);
        expert_product(be, up, ff, x, &iv, ids, slot, &u);
        vk_op_silu_mul(be, &g, &u);
        expert_product(be, down, d, &g, &iv, ids, slot, &dn);
        if (!bind_all(be, y, &yv) || !bind_all(be, &dn, &dv))
            return;
        vk_view v[4] = {yv, dv, iv, wv};
        struct {
            uint32_t cols, y_off, y_stride, d_off, d_stride, i_off, i_stride, n_used, slot, w_off, w_stride;
        } pc = {(uint32_t)d, yv.skip / 4, (uint32_t)(y->stride / 4), dv.skip / 4, (uint32_t)d, iv.skip / 4,
                (uint32_t)(ids->stride / 4), (uint32_t)ids->cols, (uint32_t)slot, wv.skip / 4,
                (uint32_t)(weights->stride / 4)};
        vk_dispatch(be, DSRI_VK_SHADER_MOE_ACC, v, 4, &pc, sizeof pc, (uint32_t)((d + be->dev->wg_size - 1) / be->dev->wg_size),
                    (uint32_t)n, 1);
    }
}
