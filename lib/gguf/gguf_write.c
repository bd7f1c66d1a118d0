/* Minimal GGUF v3 writer (see gguf_write.h). Little-endian hosts only, like
 * the parser. */
#include <errno.h>
#include <string.h>

#include "core/error.h"
#include "gguf/gguf_write.h"

static dsr1_status put(FILE *f, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, f) != n)
        return dsri_error(DSR1_ERR_IO, "write failed: %s", strerror(errno));
    return DSR1_OK;
}

static dsr1_status put_u32(FILE *f, uint32_t v) { return put(f, &v, 4); }
static dsr1_status put_u64(FILE *f, uint64_t v) { return put(f, &v, 8); }

dsr1_status dsri_gguf_write_bytes(FILE *f, const void *data, size_t len) { return put(f, data, len); }

dsr1_status dsri_gguf_write_header(FILE *f, uint64_t n_tensors, uint64_t n_kv)
{
    dsr1_status st = put(f, "GGUF", 4);
    if (!st)
        st = put_u32(f, 3);
    if (!st)
        st = put_u64(f, n_tensors);
    if (!st)
        st = put_u64(f, n_kv);
    return st;
}

static uint64_t scalar_size(dsri_gguf_vtype t)
{
    switch (t) {
    case DSRI_GGUF_U8: case DSRI_GGUF_I8: case DSRI_GGUF_BOOL: return 1;
    case DSRI_GGUF_U16: case DSRI_GGUF_I16: return 2;
    case DSRI_GGUF_U32: case DSRI_GGUF_I32: case DSRI_GGUF_F32: return 4;
    case DSRI_GGUF_U64: case DSRI_GGUF_I64: case DSRI_GGUF_F64: return 8;
    default: return 0;
    }
}

/* End of the value in the file buffer. */
static const uint8_t *value_end(const dsri_gguf *g, const dsri_gguf_kv *kv)
{
    if (kv->type == DSRI_GGUF_STRING) {
        uint64_t len;
        memcpy(&len, kv->data, 8);
        return kv->data + 8 + len;
    }
    if (kv->type == DSRI_GGUF_ARRAY) {
        if (kv->arr_type == DSRI_GGUF_STRING) {
            dsri_str s;
            if (kv->arr_n == 0 || dsri_gguf_arr_str(g, kv, kv->arr_n - 1, &s) != 0)
                return kv->data;
            return (const uint8_t *)s.ptr + s.len;
        }
        return kv->data + kv->arr_n * scalar_size(kv->arr_type);
    }
    return kv->data + scalar_size(kv->type);
}

uint64_t dsri_gguf_kv_raw_size(const dsri_gguf *g, const dsri_gguf_kv *kv)
{
    const uint8_t *start = (const uint8_t *)kv->key.ptr - 8;
    return (uint64_t)(value_end(g, kv) - start);
}

dsr1_status dsri_gguf_write_kv_copy(FILE *f, const dsri_gguf *g, const dsri_gguf_kv *kv)
{
    /* The pair is contiguous in the file: key length, key, type, value. */
    const uint8_t *start = (const uint8_t *)kv->key.ptr - 8;
    return put(f, start, (size_t)dsri_gguf_kv_raw_size(g, kv));
}

dsr1_status dsri_gguf_write_kv_u32(FILE *f, const char *key, uint32_t value)
{
    uint64_t len = strlen(key);
    dsr1_status st = put_u64(f, len);
    if (!st)
        st = put(f, key, (size_t)len);
    if (!st)
        st = put_u32(f, DSRI_GGUF_U32);
    if (!st)
        st = put_u32(f, value);
    return st;
}

static dsr1_status put_str(FILE *f, const char *s)
{
    uint64_t len = strlen(s);
    dsr1_status st = put_u64(f, len);
    return st ? st : put(f, s, (size_t)len);
}

dsr1_status dsri_gguf_write_kv_str(FILE *f, const char *key, const char *value)
{
    dsr1_status st = put_str(f, key);
    if (!st)
        st = put_u32(f, DSRI_GGUF_STRING);
    if (!st)
        st = put_str(f, value);
    return st;
}

dsr1_status dsri_gguf_write_kv_str_array(FILE *f, const char *key, const char *const *values, uint64_t n)
{
    dsr1_status st = put_str(f, key);
    if (!st)
        st = put_u32(f, DSRI_GGUF_ARRAY);
    if (!st)
        st = put_u32(f, DSRI_GGUF_STRING);
    if (!st)
        st = put_u64(f, n);
    for (uint64_t i = 0; !st && i < n; i++)
        st = put_str(f, values[i]);
    return st;
}

dsr1_status dsri_gguf_write_tensor_info(FILE *f, const char *name, size_t name_len, uint32_t n_dims,
                                        const int64_t *ne, uint32_t type, uint64_t offset)
{
    dsr1_status st = put_u64(f, name_len);
    if (!st)
        st = put(f, name, name_len);
    if (!st)
        st = put_u32(f, n_dims);
    for (uint32_t d = 0; !st && d < n_dims; d++)
        st = put_u64(f, (uint64_t)ne[d]);
    if (!st)
        st = put_u32(f, type);
    if (!st)
        st = put_u64(f, offset);
    return st;
}

dsr1_status dsri_gguf_write_pad(FILE *f, uint64_t pos, uint64_t alignment)
{
    static const uint8_t zeros[64];
    uint64_t n = alignment ? (alignment - pos % alignment) % alignment : 0;
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        dsr1_status st = put(f, zeros, k);
        if (st)
            return st;
        n -= k;
    }
    return DSR1_OK;
}
