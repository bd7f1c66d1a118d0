/*
 * The Vulkan backend against the scalar reference, op by op (the matrix
 * products have test_vulkan_mm.c), plus what only a device backend has:
 * placement in row parts, staging, sticky errors, out-of-memory at place,
 * create/destroy without device-memory growth.
 *
 * Without a Vulkan build, loader, driver or device the test says why and
 * exits 77 (meson: skipped). With --expect-no-vulkan it checks instead that
 * a machine without Vulkan gets a clear "no Vulkan" status and passes.
 * Environment knobs (README-dev.md): DSR1_VK_VALIDATION=1 makes any
 * validation message fail the run; DSR1_VK_STAGING=1 / DSR1_VK_MAX_BINDING /
 * DSR1_VK_BLOCK_BYTES exercise the staging and chunking paths.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "backend/backend.h"
#include "check.h"
#include "quant/quant.h"

#ifndef DSRI_HAVE_VULKAN
int main(void)
{
    printf("SKIP: the Vulkan tests did not run: this build has no Vulkan backend (-Dvulkan=disabled, no dlopen, "
           "or a tree without the device-resident backend interface yet)\n");
    return 77;
}
#else

#define VK (&dsri_backend_vulkan)
#define REF (&dsri_backend_scalar)
#define BUF_BYTES ((uint64_t)8 << 20)

/* One backend with a device, an instance and one scratch buffer. */
typedef struct side {
    const dsri_backend_ops *ops;
    dsri_device *dev;
    dsri_backend *be;
    dsri_buf *buf;
} side;

static side vk_side, ref_side;

static int side_open(side *s, const dsri_backend_ops *ops)
{
    memset(s, 0, sizeof *s);
    s->ops = ops;
    dsri_backend_config cfg = {.n_threads = 1, .max_row = 4096, .n_ctx = 4096, .n_batch = 256, .max_experts = 256};
    if (ops->device_open(0, &s->dev) || ops->create(&cfg, s->dev, &s->be) || ops->buf_new(s->dev, BUF_BYTES, &s->buf))
        return 0;
    return 1;
}

static void side_close(side *s)
{
    if (s->buf)
        s->ops->buf_free(s->buf);
    if (s->be)
        s->ops->destroy(s->be);
    if (s->dev)
        s->ops->device_close(s->dev);
    memset(s, 0, sizeof *s);
}

static dsri_tensor view(side *s, uint64_t offset, uint32_t type, int64_t cols, int64_t rows, uint64_t stride)
{
    dsri_tensor t = {s->buf, offset, type, cols, rows, stride};
    return t;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* The same random f32 rows (dense cols) into a view on both sides. */
static void fill_both(uint64_t offset, uint32_t type, int64_t cols, int64_t rows, uint64_t stride, float scale)
{
    size_t es = type == DSRI_TYPE_F16 ? 2 : 4;
    uint8_t *data = malloc((size_t)(cols * rows) * es);
    for (int64_t i = 0; i < cols * rows; i++) {
        float v = frand() * scale;
        if (es == 2) {
            uint16_t h = dsri_fp32_to_fp16(v);
            memcpy(data + i * 2, &h, 2);
        } else {
            memcpy(data + i * 4, &v, 4);
        }
    }
    dsri_tensor a = view(&vk_side, offset, type, cols, rows, stride), b = view(&ref_side, offset, type, cols, rows, stride);
    CHECK(VK->upload(vk_side.be, &a, data) == DSR1_OK, "upload: %s", dsr1_last_error());
    CHECK(REF->upload(ref_side.be, &b, data) == DSR1_OK, "reference upload: %s", dsr1_last_error());
    free(data);
}

/* Download the view from both sides (dense f32 rows); the largest
 * difference relative to max(1, |reference|). Exact when the bits are
 * equal. */
static double compare(const char *what, uint64_t offset, uint32_t type, int64_t cols, int64_t rows, uint64_t stride,
                      double tol)
{
    size_t es = type == DSRI_TYPE_F16 ? 2 : 4;
    size_t n = (size_t)(cols * rows);
    uint8_t *a = malloc(n * es), *b = malloc(n * es);
    dsri_tensor ta = view(&vk_side, offset, type, cols, rows, stride), tb = view(&ref_side, offset, type, cols, rows, stride);
    CHECK(VK->download(vk_side.be, &ta, a) == DSR1_OK, "%s: download: %s", what, dsr1_last_error());
    CHECK(REF->download(ref_side.be, &tb, b) == DSR1_OK, "%s: reference download: %s", what, dsr1_last_error());
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double x, y;
        if (type == DSRI_TYPE_I32_ID) {
            int32_t p, q;
            memcpy(&p, a + 4 * i, 4);
            memcpy(&q, b + 4 * i, 4);
            x = p, y = q;
        } else if (es == 2) {
            uint16_t p, q;
            memcpy(&p, a + 2 * i, 2);
            memcpy(&q, b + 2 * i, 2);
            x = dsri_fp16_to_fp32(p), y = dsri_fp16_to_fp32(q);
        } else {
            float p, q;
            memcpy(&p, a + 4 * i, 4);
            memcpy(&q, b + 4 * i, 4);
            x = p, y = q;
        }
        double d = x == y || (isnan(x) && isnan(y)) ? 0 : fabs(x - y) / (fabs(y) > 1 ? fabs(y) : 1);
        if (!(d <= worst))
            worst = isnan(d) ? INFINITY : d;
    }
    CHECK(worst <= tol, "%s: differs from scalar by %g (tolerance %g)", what, worst, tol);
    free(a);
    free(b);
    return worst;
}

