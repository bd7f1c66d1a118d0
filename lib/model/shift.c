/*
 * Context shift: drop cached positions [n_keep, n_keep + n_discard) and move
 * the ones after them down by n_discard, so a conversation goes on past
 * n_ctx without evaluating the kept tokens again.
 *
 * Keys carry their position as a rotation (RoPE): a key moved from
 * position p to p - n_discard is rotated by -n_discard, which gives the key
 * the forward pass would have cached at the new position from the same
 * unrotated key (rotations compose; the angle is linear in the position
 * for every frequency scheme here: plain, llama3 factors, YaRN's per-pair
 * mix). Values carry no position and move as they are. Each
 * architecture knows which part of its cached keys rotates
 * (dsri_arch_ops.rotate_keys). As in every context shift (llama.cpp's
 * K-shift does the same), the moved entries keep what they attended to
 * when they were computed, discarded tokens included: only a one-layer
 * model's cache equals a fresh evaluation of the kept tokens exactly.
 *
 * The rows move through the run's scratch as f32, chunk by chunk in
 * increasing position, so the copies never overlap and an f16 cache is
 * widened for the rotation and rounded once more after it (the precision
 * cost is measured in tests/test_shift.c). Everything is a backend op, so
 * the layers on a device move in device memory.
 */
#include <string.h>

#include "core/error.h"
#include "model/context.h"

/* Rows [from, from + n) of cache tensor t to [from - by, ...) through the
 * f32 scratch of run r, rotating them as keys when `keys`. */
static void move_rows(const dsr1_context *ctx, const dsri_run *r, const dsri_tensor *t, int32_t from, int32_t n,
                      int32_t by, int keys)
{
    const dsri_tensor src = dsri_rows(t, from, n), dst = dsri_rows(t, from - by, n);
    const dsri_tensor tmp = dsri_scratch(r, 0, t->cols, n);
    r->ops->copy(r->be, &src, &tmp);
    if (keys)
        ctx->model->arch->rotate_keys(ctx, r, &tmp, ctx->pos);
    r->ops->copy(r->be, &tmp, &dst);
}

/* The rows one move takes: n_batch (the positions array), as far as the
 * scratch holds them. */
static int32_t chunk_rows(const dsr1_context *ctx)
{
    const dsr1_model *m = ctx->model;
    const int64_t width = m->kv_k_width > m->kv_v_width ? m->kv_k_width : m->kv_v_width;
    const int64_t fit = m->arch->scratch_floats(m, ctx->n_batch, ctx->n_ctx) / (width > 0 ? width : 1);
    return fit < ctx->n_batch ? (int32_t)fit : ctx->n_batch;
}

dsr1_status dsri_ctx_shift(dsr1_context *ctx, int32_t n_keep, int32_t n_discard)
{
    const int32_t first = n_keep + n_discard, n_move = ctx->n_past - first;
    const int32_t chunk = chunk_rows(ctx);
    if (!ctx->model->arch->rotate_keys || chunk < 1)
        return dsri_error(DSR1_ERR_UNSUPPORTED, "context shift: not available for architecture %s",
                          ctx->model->arch->name);
    /* the MTP head's entries from n_keep on were made with other tokens */
    dsri_ctx_mtp_rewind(ctx, n_keep, n_move > 0 ? &ctx->tokens[first] : NULL);
    ctx->n_logits_rows = 0; /* computed before: they no longer describe the cache */
    ctx->n_hidden = 0;
    for (int32_t t = 0; t < chunk; t++)
        ctx->pos[t] = -n_discard;
    for (int l = 0; l < ctx->n_cache_layers; l++) {
        const dsri_run *r = dsri_ctx_run(ctx, l);
        for (int32_t done = 0; done < n_move; done += chunk) {
            const int32_t n = n_move - done < chunk ? n_move - done : chunk;
            move_rows(ctx, r, &ctx->k[l], first + done, n, n_discard, 1);
            if (ctx->v[l].cols > 0)
                move_rows(ctx, r, &ctx->v[l], first + done, n, n_discard, 0);
        }
    }
    dsr1_status st = dsri_ctx_sync(ctx);
    if (st) { /* some rows may have moved: keep only what no move touched */
        ctx->n_past = n_keep;
        return st;
    }
    memmove(ctx->tokens + n_keep, ctx->tokens + first, (size_t)n_move * sizeof *ctx->tokens);
    ctx->n_past -= n_discard;
    return DSR1_OK;
}

dsr1_status dsri_ctx_check_shift(const dsr1_context *ctx, int32_t n_keep, int32_t n_discard, const char *fn)
{
    if (n_keep < 0 || n_keep > ctx->n_past)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "%s: n_keep %d is outside [0, n_past = %d]", fn, n_keep,
                          ctx->n_past);
    if (n_discard < 1 || n_discard > ctx->n_past - n_keep)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT,
                          "%s: n_discard %d is outside [1, %d] (the context holds %d tokens after the %d kept)", fn,
                          n_discard, ctx->n_past - n_keep, ctx->n_past - n_keep, n_keep);
    return DSR1_OK;
}

dsr1_status dsr1_context_shift(dsr1_context *ctx, int32_t n_keep, int32_t n_discard)
{
    if (!ctx)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_context_shift: ctx is NULL");
    dsri_call call;
    dsr1_status st = dsri_enter(&ctx->handle, &call, "dsr1_context_shift");
    if (st)
        return st;
    if (!(st = dsri_context_check_free(ctx, "dsr1_context_shift")) &&
        !(st = dsri_ctx_check_shift(ctx, n_keep, n_discard, "dsr1_context_shift")))
        st = dsri_ctx_shift(ctx, n_keep, n_discard);
    return dsri_leave(&ctx->handle, &call, st);
}
