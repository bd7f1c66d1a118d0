/*
 * The Vulkan ops other than the matrix products (mm.c): each checks its
 * operands, binds them in row chunks (a binding covers at most
 * maxStorageBufferRange bytes, a dispatch at most 65535 workgroups a
 * dimension) and records its shader. Offsets and strides go to the shaders
 * in elements (README-dev.md).
 */
#include <string.h>

#include "backend/vulkan/vk_internal.h"
#include "quant/quant.h"

#define MAX_GROUPS 65535

static uint32_t div_up(uint64_t a, uint64_t b) { return (uint32_t)((a + b - 1) / b); }

static int is_16(const dsri_tensor *t) { return t->type == DSRI_TYPE_F16; }
static int is_32(const dsri_tensor *t) { return t->type == DSRI_TYPE_F32 || t->type == DSRI_TYPE_I32_ID; }

/* Element offset / stride for a shader indexing es-byte elements; 0 and a
 * sticky failure when the view is not aligned to its elements. */
static int elems(dsri_backend *be, uint64_t bytes, uint32_t es, uint32_t *out)
{
    if (bytes % es) {
        vk_fail(be, DSR1_ERR_INVALID_ARGUMENT, "Vulkan: a view is not aligned to its %u-byte elements", es);
        return 0;
    }
    *out = (uint32_t)(bytes / es);
    return 1;
}

/* Bind rows [r, r + n) of every tensor in ts (n capped by what all of
 * them and one dispatch can take): the rows bound, 0 on failure. */
static int64_t bind_rows(dsri_backend *be, const dsri_tensor *const *ts, int nt, int64_t r, int64_t n,
                         vk_view *views)
{
    int64_t k = n < MAX_GROUPS ? n : MAX_GROUPS;
    for (int i = 0; i < nt; i++) {
        int64_t got = vk_view_rows(be, ts[i], r, k, &views[i]);
        if (!got)
            return 0;
        if (got < k)
            k = got;
    }
    return k;
}

static int check(dsri_backend *be, int ok, const char *op)
{
    if (!ok && !be->status)
        vk_fail(be, DSR1_ERR_INVALID_ARGUMENT, "Vulkan %s: operands of unsupported types or shapes", op);
    return ok && !be->status;
}

void vk_op_rmsnorm(dsri_backend *be, const dsri_tensor *x, const dsri_tensor *w, const dsri_tensor *y, float eps)
{
    if (!check(be, x->type == DSRI_TYPE_F32 && w->type == DSRI_TYPE_F32 && y->type == DSRI_TYPE_F32 &&
                       w->cols >= x->cols && y->cols == x->cols && y->rows == x->rows,
               "rmsnorm"))
        return;
    vk_view wv;
    if (!vk_view_rows(be, w, 0, 1, &wv))
        return;
    for (int64_t r = 0; r < x->rows;) {
        vk_view v[3];
        const dsri_tensor *ts[2] = {x, y};
        int64_t k = bind_rows(be, ts, 2, r, x->rows - r, v);
        struct { uint32_t cols, x_off, x_stride, w_off, y_off, y_stride; float eps; } pc = {(uint32_t)x->cols, 0, 0,
                                                                                            wv.skip / 4, 0, 0, eps};
        if (!k || !elems(be, v[0].skip, 4, &pc.x_off) || !elems(be, x->stride, 4, &pc.x_stride) ||
            !elems(be, v[1].skip, 4, &pc.y_off) || !elems(be, y->stride, 4, &pc.y_stride))
            return;
        vk_view b[3] = {v[0], wv, v[1]};
        vk_dispatch(be, DSRI_VK_SHADER_RMSNORM, b, 3, &pc, sizeof pc, (uint32_t)k, 1, 1);
        r += k;
    }
}