#define ON_BOTH(call_vk, call_ref) \
    do {                           \
        call_vk;                   \
        call_ref;                  \
    } while (0)
#define T_VK(...) view(&vk_side, __VA_ARGS__)
#define T_REF(...) view(&ref_side, __VA_ARGS__)

static void test_rmsnorm(void)
{
    /* strided rows (a column window of a wider tensor), then in place */
    fill_both(0, 0, 600, 7, 600 * 4, 3.0f);
    fill_both(1 << 20, 0, 512, 1, 2048, 1.0f);
    dsri_tensor x = T_VK(0, 0, 500, 7, 600 * 4), w = T_VK(1 << 20, 0, 512, 1, 2048), y = T_VK(2 << 20, 0, 500, 7, 2000);
    dsri_tensor xr = T_REF(0, 0, 500, 7, 600 * 4), wr = T_REF(1 << 20, 0, 512, 1, 2048), yr = T_REF(2 << 20, 0, 500, 7, 2000);
    ON_BOTH(VK->rmsnorm(vk_side.be, &x, &w, &y, 1e-6f), REF->rmsnorm(ref_side.be, &xr, &wr, &yr, 1e-6f));
    compare("rmsnorm", 2 << 20, 0, 500, 7, 2000, 2e-6);
    ON_BOTH(VK->rmsnorm(vk_side.be, &x, &w, &x, 1e-5f), REF->rmsnorm(ref_side.be, &xr, &wr, &xr, 1e-5f));
    compare("rmsnorm in place", 0, 0, 600, 7, 600 * 4, 2e-6);
}

static void test_elementwise(void)
{
    fill_both(0, 0, 300, 9, 1200, 2.0f);
    fill_both(1 << 20, 0, 300, 9, 1600, 2.0f);
    fill_both(2 << 20, 0, 300, 1, 1200, 1.0f);
    dsri_tensor y = T_VK(0, 0, 300, 9, 1200), x = T_VK(1 << 20, 0, 300, 9, 1600), b = T_VK(2 << 20, 0, 300, 1, 1200);
    dsri_tensor yr = T_REF(0, 0, 300, 9, 1200), xr = T_REF(1 << 20, 0, 300, 9, 1600), br = T_REF(2 << 20, 0, 300, 1, 1200);
    ON_BOTH(VK->add(vk_side.be, &y, &x), REF->add(ref_side.be, &yr, &xr));
    compare("add", 0, 0, 300, 9, 1200, 0);
    ON_BOTH(VK->add(vk_side.be, &y, &b), REF->add(ref_side.be, &yr, &br));
    compare("add (bias row)", 0, 0, 300, 9, 1200, 0);
    fill_both(3 << 20, 0, 300, 9, 1200, 2.0f);
    dsri_tensor u = T_VK(3 << 20, 0, 300, 9, 1200), ur = T_REF(3 << 20, 0, 300, 9, 1200); /* dense, as silu_mul asks */
    ON_BOTH(VK->silu_mul(vk_side.be, &y, &u), REF->silu_mul(ref_side.be, &yr, &ur));
    compare("silu_mul", 0, 0, 300, 9, 1200, 2e-6);
    dsri_tensor part = T_VK(4, 0, 100, 5, 1200), partr = T_REF(4, 0, 100, 5, 1200);
    ON_BOTH(VK->fill(vk_side.be, &part, -0.5f), REF->fill(ref_side.be, &partr, -0.5f));
    compare("fill (a window)", 0, 0, 300, 9, 1200, 2e-6);
}

