/*
 * libdsr1 - weight-type layer (internal).
 *
 * Bit-exact dequantization of the ggml tensor types used by GGUF files, plus
 * reference (round-to-nearest) quantizers, fp16/bf16 conversions and a plain
 * f32 dot product.
 *
 * Block layouts and formulas follow ggml's definitions (ggml-common.h,
 * ggml-quants.c).  Blocks are read as little-endian byte layouts by offset,
 * never through packed structs, so any source alignment is fine.
 *
 * Bit-exactness note: the dequantizers evaluate the same float expressions in
 * the same order as ggml's reference C code (e.g. Q4_K: (d*sc)*q - dmin*m).
 * Build this directory with floating-point contraction disabled
 * (-ffp-contract=off, which is GCC's default in ISO -std=c11 mode) so the
 * compiler does not fuse them into FMAs.
 */
#ifndef DSRI_QUANT_H
#define DSRI_QUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ggml type ids (the numbers stored in GGUF tensor infos). */
enum {
    DSRI_TYPE_F32 = 0,
    DSRI_TYPE_F16 = 1,
    DSRI_TYPE_Q4_0 = 2,
    DSRI_TYPE_Q4_1 = 3,
    DSRI_TYPE_Q5_0 = 6,
    DSRI_TYPE_Q5_1 = 7,
    DSRI_TYPE_Q8_0 = 8,
    DSRI_TYPE_Q2_K = 10,
    DSRI_TYPE_Q3_K = 11,
    DSRI_TYPE_Q4_K = 12,
    DSRI_TYPE_Q5_K = 13,
    DSRI_TYPE_Q6_K = 14,
    DSRI_TYPE_IQ2_XXS = 16,
    DSRI_TYPE_IQ2_XS = 17,
    DSRI_TYPE_IQ3_XXS = 18,
    DSRI_TYPE_IQ1_S = 19,
    DSRI_TYPE_IQ4_NL = 20,
    DSRI_TYPE_IQ3_S = 21,
    DSRI_TYPE_IQ2_S = 22,
    DSRI_TYPE_IQ4_XS = 23,
    DSRI_TYPE_IQ1_M = 29,
    DSRI_TYPE_BF16 = 30
};

/* Elements per block. */
#define DSRI_QK4_0 32
#define DSRI_QK4_1 32
#define DSRI_QK5_0 32
#define DSRI_QK5_1 32
#define DSRI_QK8_0 32
#define DSRI_QK4_NL 32
#define DSRI_QK_K 256
#define DSRI_K_SCALE_SIZE 12

typedef struct dsri_type_traits {
    const char *name;    /* ggml's name: "f32", "q4_0", "q4_K", "iq4_xs", ... */
    uint32_t block_size; /* elements per block */
    uint32_t type_size;  /* bytes per block */
} dsri_type_traits;

/* NULL when the id is unknown or not supported by this layer. */
const dsri_type_traits *dsri_type_traits_get(uint32_t ggml_type);

/* Bytes taken by a row of n elements; 0 when the type is unsupported, n < 0,
 * or n is not a multiple of the block size. */
size_t dsri_row_size(uint32_t ggml_type, int64_t n);

/* Dequantize n elements (n a multiple of the block size) from src into dst.
 * src needs no particular alignment.  Returns 0 on success, -1 for an
 * unsupported type or a bad n (dst is then untouched). */
int dsri_dequantize_row(uint32_t ggml_type, const void *src, float *dst, int64_t n);

/* Quantizers, bit-compatible with what llama-quantize writes without an
 * importance matrix (ggml_quantize_chunk with no weights: quantize_row_*_ref
 * for the legacy and K types, ntry 7 for IQ4_NL / IQ4_XS).
 * Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K, IQ4_NL, IQ4_XS.  dst must hold dsri_row_size(type, n) bytes.
 * Returns 0 on success, -1 for an unsupported type or a bad n. */
int dsri_quantize_row(uint32_t ggml_type, const float *src, void *dst, int64_t n);