/* y (f32) op= x (f32, same shape or one row) row by row: add and silu_mul */
static void elementwise(dsri_backend *be, int shader, const dsri_tensor *y, const dsri_tensor *x, int broadcast)
{
    vk_view xv1;
    if (broadcast && !vk_view_rows(be, x, 0, 1, &xv1))
        return;
    for (int64_t r = 0; r < y->rows;) {
        vk_view v[2];
        const dsri_tensor *ts[2] = {y, x};
        int64_t k = bind_rows(be, ts, broadcast ? 1 : 2, r, y->rows - r, v);
        if (broadcast)
            v[1] = xv1;
        struct { uint32_t cols, y_off, y_stride, x_off, x_stride; } pc = {(uint32_t)y->cols, 0, 0, 0, 0};
        if (!k || !elems(be, v[0].skip, 4, &pc.y_off) || !elems(be, y->stride, 4, &pc.y_stride) ||
            !elems(be, v[1].skip, 4, &pc.x_off) || (!broadcast && !elems(be, x->stride, 4, &pc.x_stride)))
            return;
        vk_dispatch(be, shader, v, 2, &pc, sizeof pc, div_up((uint64_t)y->cols, be->dev->wg_size), (uint32_t)k, 1);
        r += k;
    }
}

void vk_op_add(dsri_backend *be, const dsri_tensor *y, const dsri_tensor *x)
{
    if (!check(be, y->type == DSRI_TYPE_F32 && x->type == DSRI_TYPE_F32 && x->cols == y->cols &&
                       (x->rows == y->rows || x->rows == 1),
               "add"))
        return;
    elementwise(be, DSRI_VK_SHADER_ADD, y, x, x->rows == 1 && y->rows != 1);
}

void vk_op_silu_mul(dsri_backend *be, const dsri_tensor *g, const dsri_tensor *u)
{
    if (!check(be, g->type == DSRI_TYPE_F32 && u->type == DSRI_TYPE_F32 && g->cols == u->cols && g->rows == u->rows,
               "silu_mul"))
        return;
    elementwise(be, DSRI_VK_SHADER_SILU_MUL, g, u, 0);
}

void vk_op_fill(dsri_backend *be, const dsri_tensor *y, float value)
{
    if (!check(be, y->type == DSRI_TYPE_F32, "fill"))
        return;
    for (int64_t r = 0; r < y->rows;) {
        vk_view v;
        int64_t k = bind_rows(be, &y, 1, r, y->rows - r, &v);
        struct { uint32_t cols, y_off, y_stride; float value; } pc = {(uint32_t)y->cols, 0, 0, value};
        if (!k || !elems(be, v.skip, 4, &pc.y_off) || !elems(be, y->stride, 4, &pc.y_stride))
            return;
        vk_dispatch(be, DSRI_VK_SHADER_FILL, &v, 1, &pc, sizeof pc, div_up((uint64_t)y->cols, be->dev->wg_size),
                    (uint32_t)k, 1);
        r += k;
    }
}

void vk_op_copy(dsri_backend *be, const dsri_tensor *src, const dsri_tensor *dst)
{
    if (!check(be, (is_16(src) || is_32(src)) && (is_16(dst) || is_32(dst)) && src->cols == dst->cols &&
                       src->rows == dst->rows && (src->type == dst->type || !(is_32(src) && is_32(dst))),
               "copy"))
        return;
    static const int shaders[2][2] = {{DSRI_VK_SHADER_COPY_32_32, DSRI_VK_SHADER_COPY_32_16},
                                      {DSRI_VK_SHADER_COPY_16_32, DSRI_VK_SHADER_COPY_16_16}};
    uint32_t ss = is_16(src) ? 2 : 4, ds = is_16(dst) ? 2 : 4;
    for (int64_t r = 0; r < src->rows;) {
        vk_view v[2];
        const dsri_tensor *ts[2] = {src, dst};
        int64_t k = bind_rows(be, ts, 2, r, src->rows - r, v);
        struct { uint32_t cols, s_off, s_stride, d_off, d_stride; } pc = {(uint32_t)src->cols, 0, 0, 0, 0};
        if (!k || !elems(be, v[0].skip, ss, &pc.s_off) || !elems(be, src->stride, ss, &pc.s_stride) ||
            !elems(be, v[1].skip, ds, &pc.d_off) || !elems(be, dst->stride, ds, &pc.d_stride))
            return;
        vk_dispatch(be, shaders[ss == 2][ds == 2], v, 2, &pc, sizeof pc, div_up((uint64_t)src->cols, be->dev->wg_size),
                    (uint32_t)k, 1);
        r += k;
    }
}

