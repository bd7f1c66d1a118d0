/*
 * GGUF container parser (internal).
 *
 * Parses and validates a GGUF v2/v3 file held in memory (normally an mmap of
 * the file). It knows nothing about models: it checks the container itself
 * (magic, version, counts, string/array lengths, tensor shapes, byte sizes,
 * offsets, alignment, duplicate names) and hands out typed views. It is kept
 * separate from the model loader so a fuzz target can drive it directly.
 *
 * Nothing is copied: strings and tensor data point into the caller's buffer,
 * which must outlive the dsri_gguf handle.
 */
#ifndef DSRI_GGUF_H
#define DSRI_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "dsr1.h"

/* Metadata value types, numbered as in the GGUF specification. */
typedef enum dsri_gguf_vtype {
    DSRI_GGUF_U8 = 0, DSRI_GGUF_I8 = 1, DSRI_GGUF_U16 = 2, DSRI_GGUF_I16 = 3,
    DSRI_GGUF_U32 = 4, DSRI_GGUF_I32 = 5, DSRI_GGUF_F32 = 6, DSRI_GGUF_BOOL = 7,
    DSRI_GGUF_STRING = 8, DSRI_GGUF_ARRAY = 9, DSRI_GGUF_U64 = 10,
    DSRI_GGUF_I64 = 11, DSRI_GGUF_F64 = 12
} dsri_gguf_vtype;

/* A string inside the file: not NUL-terminated. */
typedef struct dsri_str {
    const char *ptr;
    uint64_t len;
} dsri_str;

typedef struct dsri_gguf_kv {
    dsri_str key;
    dsri_gguf_vtype type;
    /* For arrays: element type and count; data points at the first element
     * (for string arrays, at the first length prefix). For scalars data
     * points at the value. */
    dsri_gguf_vtype arr_type;
    uint64_t arr_n;
    const uint8_t *data;
} dsri_gguf_kv;

#define DSRI_GGUF_MAX_DIMS 4

typedef struct dsri_gguf_tensor {
    dsri_str name;
    uint32_t type;       /* ggml type id (see lib/quant/quant.h) */
    uint32_t n_dims;
    int64_t ne[DSRI_GGUF_MAX_DIMS]; /* ne[0] is the contiguous dimension; unused dims are 1 */
    uint64_t offset;     /* relative to the data section */
    uint64_t n_bytes;
    const uint8_t *data; /* points into the buffer */
} dsri_gguf_tensor;

typedef struct dsri_gguf dsri_gguf;

/* Parse buf[0..size). On failure returns a status and records a message
 * naming the cause (key, tensor, byte offset) with dsri_error(). */
dsr1_status dsri_gguf_parse(const void *buf, size_t size, dsri_gguf **out);
void dsri_gguf_free(dsri_gguf *g);

uint32_t dsri_gguf_version(const dsri_gguf *g);
uint64_t dsri_gguf_alignment(const dsri_gguf *g);

uint64_t dsri_gguf_kv_count(const dsri_gguf *g);
const dsri_gguf_kv *dsri_gguf_kv_at(const dsri_gguf *g, uint64_t i);
const dsri_gguf_kv *dsri_gguf_find_kv(const dsri_gguf *g, const char *key);

uint64_t dsri_gguf_tensor_count(const dsri_gguf *g);
const dsri_gguf_tensor *dsri_gguf_tensor_at(const dsri_gguf *g, uint64_t i);
const dsri_gguf_tensor *dsri_gguf_find_tensor(const dsri_gguf *g, const char *name);

/* Typed scalar getters. Integer getters accept any integer type whose value
 * fits (and bool); float getters accept f32/f64. Return 0 on success, -1 when
 * the key is missing, -2 when the type does not fit. */
int dsri_gguf_get_u64(const dsri_gguf *g, const char *key, uint64_t *out);
int dsri_gguf_get_i64(const dsri_gguf *g, const char *key, int64_t *out);
int dsri_gguf_get_f32(const dsri_gguf *g, const char *key, float *out);
int dsri_gguf_get_bool(const dsri_gguf *g, const char *key, int *out);
int dsri_gguf_get_str(const dsri_gguf *g, const char *key, dsri_str *out);

/* Array element access (bounds already validated by the parser).
 * dsri_gguf_arr_str walks string arrays: the parser pre-indexes them, so
 * access by index is O(1). */
int dsri_gguf_arr_str(const dsri_gguf *g, const dsri_gguf_kv *kv, uint64_t i, dsri_str *out);
int64_t dsri_gguf_arr_int(const dsri_gguf_kv *kv, uint64_t i);   /* integer arrays */
double dsri_gguf_arr_float(const dsri_gguf_kv *kv, uint64_t i);  /* f32/f64 arrays */

int dsri_str_eq(dsri_str s, const char *cstr);

#endif
