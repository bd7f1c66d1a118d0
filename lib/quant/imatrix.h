/*
 * libdsr1 - importance matrices (internal): llama.cpp's imatrix files.
 *
 * An importance matrix holds, for every weight matrix a model multiplies
 * activations with, the sum of the squared activations each input column
 * met and how many activation rows were summed (per expert for a 3-D expert
 * tensor). Quantizers weight their error by the mean (lib/quant/quant.h,
 * dsri_quantize_rows).
 *
 * Files, as llama.cpp reads and writes them (tools/imatrix/imatrix.cpp,
 * common/imatrix-loader.cpp):
 *  - GGUF (llama-imatrix's default): general.type = "imatrix",
 *    imatrix.datasets (string array), imatrix.chunk_count and
 *    imatrix.chunk_size (u32); per entry NAME two f32 tensors,
 *    NAME.in_sum2 [n_per_row, n_mat] (the sums) and NAME.counts [1, n_mat].
 *  - legacy .dat: i32 n_entries; per entry i32 name length, the name, i32
 *    ncall, i32 nval, nval f32 (mean * ncall); then optionally i32
 *    chunk count, i32 length and the dataset name. Little-endian.
 * Entries are named after the weight tensors ("blk.0.ffn_down.weight",
 * "blk.3.ffn_up_exps.weight").
 */
#ifndef DSRI_IMATRIX_H
#define DSRI_IMATRIX_H

#include <stdint.h>

#include "dsr1.h"

typedef struct dsri_imatrix_entry {
    char *name;
    int64_t n_values; /* n_per_row * n_mat: the sums */
    int64_t n_counts; /* matrices the counts are kept for (1 for a dense weight) */
    float *sums;      /* n_values sums of squares (legacy files: mean * ncall) */
    int64_t *counts;  /* n_counts rows summed (legacy files: ncall) */
} dsri_imatrix_entry;

typedef struct dsri_imatrix {
    dsri_imatrix_entry *entries; /* sorted by name once loaded or saved */
    int64_t n_entries, cap;
    char *dataset;       /* the text it was computed on, or NULL */
    int32_t chunk_count; /* chunks evaluated */
    int32_t chunk_size;  /* tokens per chunk (0: unknown, legacy files) */
    int is_legacy;       /* read from a legacy file */
} dsri_imatrix;

/* Read either format (GGUF when the file starts with "GGUF"). Every
 * malformed file is refused with DSR1_ERR_FORMAT (DSR1_ERR_IO when unreadable) and a
 * message naming the file and the fault; values must be finite and >= 0. */
dsr1_status dsri_imatrix_load(const char *path, dsri_imatrix **out);

/* Write m (entries of no data are kept in GGUF, dropped in legacy files, as
 * llama-imatrix does). legacy: the .dat format, else GGUF. */
dsr1_status dsri_imatrix_save(dsri_imatrix *m, const char *path, int legacy);

dsri_imatrix *dsri_imatrix_new(void);
void dsri_imatrix_free(dsri_imatrix *m);

/* The entry of that name (NULL: none). */
const dsri_imatrix_entry *dsri_imatrix_find(const dsri_imatrix *m, const char *name);

/* Importance weights of a tensor of n_per_row columns and n_mat matrices
 * (experts): out[k * n_per_row + i] for matrix k, as llama-quantize derives
 * them (sum / count; 1 where a matrix saw no rows; legacy: sum / ncall).
 * -1 when the entry's size is not n_per_row * n_mat. */
int dsri_imatrix_weights(const dsri_imatrix_entry *e, int64_t n_per_row, int64_t n_mat, float *out);

/* Collecting: add n_rows dense rows x of n_per_row activations to matrix
 * `mat` of the entry `name` of n_mat matrices (created on first use, zero).
 * DSR1_ERR_INVALID_ARGUMENT when an existing entry has another shape. */
dsr1_status dsri_imatrix_add(dsri_imatrix *m, const char *name, int64_t n_per_row, int64_t n_mat, int64_t mat,
                             const float *x, int64_t n_rows);

#endif