void vk_op_rope(dsri_backend *be, const dsri_tensor *x, int n_heads, int head_dim, int rot_dim, const int32_t *pos,
                const dsri_tensor *freq, float mscale, int neox)
{
    if (!check(be, x->type == DSRI_TYPE_F32 && freq->type == DSRI_TYPE_F32 && rot_dim > 0 && rot_dim % 2 == 0 &&
                       rot_dim <= head_dim && (int64_t)(n_heads - 1) * head_dim + rot_dim <= x->cols &&
                       freq->cols >= rot_dim / 2,
               "rope"))
        return;
    vk_view fv;
    if (!vk_view_rows(be, freq, 0, 1, &fv))
        return;
    int shader = be->dev->phys.has_float64 && !be->dev->rope_f32 ? DSRI_VK_SHADER_ROPE_F64 : DSRI_VK_SHADER_ROPE_F32;
    for (int64_t r = 0; r < x->rows;) {
        vk_view v[3];
        int64_t k = bind_rows(be, &x, 1, r, x->rows - r, v);
        if (!k || !vk_view_host(be, pos + r, (uint64_t)k * sizeof *pos, &v[1]))
            return;
        v[2] = fv;
        struct { uint32_t n_heads, head_dim, rot_dim, x_off, x_stride, freq_off; float mscale; uint32_t neox; } pc = {
            (uint32_t)n_heads, (uint32_t)head_dim, (uint32_t)rot_dim, 0, 0, fv.skip / 4, mscale, neox ? 1u : 0u};
        if (!elems(be, v[0].skip, 4, &pc.x_off) || !elems(be, x->stride, 4, &pc.x_stride))
            return;
        vk_dispatch(be, shader, v, 3, &pc, sizeof pc,
                    div_up((uint64_t)n_heads * (uint64_t)(rot_dim / 2), be->dev->wg_size), (uint32_t)k, 1);
        r += k;
    }
}

#define ATT_MAX_DK 1024
#define ATT_MAX_PER_THREAD 16

void vk_op_attention(dsri_backend *be, const dsri_tensor *q, const dsri_tensor *k, const dsri_tensor *v,
                     const dsri_tensor *out, const int32_t *pos, int n_head, int n_head_kv, int dk, int dv,
                     float scale)
{
    if (!check(be, q->type == DSRI_TYPE_F32 && out->type == DSRI_TYPE_F32 && (is_16(k) || k->type == DSRI_TYPE_F32) &&
                       (is_16(v) || v->type == DSRI_TYPE_F32) && n_head_kv > 0 && n_head % n_head_kv == 0 &&
                       q->cols >= (int64_t)n_head * dk && out->cols >= (int64_t)n_head * dv && out->rows == q->rows &&
                       k->cols >= (int64_t)n_head_kv * dk && v->cols >= (int64_t)n_head_kv * dv,
               "attention"))
        return;
    if (dk > ATT_MAX_DK || dv > (int)be->dev->wg_size * ATT_MAX_PER_THREAD) {
        vk_fail(be, DSR1_ERR_UNSUPPORTED, "Vulkan attention: head sizes %d/%d are too large", dk, dv);
        return;
    }
    int shader = is_16(k) ? (is_16(v) ? DSRI_VK_SHADER_ATTENTION_F16 : DSRI_VK_SHADER_ATTENTION_K16_V32)
                          : (is_16(v) ? DSRI_VK_SHADER_ATTENTION_K32_V16 : DSRI_VK_SHADER_ATTENTION_F32);
    uint32_t es_k = is_16(k) ? 2 : 4, es_v = is_16(v) ? 2 : 4;
    for (int64_t r = 0; r < q->rows;) {
        vk_view b[5];
        const dsri_tensor *ts[2] = {q, out};
        vk_view qo[2];
        int64_t n = bind_rows(be, ts, 2, r, q->rows - r, qo);
        if (!n)
            return;
        int32_t max_pos = 0;
        for (int64_t t = r; t < r + n; t++) {
            if (pos[t] < 0 || pos[t] >= k->rows || pos[t] >= v->rows) {
                vk_fail(be, DSR1_ERR_INVALID_ARGUMENT, "Vulkan attention: position %d outside the cache",
                        (int)pos[t]);
                return;
            }
            max_pos = pos[t] > max_pos ? pos[t] : max_pos;
        }
        if (vk_view_rows(be, k, 0, max_pos + 1, &b[1]) < max_pos + 1 ||
            vk_view_rows(be, v, 0, max_pos + 1, &b[2]) < max_pos + 1) {
            vk_fail(be, DSR1_ERR_UNSUPPORTED, "Vulkan attention: %d cache rows exceed one binding", max_pos + 1);
            return;
        }
        b[0] = qo[0];
        b[3] = qo[1];
        if (!vk_view_host(be, pos + r, (uint64_t)n * sizeof *pos, &b[4]))
            return;
        struct {
            uint32_t q_off, q_stride, k_off, k_stride, v_off, v_stride, o_off, o_stride, group, dk, dv;
            float scale;
        } pc = {0, 0, 0, 0, 0, 0, 0, 0, (uint32_t)(n_head / n_head_kv), (uint32_t)dk, (uint32_t)dv, scale};
        if (!elems(be, b[0].skip, 4, &pc.q_off) || !elems(be, q->stride, 4, &pc.q_stride) ||
            !elems(be, b[1].skip, es_k, &pc.k_off) || !elems(be, k->stride, es_k, &pc.k_stride) ||
            !elems(be, b[2].skip, es_v, &pc.v_off) || !elems(be, v->stride, es_v, &pc.v_stride) ||
            !elems(be, b[3].skip, 4, &pc.o_off) || !elems(be, out->stride, 4, &pc.o_stride))
            return;
        vk_dispatch(be, shader, b, 5, &pc, sizeof pc, (uint32_t)n_head, (uint32_t)n, 1);
        r += n;
    }
}