static void test_copy(void)
{
    /* f32 -> f16 must round exactly as the CPU: include ties, tiny and huge values */
    fill_both(0, 0, 256, 6, 1024, 70000.0f);
    float special[] = {65520.0f, 65519.0f, 5.9604645e-8f, 2.9802322e-8f, 2.98023259e-8f, 1e-10f, -0.0f, 1.00048828125f,
                       1.00146484375f, INFINITY, -INFINITY, 6.1035156e-5f, 6.0975552e-5f};
    dsri_tensor s0 = T_VK(0, 0, 13, 1, 1024), s0r = T_REF(0, 0, 13, 1, 1024);
    CHECK(VK->upload(vk_side.be, &s0, special) == DSR1_OK, "upload");
    CHECK(REF->upload(ref_side.be, &s0r, special) == DSR1_OK, "upload");
    dsri_tensor src = T_VK(0, 0, 256, 6, 1024), h = T_VK(1 << 20, DSRI_TYPE_F16, 256, 6, 600);
    dsri_tensor srcr = T_REF(0, 0, 256, 6, 1024), hr = T_REF(1 << 20, DSRI_TYPE_F16, 256, 6, 600);
    ON_BOTH(VK->copy(vk_side.be, &src, &h), REF->copy(ref_side.be, &srcr, &hr));
    compare("copy f32 -> f16 (bits)", 1 << 20, DSRI_TYPE_F16, 256, 6, 600, 0);
    dsri_tensor back = T_VK(2 << 20, 0, 100, 6, 512), backr = T_REF(2 << 20, 0, 100, 6, 512);
    dsri_tensor hw = dsri_cols(&h, 20, 100), hwr = dsri_cols(&hr, 20, 100);
    ON_BOTH(VK->copy(vk_side.be, &hw, &back), REF->copy(ref_side.be, &hwr, &backr));
    compare("copy f16 -> f32 (a column window)", 2 << 20, 0, 100, 6, 512, 0);
    dsri_tensor h2 = T_VK(3 << 20, DSRI_TYPE_F16, 100, 6, 200), h2r = T_REF(3 << 20, DSRI_TYPE_F16, 100, 6, 200);
    ON_BOTH(VK->copy(vk_side.be, &hw, &h2), REF->copy(ref_side.be, &hwr, &h2r));
    compare("copy f16 -> f16", 3 << 20, DSRI_TYPE_F16, 100, 6, 200, 0);
}

static void test_rope(void)
{
    const int n_heads = 4, head_dim = 64;
    int32_t pos[6] = {0, 1, 17, 1000, 40000, 131071};
    float freq[32];
    for (int i = 0; i < 32; i++)
        freq[i] = (float)pow(10000.0, -2.0 * i / 64.0) * (i % 5 == 0 ? 0.125f : 1.0f);
    dsri_tensor f = T_VK(1 << 20, 0, 32, 1, 128), fr = T_REF(1 << 20, 0, 32, 1, 128);
    CHECK(VK->upload(vk_side.be, &f, freq) == DSR1_OK, "upload");
    CHECK(REF->upload(ref_side.be, &fr, freq) == DSR1_OK, "upload");
    for (int neox = 0; neox < 2; neox++)
        for (int rot = 32; rot <= 64; rot += 32) {
            fill_both(0, 0, n_heads * head_dim, 6, 1100, 1.0f);
            dsri_tensor x = T_VK(0, 0, n_heads * head_dim, 6, 1100), xr = T_REF(0, 0, n_heads * head_dim, 6, 1100);
            ON_BOTH(VK->rope(vk_side.be, &x, n_heads, head_dim, rot, pos, &f, 1.25f, neox),
                    REF->rope(ref_side.be, &xr, n_heads, head_dim, rot, pos, &fr, 1.25f, neox));
            char what[64];
            snprintf(what, sizeof what, "rope (neox %d, rot_dim %d)", neox, rot);
            /* sin/cos within a few f32 ulps of the double-precision reference; the
             * rope for devices without f64 rounds pos * freq to f32 first (an angle
             * error up to pos * freq * 2^-24: 1e-3 at position 131071) */
            compare(what, 0, 0, n_heads * head_dim, 6, 1100, getenv("DSR1_VK_ROPE_F32") ? 2e-3 : 2e-6);
        }
}

