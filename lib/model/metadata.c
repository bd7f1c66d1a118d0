/* Model metadata and tensor queries of the public API. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/params.h"
#include "model/model.h"
#include "quant/quant.h"

const char *dsr1_type_name(uint32_t type)
{
    const dsri_type_traits *t = dsri_type_traits_get(type);
    return t ? t->name : "unknown";
}

int64_t dsr1_model_meta_count(const dsr1_model *model)
{
    return model ? (int64_t)dsri_gguf_kv_count(model->gguf) : 0;
}

/* Copy n bytes + NUL into buf when it fits; report the need either way. */
static dsr1_status put_text(const char *text, size_t n, char *buf, size_t buf_size, size_t *needed)
{
    if (needed)
        *needed = n;
    if (!buf || buf_size <= n)
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "buffer of %zu bytes is too small: %zu needed (with the NUL)",
                          buf_size, n + 1);
    memcpy(buf, text, n);
    buf[n] = '\0';
    return DSR1_OK;
}

dsr1_status dsr1_model_meta_key(const dsr1_model *model, int64_t index, char *buf, size_t buf_size,
                                size_t *needed)
{
    if (!model)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_meta_key: model is NULL");
    if (index < 0 || (uint64_t)index >= dsri_gguf_kv_count(model->gguf))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_meta_key: index %lld out of range",
                          (long long)index);
    const dsri_gguf_kv *kv = dsri_gguf_kv_at(model->gguf, (uint64_t)index);
    return put_text(kv->key.ptr, (size_t)kv->key.len, buf, buf_size, needed);
}

/* A growable text builder that never fails: it counts what would be written
 * and stores what fits in a scratch buffer. */
typedef struct text {
    char *buf;
    size_t cap;
    size_t len;
} text;

static void text_add(text *t, const char *s, size_t n)
{
    if (t->len < t->cap) {
        size_t k = t->cap - t->len < n ? t->cap - t->len : n;
        memcpy(t->buf + t->len, s, k);
    }
    t->len += n;
}

static void text_printf_num(text *t, const char *fmt, double d, int64_t i, uint64_t u, int which)
{
    char tmp[64];
    int n = which == 0 ? snprintf(tmp, sizeof tmp, fmt, d)
          : which == 1 ? snprintf(tmp, sizeof tmp, fmt, i) : snprintf(tmp, sizeof tmp, fmt, u);
    text_add(t, tmp, (size_t)n);
}

static void render_scalar(text *t, dsri_gguf_vtype type, const uint8_t *p)
{
    uint64_t raw = 0;
    switch (type) {
    case DSRI_GGUF_BOOL: text_add(t, p[0] ? "true" : "false", p[0] ? 4 : 5); return;
    case DSRI_GGUF_U8: text_printf_num(t, "%" PRIu64, 0, 0, p[0], 2); return;
    case DSRI_GGUF_I8: text_printf_num(t, "%" PRId64, 0, (int8_t)p[0], 0, 1); return;
    default: break;
    }
    if (type == DSRI_GGUF_F32) {
        float f;
        memcpy(&f, p, 4);
        text_printf_num(t, "%.9g", f, 0, 0, 0);
        return;
    }
    if (type == DSRI_GGUF_F64) {
        double f;
        memcpy(&f, p, 8);
        text_printf_num(t, "%.17g", f, 0, 0, 0);
        return;
    }
    int bytes = type == DSRI_GGUF_U16 || type == DSRI_GGUF_I16 ? 2 : type == DSRI_GGUF_U32 || type == DSRI_GGUF_I32 ? 4 : 8;
    for (int k = 0; k < bytes; k++)
        raw |= (uint64_t)p[k] << (8 * k);
    switch (type) {
    case DSRI_GGUF_I16: text_printf_num(t, "%" PRId64, 0, (int16_t)raw, 0, 1); return;
    case DSRI_GGUF_I32: text_printf_num(t, "%" PRId64, 0, (int32_t)raw, 0, 1); return;
    case DSRI_GGUF_I64: text_printf_num(t, "%" PRId64, 0, (int64_t)raw, 0, 1); return;
    default: text_printf_num(t, "%" PRIu64, 0, 0, raw, 2); return;
    }
}