#define ROUTE_MAX_EXPERT 512
#define ROUTE_MAX_GROUP 64
#define ROUTE_MAX_USED 16

void vk_op_moe_route(dsri_backend *be, const dsri_router_config *cfg, const dsri_tensor *logits,
                     const dsri_tensor *bias, const dsri_tensor *ids, const dsri_tensor *weights)
{
    int has_bias = bias && bias->buf;
    if (!check(be, dsri_router_check(cfg) == 0 && cfg->n_expert <= ROUTE_MAX_EXPERT && cfg->n_group <= ROUTE_MAX_GROUP &&
                       cfg->n_used <= ROUTE_MAX_USED && logits->type == DSRI_TYPE_F32 &&
                       logits->cols >= cfg->n_expert && ids->type == DSRI_TYPE_I32_ID &&
                       weights->type == DSRI_TYPE_F32 && ids->cols >= cfg->n_used && weights->cols >= cfg->n_used &&
                       ids->rows == logits->rows && weights->rows == logits->rows &&
                       (!has_bias || (bias->type == DSRI_TYPE_F32 && bias->cols >= cfg->n_expert)),
               "moe_route"))
        return;
    vk_view bv;
    if (has_bias && !vk_view_rows(be, bias, 0, 1, &bv))
        return;
    for (int64_t r = 0; r < logits->rows;) {
        vk_view v[4];
        const dsri_tensor *ts[3] = {logits, ids, weights};
        vk_view lv[3];
        int64_t k = bind_rows(be, ts, 3, r, logits->rows - r, lv);
        if (!k)
            return;
        v[0] = lv[0];
        v[1] = has_bias ? bv : lv[0]; /* bound but unread without a bias */
        v[2] = lv[1];
        v[3] = lv[2];
        struct {
            uint32_t l_off, l_stride, b_off, has_bias, i_off, i_stride, w_off, w_stride;
            uint32_t n_expert, n_used, n_group, n_group_used, gating, norm;
            float scale;
        } pc = {0, 0, has_bias ? bv.skip / 4 : 0, (uint32_t)has_bias, 0, 0, 0, 0,
                (uint32_t)cfg->n_expert, (uint32_t)cfg->n_used, (uint32_t)cfg->n_group, (uint32_t)cfg->n_group_used,
                (uint32_t)cfg->gating, (uint32_t)(cfg->norm != 0), cfg->scale};
        if (!elems(be, lv[0].skip, 4, &pc.l_off) || !elems(be, logits->stride, 4, &pc.l_stride) ||
            !elems(be, lv[1].skip, 4, &pc.i_off) || !elems(be, ids->stride, 4, &pc.i_stride) ||
            !elems(be, lv[2].skip, 4, &pc.w_off) || !elems(be, weights->stride, 4, &pc.w_stride))
            return;
        vk_dispatch(be, DSRI_VK_SHADER_MOE_ROUTE, v, 4, &pc, sizeof pc, (uint32_t)k, 1, 1);
        r += k;
    }
}