/* attention over a cache of n_pos rows, q rows at positions pos */
static void attention_case(const char *name, uint32_t kv_type, int n_head, int n_head_kv, int dk, int dv, int n_rows,
                           const int32_t *pos, int n_pos)
{
    uint64_t es = kv_type == DSRI_TYPE_F16 ? 2 : 4;
    uint64_t kstride = (uint64_t)n_head_kv * dk * es + 2 * es, vstride = (uint64_t)n_head_kv * dv * es;
    const uint64_t Q = 0, K = 1 << 20, V = 3 << 20, O = 5 << 20;
    fill_both(Q, 0, n_head * dk, n_rows, (uint64_t)n_head * dk * 4, 1.0f);
    fill_both(K, kv_type, n_head_kv * dk, n_pos, kstride, 1.0f);
    fill_both(V, kv_type, n_head_kv * dv, n_pos, vstride, 1.0f);
    float scale = 1.0f / sqrtf((float)dk);
    dsri_tensor q = T_VK(Q, 0, n_head * dk, n_rows, (uint64_t)n_head * dk * 4);
    dsri_tensor k = T_VK(K, kv_type, n_head_kv * dk, n_pos, kstride), v = T_VK(V, kv_type, n_head_kv * dv, n_pos, vstride);
    dsri_tensor o = T_VK(O, 0, n_head * dv, n_rows, (uint64_t)n_head * dv * 4);
    dsri_tensor qr = T_REF(Q, 0, n_head * dk, n_rows, (uint64_t)n_head * dk * 4);
    dsri_tensor kr = T_REF(K, kv_type, n_head_kv * dk, n_pos, kstride);
    dsri_tensor vr = T_REF(V, kv_type, n_head_kv * dv, n_pos, vstride);
    dsri_tensor or = T_REF(O, 0, n_head * dv, n_rows, (uint64_t)n_head * dv * 4);
    ON_BOTH(VK->attention(vk_side.be, &q, &k, &v, &o, pos, n_head, n_head_kv, dk, dv, scale),
            REF->attention(ref_side.be, &qr, &kr, &vr, &or, pos, n_head, n_head_kv, dk, dv, scale));
    compare(name, O, 0, n_head * dv, n_rows, (uint64_t)n_head * dv * 4, 2e-5);

    /* the last row alone gives the same bits as in the batch */
    if (n_rows > 1) {
        size_t w = (size_t)n_head * dv;
        float *batch = malloc(w * 4), *alone = malloc(w * 4);
        dsri_tensor last = dsri_rows(&o, n_rows - 1, 1), qlast = dsri_rows(&q, n_rows - 1, 1);
        CHECK(VK->download(vk_side.be, &last, batch) == DSR1_OK, "download");
        dsri_tensor o2 = T_VK(O + (1 << 20), 0, n_head * dv, 1, w * 4);
        VK->attention(vk_side.be, &qlast, &k, &v, &o2, pos + n_rows - 1, n_head, n_head_kv, dk, dv, scale);
        CHECK(VK->download(vk_side.be, &o2, alone) == DSR1_OK, "download");
        CHECK(memcmp(batch, alone, w * 4) == 0, "%s: a row's result depends on its batch", name);
        free(batch);
        free(alone);
    }
}