static size_t scalar_size(dsri_gguf_vtype type)
{
    switch (type) {
    case DSRI_GGUF_U8: case DSRI_GGUF_I8: case DSRI_GGUF_BOOL: return 1;
    case DSRI_GGUF_U16: case DSRI_GGUF_I16: return 2;
    case DSRI_GGUF_U32: case DSRI_GGUF_I32: case DSRI_GGUF_F32: return 4;
    default: return 8;
    }
}

#define MAX_ARRAY_SHOWN 16

static void render_value(const dsri_gguf *g, const dsri_gguf_kv *kv, text *t)
{
    if (kv->type == DSRI_GGUF_STRING) {
        uint64_t len = 0;
        for (int k = 0; k < 8; k++)
            len |= (uint64_t)kv->data[k] << (8 * k);
        text_add(t, (const char *)kv->data + 8, (size_t)len);
        return;
    }
    if (kv->type != DSRI_GGUF_ARRAY) {
        render_scalar(t, kv->type, kv->data);
        return;
    }
    text_add(t, "[", 1);
    for (uint64_t i = 0; i < kv->arr_n && i < MAX_ARRAY_SHOWN; i++) {
        if (i)
            text_add(t, ", ", 2);
        if (kv->arr_type == DSRI_GGUF_STRING) {
            dsri_str s;
            dsri_gguf_arr_str(g, kv, i, &s);
            text_add(t, s.ptr, (size_t)s.len);
        } else {
            render_scalar(t, kv->arr_type, kv->data + i * scalar_size(kv->arr_type));
        }
    }
    if (kv->arr_n > MAX_ARRAY_SHOWN) {
        char tmp[64];
        int n = snprintf(tmp, sizeof tmp, ", ... (%" PRIu64 " items)", kv->arr_n);
        text_add(t, tmp, (size_t)n);
    }
    text_add(t, "]", 1);
}

dsr1_status dsr1_model_meta_value(const dsr1_model *model, const char *key, char *buf, size_t buf_size,
                                  size_t *needed)
{
    if (!model || !key)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_meta_value: NULL argument");
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(model->gguf, key);
    if (!kv)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_meta_value: no key '%s'", key);
    text t = {buf, buf ? buf_size : 0, 0};
    render_value(model->gguf, kv, &t);
    if (needed)
        *needed = t.len;
    if (!buf || buf_size <= t.len)
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "dsr1_model_meta_value: '%s' needs %zu bytes (with the NUL)",
                          key, t.len + 1);
    buf[t.len] = '\0';
    return DSR1_OK;
}

int64_t dsr1_model_tensor_count(const dsr1_model *model)
{
    return model ? (int64_t)dsri_gguf_tensor_count(model->gguf) : 0;
}

dsr1_status dsr1_model_tensor_info(const dsr1_model *model, int64_t index, dsr1_tensor_info *info)
{
    if (!model || !info)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_tensor_info: NULL argument");
    if (index < 0 || (uint64_t)index >= dsri_gguf_tensor_count(model->gguf))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_tensor_info: index %lld out of range",
                          (long long)index);
    const dsri_gguf_tensor *t = dsri_gguf_tensor_at(model->gguf, (uint64_t)index);
    dsr1_tensor_info full;
    memset(&full, 0, sizeof full);
    full.name = model->tensor_names[index];
    full.type = t->type;
    full.n_dims = t->n_dims;
    for (int d = 0; d < 4; d++)
        full.ne[d] = t->ne[d];
    full.n_bytes = t->n_bytes;
    /* write only what the caller's (possibly older, smaller) struct holds */
    return dsri_struct_write(info, &full, sizeof full, "dsr1_tensor_info");
}
