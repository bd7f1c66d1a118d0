/*
 * Helpers the architecture loaders use to read hyper-parameters and bind
 * tensors with exact shape checks. Every message names the key or tensor.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "model/model.h"
#include "quant/quant.h"

dsr1_status dsri_hp_int(const dsr1_model *m, const char *suffix, int required, int64_t lo, int64_t hi,
                        int32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    int64_t v;
    int r = dsri_gguf_get_i64(m->gguf, key, &v);
    if (r == -1) {
        if (!required)
            return DSR1_OK;
        return dsri_error(DSR1_ERR_FORMAT, "model: required key '%s' is missing", key);
    }
    if (r != 0)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%s' is not an integer", key);
    if (v < lo || v > hi)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%s' is %lld, outside [%lld, %lld]", key,
                          (long long)v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return DSR1_OK;
}

dsr1_status dsri_hp_float(const dsr1_model *m, const char *suffix, int required, float *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    float v;
    int r = dsri_gguf_get_f32(m->gguf, key, &v);
    if (r == -1) {
        if (!required)
            return DSR1_OK;
        return dsri_error(DSR1_ERR_FORMAT, "model: required key '%s' is missing", key);
    }
    if (r != 0)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%s' is not a float", key);
    if (!(v == v) || v > 3.0e38f || v < -3.0e38f)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%s' is not finite", key);
    *out = v;
    return DSR1_OK;
}

static void format_name(char *buf, size_t cap, const char *name, int layer)
{
    if (strstr(name, "%d"))
        snprintf(buf, cap, name, layer);
    else
        snprintf(buf, cap, "%s", name);
}

static dsr1_status find(dsr1_model *m, const char *name, int layer, int required,
                        const dsri_gguf_tensor **out, char *full, size_t cap)
{
    format_name(full, cap, name, layer);
    *out = dsri_gguf_find_tensor(m->gguf, full);
    if (!*out && required)
        return dsri_error(DSR1_ERR_FORMAT, "model: required tensor '%s' is missing", full);
    return DSR1_OK;
}

static dsr1_status shape_error(const char *full, const dsri_gguf_tensor *t, int64_t a, int64_t b, int64_t c)
{
    return dsri_error(DSR1_ERR_FORMAT,
                      "model: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld, %lld]",
                      full, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                      (long long)t->ne[3], (long long)a, (long long)b, (long long)c);
}

static void note_row(dsr1_model *m, int64_t n_in)
{
    if (n_in > m->max_row)
        m->max_row = n_in;
}

/* A view of tensor t of the mapping: rows x cols, row_bytes apart. */
static dsri_tensor file_view(dsr1_model *m, const dsri_gguf_tensor *t, int64_t cols, int64_t rows)
{
    dsri_tensor v = {&m->file_buf, (uint64_t)((const uint8_t *)t->data - m->bytes), t->type, cols, rows,
                     dsri_row_size(t->type, cols)};
    return v;
}

dsr1_status dsri_bind_matrix(dsr1_model *m, dsri_tensor *out, int required, int64_t n_in,
                             int64_t n_out, const char *name, int layer)
{
    char full[160];
    const dsri_gguf_tensor *t;
    memset(out, 0, sizeof *out);
    dsr1_status st = find(m, name, layer, required, &t, full, sizeof full);
    if (st || !t)
        return st;
    if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != 1 || t->ne[3] != 1)
        return shape_error(full, t, n_in, n_out, 1);
    *out = file_view(m, t, n_in, n_out);
    note_row(m, n_in);
    return DSR1_OK;
}

dsr1_status dsri_bind_experts(dsr1_model *m, dsri_tensor *out, int64_t n_in, int64_t n_out,
                              int64_t n_expert, const char *name, int layer)
{
    char full[160];
    const dsri_gguf_tensor *t;
    memset(out, 0, sizeof *out);
    dsr1_status st = find(m, name, layer, 1, &t, full, sizeof full);
    if (st)
        return st;
    if (t->ne[0] != n_in || t->ne[1] != n_out || t->ne[2] != n_expert || t->ne[3] != 1)
        return shape_error(full, t, n_in, n_out, n_expert);
    *out = file_view(m, t, n_in, n_out * n_expert);
    note_row(m, n_in);
    return DSR1_OK;
}

dsr1_status dsri_model_floats(dsr1_model *m, int64_t n, float **out, dsri_tensor *view)
{
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 16;
        dsri_buf **o = dsri_realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "model: out of memory");
        m->owned = o;
        m->cap_owned = cap;
    }
    /* the buffer's header and its floats in one allocation */
    size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
    dsri_buf *b = dsri_calloc(1, sizeof *b + bytes);
    if (!b)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "model: out of memory");
    b->host = b + 1;
    b->size = bytes;
    m->owned[m->n_owned++] = b;
    *out = b->host;
    *view = dsri_tensor_2d(b, 0, DSRI_TYPE_F32, n, 1);
    return DSR1_OK;
}

dsr1_status dsri_bind_vector(dsr1_model *m, dsri_tensor *out, int required, int64_t n,
                             const char *name, int layer)
{
    char full[160];
    const dsri_gguf_tensor *t;
    memset(out, 0, sizeof *out);
    dsr1_status st = find(m, name, layer, required, &t, full, sizeof full);
    if (st || !t)
        return st;
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return shape_error(full, t, n, 1, 1);
    if (t->type == DSRI_TYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = file_view(m, t, n, 1);
    } else {
        if (!dsri_type_traits_get(t->type))
            return dsri_error(DSR1_ERR_UNSUPPORTED, "model: tensor '%s' has a type that cannot be read", full);
        float *v;
        if ((st = dsri_model_floats(m, n, &v, out)))
            return st;
        if (dsri_dequantize_row(t->type, t->data, v, n) != 0)
            return dsri_error(DSR1_ERR_UNSUPPORTED, "model: tensor '%s' has a type that cannot be read", full);
    }
    /* Norm weights, biases and the like: a NaN or infinity in one makes
     * every result NaN, so it is a corrupt file (a few thousand values per
     * tensor: cheap to check, unlike the matrices). */
    return dsri_check_vector_range((const float *)dsri_host_ptr(out), n, -HUGE_VALF, HUGE_VALF, name, layer);
}

dsr1_status dsri_check_vector_range(const float *v, int64_t n, float lo, float hi, const char *name, int layer)
{
    for (int64_t i = 0; v && i < n; i++) {
        if (isfinite(v[i]) && v[i] >= lo && v[i] <= hi)
            continue;
        char full[160];
        format_name(full, sizeof full, name, layer);
        if (!isfinite(v[i]))
            return dsri_error(DSR1_ERR_FORMAT, "model: tensor '%s' element %lld is %g, not a finite number", full,
                              (long long)i, (double)v[i]);
        return dsri_error(DSR1_ERR_FORMAT, "model: tensor '%s' element %lld is %g, outside [%g, %g]", full,
                          (long long)i, (double)v[i], (double)lo, (double)hi);
    }
    return DSR1_OK;
}

dsr1_status dsri_rope_init_standard(dsr1_model *m)
{
    int half = m->hp.rope_dim / 2;
    dsr1_status st = dsri_model_floats(m, half, &m->rope_freq, &m->rope_freq_t);
    if (st)
        return st;
    for (int i = 0; i < half; i++) {
        double f = pow((double)m->hp.rope_theta, -2.0 * i / m->hp.rope_dim);
        if (m->rope_freq_factors)
            f /= m->rope_freq_factors[i];
        m->rope_freq[i] = (float)f;
    }
    m->rope_mscale = 1.0f;
    return DSR1_OK;
}