static void test_attention(void)
{
    int32_t decode[1] = {200};
    int32_t prefill[9];
    for (int i = 0; i < 9; i++)
        prefill[i] = 60 + i;
    for (int f16 = 0; f16 < 2; f16++) {
        uint32_t t = f16 ? DSRI_TYPE_F16 : DSRI_TYPE_F32;
        char name[96];
        snprintf(name, sizeof name, "attention decode, GQA 8/2, %s cache", f16 ? "f16" : "f32");
        attention_case(name, t, 8, 2, 64, 64, 1, decode, 201);
        snprintf(name, sizeof name, "attention causal prefill, %s cache", f16 ? "f16" : "f32");
        attention_case(name, t, 4, 4, 32, 48, 9, prefill, 69);
    }
    int32_t mla[2] = {3, 150};
    attention_case("attention with MLA's head sizes (576 / 512)", DSRI_TYPE_F32, 2, 1, 576, 512, 2, mla, 151);
}

static void test_moe_route(void)
{
    dsri_router_config cfgs[3] = {
        {64, 6, 8, 3, 2, 1, 2.5f}, /* sigmoid, groups, norm, scale (DeepSeek-V3 style) */
        {60, 4, 1, 1, 1, 0, 1.0f}, /* softmax, no groups */
        {16, 16, 4, 4, 2, 1, 1.0f},
    };
    for (int c = 0; c < 3; c++) {
        const dsri_router_config *cfg = &cfgs[c];
        fill_both(0, 0, cfg->n_expert, 5, 512, 3.0f);
        fill_both(1 << 20, 0, cfg->n_expert, 1, 512, 0.5f);
        dsri_tensor l = T_VK(0, 0, cfg->n_expert, 5, 512), lr = T_REF(0, 0, cfg->n_expert, 5, 512);
        dsri_tensor b = T_VK(1 << 20, 0, cfg->n_expert, 1, 512), br = T_REF(1 << 20, 0, cfg->n_expert, 1, 512);
        dsri_tensor ids = T_VK(2 << 20, DSRI_TYPE_I32_ID, cfg->n_used, 5, 128);
        dsri_tensor idsr = T_REF(2 << 20, DSRI_TYPE_I32_ID, cfg->n_used, 5, 128);
        dsri_tensor w = T_VK(3 << 20, 0, cfg->n_used, 5, 128), wr = T_REF(3 << 20, 0, cfg->n_used, 5, 128);
        dsri_tensor absent = {NULL, 0, 0, 0, 0, 0}; /* no selection bias */
        const dsri_tensor *bias = c == 0 ? &b : &absent, *biasr = c == 0 ? &br : &absent;
        ON_BOTH(VK->moe_route(vk_side.be, cfg, &l, bias, &ids, &w), REF->moe_route(ref_side.be, cfg, &lr, biasr, &idsr, &wr));
        char name[64];
        snprintf(name, sizeof name, "moe_route config %d: experts", c);
        compare(name, 2 << 20, DSRI_TYPE_I32_ID, cfg->n_used, 5, 128, 0);
        snprintf(name, sizeof name, "moe_route config %d: weights", c);
        compare(name, 3 << 20, 0, cfg->n_used, 5, 128, 1e-5);
    }
}

/* Host weights of a type (random, quantized) placed on both sides. IQ2_XXS
 * (whose shaders read the device's IQ table buffer): random blocks with a
 * small f16 scale at byte 0. */
static void place_both(uint32_t type, int64_t cols, int64_t rows, void **host, dsri_buf *hb, dsri_tensor *on_vk,
                       dsri_tensor *on_ref)
{
    size_t rb = dsri_row_size(type, cols);
    float *row = malloc((size_t)cols * 4);
    uint8_t *h = *host = malloc(rb * (size_t)rows);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++)
            row[i] = frand();
        if (type != DSRI_TYPE_IQ2_XXS)
            CHECK(dsri_quantize_row(type, row, h + rb * (size_t)r, cols) == 0, "quantize");
    }
    for (size_t b = 0; type == DSRI_TYPE_IQ2_XXS && b < rb * (size_t)rows; b += 66) {
        uint16_t d = dsri_fp32_to_fp16(0.002f * (1.0f + frand()));
        h[b] = (uint8_t)d;
        h[b + 1] = (uint8_t)(d >> 8);
        for (size_t i = 2; i < 66; i++)
            h[b + i] = (uint8_t)(frand() * 128.0f + 128.0f);
    }
    free(row);
    dsri_buf b = {NULL, *host, rb * (size_t)rows, NULL};
    *hb = b;
    dsri_tensor src = {hb, 0, type, cols, rows, rb};
    CHECK(VK->place(vk_side.dev, &src, on_vk) == DSR1_OK, "place: %s", dsr1_last_error());
    CHECK(REF->place(ref_side.dev, &src, on_ref) == DSR1_OK, "reference place: %s", dsr1_last_error());
}