/*
 * Quantizers for the lattice types IQ3_S, IQ3_XXS, IQ2_S, IQ2_XS, IQ2_XXS,
 * IQ1_M, IQ1_S (quant_iq_lattice.c): ggml's quantize_iq*, block for block
 * (llama-quantize's output for the same input and importance matrix).
 * imatrix: n_per_row importance weights, one per column (an importance
 * matrix's entry for the tensor), or NULL. IQ2_XXS, IQ2_XS and IQ1_S need
 * one (DSRI_IQ_ERR_NEEDS_IMATRIX without); the others then weight by the
 * values themselves, as ggml does.
 *
 * The search needs per-type neighbour tables (up to about 1 MiB, some tens
 * of milliseconds to build): a dsri_iq_lattice holds them, is read-only once
 * made, and may be shared by threads. dsri_quantize_rows_iq_lattice builds
 * one per call (nrows consecutive rows, dsri_row_size(type, n_per_row) bytes
 * each, all with the same imatrix), dsri_quantize_row_iq_lattice one per
 * row: for a tensor of many rows, make one and reuse it, or pass many rows.
 *
 * All return 0 on success, -1 for a type that is not a lattice type, an
 * n_per_row that is not a positive multiple of 256, nrows < 0 or a NULL
 * pointer, and the codes below.
 */
#define DSRI_IQ_ERR_NEEDS_IMATRIX (-2)
#define DSRI_IQ_ERR_NO_MEMORY (-3)
typedef struct dsri_iq_lattice dsri_iq_lattice;
/* NULL when the type is not a lattice type or memory runs out. */
dsri_iq_lattice *dsri_iq_lattice_new(uint32_t ggml_type);
void dsri_iq_lattice_free(dsri_iq_lattice *lat);
int dsri_iq_lattice_quantize_row(const dsri_iq_lattice *lat, const float *src, void *dst, int64_t n_per_row,
                                 const float *imatrix);
int dsri_quantize_rows_iq_lattice(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                                  const float *imatrix);
int dsri_quantize_row_iq_lattice(uint32_t type, const float *src, void *dst, int64_t n_per_row,
                                 const float *imatrix);

/* nrows rows of n_per_row values from src into consecutive rows of dst
 * (dsri_row_size(type, n_per_row) bytes each), with an importance matrix:
 * imatrix holds n_per_row weights, one per column (the mean squared
 * activation that column of the weight meets, as llama-imatrix computes it;
 * for a 3-D expert tensor the caller passes each expert's own), or is NULL,
 * which gives dsri_quantize_row's bytes.  IQ4_NL, IQ4_XS and the lattice
 * types (through dsri_quantize_rows_iq_lattice, one table set per call, so
 * pass many rows) use it as ggml does (the error each block's scale search
 * minimises is weighted by it), and so do the legacy and K types but Q8_0
 * (ggml's quantize_row_*_impl, as llama-quantize --imatrix).  Returns 0,
 * or -1 for an unsupported type, a bad count, an imatrix weight that is
 * negative or not finite, or a lattice type that needs an imatrix (IQ2_XXS,
 * IQ2_XS, IQ1_S) without one. */
int dsri_quantize_rows(uint32_t ggml_type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                       const float *imatrix);

/* IEEE binary16 <-> binary32.  fp16->fp32 is exact (subnormals, +-inf; NaN
 * stays NaN with its payload, quieted).  fp32->fp16 rounds to nearest even;
 * overflow gives +-inf; NaN gives a quiet NaN keeping the payload's top bits
 * (like x86 F16C / ggml's hardware path). */
float dsri_fp16_to_fp32(uint16_t h);
uint16_t dsri_fp32_to_fp16(float f);

/* bfloat16 <-> binary32.  bf16->fp32 is exact (bits << 16).  fp32->bf16
 * rounds to nearest even; NaN is kept and forced quiet (ggml's rule). */
float dsri_bf16_to_fp32(uint16_t h);
uint16_t dsri_fp32_to_bf16(float f);

/* Reference dot product: a single sequential f32 accumulator,
 * sum = ((a0*b0 + a1*b1) + a2*b2) + ...  No reassociation, no double; meant
 * as the simple, predictable baseline that faster kernels are checked
 * against (they will differ in the last bits).  n <= 0 gives 0. */
float dsri_vec_dot_f32(const float *a, const float *b, int64_t n);

#ifdef __cplusplus
}
#endif

#endif /* DSRI_QUANT_H */
