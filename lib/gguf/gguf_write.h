/*
 * Minimal GGUF v3 writer (internal), used by the quantize tool and imatrix files.
 *
 * Writes to a stdio stream in file order: header, key/value pairs, tensor
 * infos, padding, then each tensor's data followed by padding. Key/value
 * pairs can be copied byte for byte from a parsed file. Functions return
 * DSR1_OK or DSR1_ERR_IO (with a message recorded by dsri_error()).
 */
#ifndef DSRI_GGUF_WRITE_H
#define DSRI_GGUF_WRITE_H

#include <stdint.h>
#include <stdio.h>

#include "gguf/gguf.h"

/* "GGUF", version 3, counts. */
dsr1_status dsri_gguf_write_header(FILE *f, uint64_t n_tensors, uint64_t n_kv);

/* Bytes a key/value pair of g takes in its file (key with its length
 * prefix, value type, value); writes exactly those bytes. */
uint64_t dsri_gguf_kv_raw_size(const dsri_gguf *g, const dsri_gguf_kv *kv);
dsr1_status dsri_gguf_write_kv_copy(FILE *f, const dsri_gguf *g, const dsri_gguf_kv *kv);

/* A u32 scalar pair. */
dsr1_status dsri_gguf_write_kv_u32(FILE *f, const char *key, uint32_t value);

/* A string pair, and an array of n strings. */
dsr1_status dsri_gguf_write_kv_str(FILE *f, const char *key, const char *value);
dsr1_status dsri_gguf_write_kv_str_array(FILE *f, const char *key, const char *const *values, uint64_t n);

/* One tensor info; offset is relative to the data section. */
dsr1_status dsri_gguf_write_tensor_info(FILE *f, const char *name, size_t name_len, uint32_t n_dims,
                                        const int64_t *ne, uint32_t type, uint64_t offset);

/* Write len bytes of data. */
dsr1_status dsri_gguf_write_bytes(FILE *f, const void *data, size_t len);

/* Zero bytes up to the next multiple of alignment, counting from pos (the
 * number of bytes written so far, or written since the data section began). */
dsr1_status dsri_gguf_write_pad(FILE *f, uint64_t pos, uint64_t alignment);

#endif