static void test_moe_ffn(void)
{
    const int64_t n_expert = 4, n = 5, n_used = 2;
    const uint32_t types[3] = {DSRI_TYPE_Q8_0, DSRI_TYPE_F16, DSRI_TYPE_IQ2_XXS};
    const char *const names[3] = {"moe_ffn (q8_0 experts)", "moe_ffn (f16 experts)", "moe_ffn (iq2_xxs experts)"};
    for (int ti = 0; ti < 3; ti++) {
        const int64_t ff = ti == 2 ? 256 : 64, d = ti == 2 ? 256 : 96; /* IQ rows: whole 256-blocks */
        void *hg, *hu, *hd;
        dsri_buf bg, bu, bd;
        dsri_tensor g, u, dn, gr, ur, dr;
        place_both(types[ti], d, n_expert * ff, &hg, &bg, &g, &gr);
        place_both(types[ti], d, n_expert * ff, &hu, &bu, &u, &ur);
        place_both(types[ti], ff, n_expert * d, &hd, &bd, &dn, &dr);
        /* ids listed in either order: the sum runs in increasing expert id */
        int32_t ids[5][2] = {{3, 1}, {0, 2}, {2, 3}, {1, 0}, {3, 2}};
        fill_both(0, 0, d, n, (uint64_t)d * 4, 1.0f);
        fill_both(1 << 20, 0, n_used, n, 64, 1.0f);
        dsri_tensor it = T_VK(2 << 20, DSRI_TYPE_I32_ID, n_used, n, 8), itr = T_REF(2 << 20, DSRI_TYPE_I32_ID, n_used, n, 8);
        CHECK(VK->upload(vk_side.be, &it, ids) == DSR1_OK, "upload");
        CHECK(REF->upload(ref_side.be, &itr, ids) == DSR1_OK, "upload");
        int64_t work_floats = n * (d + 2 * ff) + 2 * n;
        dsri_tensor x = T_VK(0, 0, d, n, (uint64_t)d * 4), xr = T_REF(0, 0, d, n, (uint64_t)d * 4);
        dsri_tensor w = T_VK(1 << 20, 0, n_used, n, 64), wr = T_REF(1 << 20, 0, n_used, n, 64);
        dsri_tensor y = T_VK(3 << 20, 0, d, n, (uint64_t)d * 4), yr = T_REF(3 << 20, 0, d, n, (uint64_t)d * 4);
        dsri_tensor wk = T_VK(4 << 20, 0, work_floats, 1, (uint64_t)work_floats * 4);
        dsri_tensor wkr = T_REF(4 << 20, 0, work_floats, 1, (uint64_t)work_floats * 4);
        ON_BOTH(VK->moe_ffn(vk_side.be, &g, &u, &dn, ff, &x, &it, &w, &y, &wk),
                REF->moe_ffn(ref_side.be, &gr, &ur, &dr, ff, &xr, &itr, &wr, &yr, &wkr));
        /* sums of ~100 products added in another order */
        compare(names[ti], 3 << 20, 0, d, n, (uint64_t)d * 4, 1e-4);
        free(hg);
        free(hu);
        free(hd);
    }
}

/* Tensors bigger than one binding or one block: rows go in chunks. */
static void test_row_chunks(void)
{
    /* 1 MiB of rows with bindings of at most 64 KiB (DSR1_VK_MAX_BINDING in
     * the meson test env) or whatever the device allows */
    fill_both(0, 0, 1000, 260, 4000, 1.0f);
    fill_both(2 << 20, 0, 1000, 1, 4000, 1.0f);
    dsri_tensor x = T_VK(0, 0, 1000, 260, 4000), w = T_VK(2 << 20, 0, 1000, 1, 4000);
    dsri_tensor xr = T_REF(0, 0, 1000, 260, 4000), wr = T_REF(2 << 20, 0, 1000, 1, 4000);
    ON_BOTH(VK->rmsnorm(vk_side.be, &x, &w, &x, 1e-6f), REF->rmsnorm(ref_side.be, &xr, &wr, &xr, 1e-6f));
    compare("rmsnorm over many bindings", 0, 0, 1000, 260, 4000, 2e-6);

    /* a placed weight in several parts reads back as it was */
    int64_t rows = 3000, cols = 256;
    float *host = malloc((size_t)(rows * cols) * 4), *back = malloc((size_t)(rows * cols) * 4);
    for (int64_t i = 0; i < rows * cols; i++)
        host[i] = (float)i;
    dsri_buf hb = {NULL, host, (uint64_t)(rows * cols) * 4, NULL};
    dsri_tensor src = {&hb, 0, 0, cols, rows, (uint64_t)cols * 4}, placed;
    CHECK(VK->place(vk_side.dev, &src, &placed) == DSR1_OK, "place: %s", dsr1_last_error());
    CHECK(VK->download(vk_side.be, &placed, back) == DSR1_OK, "download: %s", dsr1_last_error());
    CHECK(memcmp(host, back, (size_t)(rows * cols) * 4) == 0, "a placed weight reads back changed");
    /* a row window of it, through an op */
    dsri_tensor win = dsri_rows(&placed, 1234, 700), dst = T_VK(4 << 20, 0, cols, 700, (uint64_t)cols * 4);
    VK->copy(vk_side.be, &win, &dst);
    CHECK(VK->download(vk_side.be, &dst, back) == DSR1_OK, "download: %s", dsr1_last_error());
    CHECK(memcmp(host + 1234 * cols, back, 700 * (size_t)cols * 4) == 0, "a copy of placed rows differs");
    free(host);
    free(back);
}

/* Bad input makes sync fail, and it stays failed. */
static void test_sticky_errors(void)
{
    side s;
    CHECK(side_open(&s, VK), "open: %s", dsr1_last_error());
    dsri_tensor a = view(&s, 0, 0, 100, 2, 400), b = view(&s, 0, DSRI_TYPE_Q4_0, 64, 2, 36);
    s.ops->add(s.be, &a, &b);
    dsr1_status st = s.ops->sync(s.be);
    CHECK(st == DSR1_ERR_INVALID_ARGUMENT, "a bad op: status %d", (int)st);
    s.ops->fill(s.be, &a, 1.0f);
    CHECK(s.ops->sync(s.be) == st, "the failure is not sticky");
    float v[200];
    CHECK(s.ops->download(s.be, &a, v) == st, "download after a failure succeeds");
    CHECK(strstr(dsr1_last_error(), "Vulkan") != NULL, "message: %s", dsr1_last_error());
    side_close(&s);
}

/* Placing more than the device has: DSR1_ERR_OUT_OF_MEMORY with the sizes,
 * nothing leaked, the device still usable. */
static void test_out_of_memory(void)
{
    dsri_device *dev;
    CHECK(VK->device_open(0, &dev) == DSR1_OK, "open: %s", dsr1_last_error());
    dsri_device_desc desc;
    CHECK(VK->device_describe(0, &desc) == DSR1_OK, "describe");
    uint64_t before = VK->device_free_memory(dev);
    static float row[1024];
    dsri_buf hb = {NULL, row, sizeof row, NULL};
    /* never read: the size check comes first */
    dsri_tensor huge = {&hb, 0, 0, 1024, (int64_t)(desc.memory / 4096 + 16), 0}, out;
    dsr1_status st = VK->place(dev, &huge, &out);
    CHECK(st == DSR1_ERR_OUT_OF_MEMORY, "status %d", (int)st);
    CHECK(strstr(dsr1_last_error(), "needs") && strstr(dsr1_last_error(), "device has"), "message: %s",
          dsr1_last_error());
    CHECK(VK->device_free_memory(dev) == before, "free memory %llu -> %llu", (unsigned long long)before,
          (unsigned long long)VK->device_free_memory(dev));
    dsri_tensor small = {&hb, 0, 0, 1024, 1, 4096};
    CHECK(VK->place(dev, &small, &out) == DSR1_OK, "the device is unusable after a failed place: %s",
          dsr1_last_error());
    VK->device_close(dev);
}

/* Bytes the process has from malloc (small and mmap'd blocks). Not the
 * resident size: that moves with malloc's per-thread arenas, which the
 * driver's worker threads touch in whatever order the scheduler runs them
 * (13 MiB apart between two runs on a loaded machine), while a leaked
 * buffer, ours or the driver's, stays allocated and shows here. */
static long heap_kib(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    struct mallinfo2 mi = mallinfo2();
    return (long)((mi.uordblks + mi.hblkhd) / 1024);
#else
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * 4;
#endif
}

/* A model's life, many times: device, weights, context, work, teardown. */
static void test_create_destroy(void)
{
    static float w[64 * 256];
    for (int i = 0; i < 64 * 256; i++)
        w[i] = (float)i;
    dsri_buf hb = {NULL, w, sizeof w, NULL};
    dsri_tensor src = {&hb, 0, 0, 256, 64, 1024};
    long heap_warm = 0;
    for (int it = 0; it < 24; it++) {
        side s;
        if (!side_open(&s, VK)) {
            CHECK(0, "open: %s", dsr1_last_error());
            return;
        }
        uint64_t free0 = VK->device_free_memory(s.dev);
        dsri_tensor placed, x = view(&s, 0, 0, 256, 64, 1024);
        CHECK(VK->place(s.dev, &src, &placed) == DSR1_OK, "place");
        VK->copy(s.be, &placed, &x);
        VK->rmsnorm(s.be, &x, &x, &x, 1e-6f);
        dsri_buf *extra;
        CHECK(VK->buf_new(s.dev, 1 << 20, &extra) == DSR1_OK, "buf_new");
        VK->buf_free(extra);
        CHECK(VK->sync(s.be) == DSR1_OK, "sync: %s", dsr1_last_error());
        CHECK(VK->device_free_memory(s.dev) <= free0, "free memory grew");
        side_close(&s);
        if (it == 4)
            heap_warm = heap_kib();
    }
    long growth = heap_kib() - heap_warm;
    printf("create/destroy: allocated memory %+ld KiB over 19 rounds\n", growth);
    /* 40-50 KiB measured, with and without the validation layer: a leaked
     * buffer of this loop (1 MiB a round) or a device's arrays would be
     * tens of MiB. */
    CHECK(growth < 2 * 1024, "allocated memory grew by %ld KiB over 19 device lifetimes", growth);
}

static int expect_no_vulkan(void)
{
    CHECK(VK->device_count() == 0, "a device was found");
    CHECK(!VK->available(), "available");
    dsri_device *dev = NULL;
    dsr1_status st = VK->device_open(0, &dev);
    CHECK(st == DSR1_ERR_UNSUPPORTED, "status %d", (int)st);
    CHECK(strstr(dsr1_last_error(), "no Vulkan") != NULL, "message: %s", dsr1_last_error());
    printf("without Vulkan: \"%s\"\n", dsr1_last_error());
    return check_summary("test_vulkan (no Vulkan)");
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[2], "--expect-no-vulkan") == 0)
        return expect_no_vulkan();
    if (VK->device_count() == 0) {
        dsri_device *dev;
        VK->device_open(0, &dev);
        printf("SKIP: the Vulkan tests did not run: %s\n", dsr1_last_error());
        return 77;
    }
    dsri_device_desc desc;
    CHECK(VK->device_describe(0, &desc) == DSR1_OK, "describe: %s", dsr1_last_error());
    printf("device 0: %s (%s, %.0f MiB)\n", desc.name, desc.is_cpu ? "CPU" : "GPU", (double)desc.memory / 1048576.0);
    if (!side_open(&vk_side, VK) || !side_open(&ref_side, REF)) {
        const char *e = dsr1_last_error();
        if (getenv("DSR1_VK_VALIDATION") && strstr(e, "not installed")) {
            printf("SKIP: the Vulkan validation run did not run: %s\n", e);
            return 77;
        }
        CHECK(0, "open: %s", e);
        return check_summary("test_vulkan");
    }
    test_rmsnorm();
    test_elementwise();
    test_copy();
    test_rope();
    test_attention();
    test_moe_route();
    test_moe_ffn();
    test_row_chunks();
    CHECK(VK->sync(vk_side.be) == DSR1_OK, "sync: %s", dsr1_last_error());
    side_close(&vk_side);
    side_close(&ref_side);
    test_sticky_errors();
    test_out_of_memory();
    test_create_destroy();
    return check_summary("test_vulkan");
}
#endif
