/*
 * AVX-512 VNNI matmul kernels (see kernels.h). 256-bit vectors (AVX-512VL
 * encodings: 32 registers, embedded broadcasts, VNNI): on Zen 4 a 512-bit op
 * costs two 256-bit ones, so what pays is fewer instructions per product.
 *
 * - 32-element block types (Q4_0, Q5_0, Q8_0, IQ4_NL): a gemm kernel over 8
 *   weight rows at once, one row per 32-bit lane (weights transposed in
 *   registers, once per block for all activation rows of the tile), 8
 *   vpdpbusd per block and activation row; see gemm_rows below; activations
 *   in DSRI_ACT_X8_0 form (Q8_0 blocks with an exact integer correction).
 *   Weight rows are read 8 at a time, with a software prefetch of the next 8.
 *   Q4_1 / Q5_1 take the avx2 kernels.
 * - K types (Q4_K, Q5_K, Q6_K): the same 8-rows-per-lane form per sub-block
 *   (vpdpbusd, then vpmulld by the rows' sub-block scales; minimums / offsets
 *   through the activations' block sums with vpdpwssd). With at most 4
 *   activation rows the weights are not packed: each pair's integers come
 *   from maddubs + vpdpwssd and are reduced across lanes (the same exact
 *   integers, then the same float operations).
 * - IQ lattice types (IQ1_S/M, IQ2_XXS/XS/S, IQ3_XXS/S): avx2's dot kernels
 *   (lib/backend/iq_dot_x86.inc.c, compiled here a second time) with the
 *   sign bits applied through mask registers and vpdpwssd.
 * - F32 / F16 / BF16: f32 FMA on 512-bit vectors (half the instructions
 *   per product; full rate where the core has 512-bit FMA units, as Zen 5
 *   has, and the same work as two 256-bit FMAs where it has not), weights
 *   converted once per k block into an f32 panel and register-tiled against
 *   6 activation rows at a time; see "f32 / f16 / bf16 weights" below.
 *   BF16 where the CPU has AVX512_BF16: vdpbf16ps against activations
 *   rounded to bf16, as llama.cpp does; see "bf16 weights" below.
 *
 * Every (weight row, activation row) pair is computed by the same sequence
 * of operations whatever the number of rows, so a row's result does not
 * depend on the batch it came in (tests/test_backend.c checks it). No
 * intermediate can overflow: int16 pairs from maddubs are at most 2*63*127,
 * int32 lanes at most 256*63*127*128 < 2^31.
 */
#include <immintrin.h>
#include <string.h>

#include "backend/avx512/kernels.h"
#include "quant/quant.h"

#if defined(__GNUC__) || defined(__clang__)
#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 4")
/* loops over up to 8 (the f32 register tiles: 6 activation rows) */
#define FUNROLL _Pragma("GCC unroll 8")
/* q4k/q6k take their own 512-bit decode path; the generic one stays for q5k */
#define UNUSED_FN __attribute__((unused))
#else
#define INLINE static inline
#define UNROLL
#define FUNROLL
#define UNUSED_FN
#endif

/* 16 bytes of nibbles -> 32 bytes: low nibbles first, then the high ones. */
INLINE __m256i nibbles32(const uint8_t *p)
{
    __m128i t = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, 0x10 where bit j of the word is set. */
INLINE __m256i bits32_x10(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    __mmask32 m = (__mmask32)x;
    return _mm256_maskz_mov_epi8(m, _mm256_set1_epi8(0x10));
}

static const int8_t kvalues_iq4nl[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* ---- blocks of 32: 8 weight rows per vector, DSRI_ACT_X8_0 activations ----
 *
 * The weight blocks of 8 rows are decoded to unsigned bytes (value + 128) and
 * transposed so that dword lane k of vector i holds bytes 4i..4i+3 of row k
 * (pack8, built once per group of 8 rows and KC blocks, then used for every
 * activation row). One activation row and block then take 8 vpdpbusd, each
 * with 4 activation bytes broadcast, from a start of -128 * sum(y): lane k
 * ends with the exact integer dot of row k's block; then per lane
 * acc = fma(float(dot) * d_y, d_w, acc) over the blocks in order. Every
 * lane is one (weight row, activation row) pair computed the same way
 * whatever the grouping, so a result never depends on the batch. With at
 * most 4 activation rows (generation) packing does not pay: each weight row
 * takes one vpdpbusd per block and the 8 rows' lanes are summed (the same
 * exact integers), then the same float operations. */

typedef struct pack8 {
    __m256i q[8]; /* q[i] lane k: bytes 4i..4i+3 of row k's block (value + 128) */
    __m256 d;     /* lane k: row k's block scale */
} pack8;

#define KC 32       /* blocks packed at once */
/* Weight rows are read 8 at a time, interleaved: 8 short streams that the
 * hardware prefetchers do not catch (generation ran at a third of the memory
 * bandwidth). So each block read prefetches the same block of the next 8
 * rows (8 * w_stride bytes ahead, where the next call will read). */
#define PREFETCH_HINT _MM_HINT_T0
/* How far ahead that is: the next 8 rows, or as many groups of 8 further as
 * make it 8 KiB. Short rows (an expert's 512-wide down projection: 8 rows of
 * Q4_K are 2.3 KiB) are read faster than one memory latency covers, so the
 * next group alone arrived too late (16 GB/s from memory against 25-31 for
 * long rows; bench_kernels). */
INLINE size_t prefetch_ahead(size_t ws)
{
    const size_t group = 8 * ws, want = 8192;
    return group >= want || group == 0 ? group : group * ((want + group - 1) / group);
}
#define GEMM_ROWS 64 /* activation rows whose accumulators stay in a local buffer */

INLINE void transpose8x8(const __m256i r[8], __m256i out[8])
{
    __m256i t[8], u[8];
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    for (int h = 0; h < 2; h++) {
        u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h + 0], t[4 * h + 2]);
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    for (int i = 0; i < 4; i++) {
        out[i] = _mm256_permute2x128_si256(u[i], u[4 + i], 0x20);
        out[4 + i] = _mm256_permute2x128_si256(u[i], u[4 + i], 0x31);
    }
}

INLINE int ld_i32(const int8_t *p)
{
    int v;
    memcpy(&v, p, 4);
    return v;
}

/* NR activation rows (x, xs bytes apart, already at the first packed block)
 * against kc packed blocks; accumulators in and out through accp. */
INLINE void gemm_rows(const pack8 *pk, int kc, const uint8_t *x, size_t xs, __m256 *accp, const int NR)
{
    __m256 acc[4];
    UNROLL for (int g = 0; g < NR; g++)
        acc[g] = accp[g];
    for (int b = 0; b < kc; b++) {
        const pack8 *p = pk + b;
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_ax8_0 *a = (const dsri_ax8_0 *)(x + (size_t)g * xs) + b;
            __m256i s0 = _mm256_set1_epi32(a->c), s1 = _mm256_setzero_si256();
            UNROLL for (int i = 0; i < 8; i += 2) {
                s0 = _mm256_dpbusd_epi32(s0, p->q[i], _mm256_set1_epi32(ld_i32(a->q + 4 * i)));
                s1 = _mm256_dpbusd_epi32(s1, p->q[i + 1], _mm256_set1_epi32(ld_i32(a->q + 4 * i + 4)));
            }
            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), _mm256_set1_ps(a->d));
            acc[g] = _mm256_fmadd_ps(f, p->d, acc[g]);
        }
    }
    UNROLL for (int g = 0; g < NR; g++)
        accp[g] = acc[g];
}

/* Lane k: the f16 scale at rows[k] + off, gathered as the first 2 bytes of
 * a dword of the block (row_off: rows[k] - rows[0], or -1 where the offsets
 * do not fit the gather's int32 indices: then 8 loads). */
INLINE __m256 scales8(const uint8_t *const rows[8], __m256i row_off, size_t off)
{
    if (_mm256_extract_epi32(row_off, 0) == 0) {
        __m256i idx = _mm256_add_epi32(row_off, _mm256_set1_epi32((int)off));
        __m256i v = _mm256_i32gather_epi32((const int *)(const void *)rows[0], idx, 1);
        return _mm256_cvtph_ps(_mm256_cvtepi32_epi16(v));
    }
    uint16_t h[8];
    for (int k = 0; k < 8; k++)
        memcpy(&h[k], rows[k] + off, 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* lane k = the sum of the lanes of p[k] */
INLINE __m256i hsum8x8_epi32(const __m256i p[8])
{
    __m256i a0 = _mm256_hadd_epi32(p[0], p[1]), a1 = _mm256_hadd_epi32(p[2], p[3]);
    __m256i a2 = _mm256_hadd_epi32(p[4], p[5]), a3 = _mm256_hadd_epi32(p[6], p[7]);
    __m256i b0 = _mm256_hadd_epi32(a0, a1), b1 = _mm256_hadd_epi32(a2, a3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(b0, b1, 0x20), _mm256_permute2x128_si256(b0, b1, 0x31));
}

/* Lane k: rows[k] - rows[0] as int32 (scales8's gather indices), or -1 in
 * every lane where a group of 16 rows ws bytes apart might not fit. */
INLINE __m256i row_offsets(const uint8_t *const rows[8], size_t ws)
{
    if (ws > (size_t)INT32_MAX / 17)
        return _mm256_set1_epi32(-1);
    int32_t o[8];
    for (int k = 0; k < 8; k++)
        o[k] = (int32_t)(rows[k] - rows[0]);
    return _mm256_loadu_si256((const __m256i *)o);
}

/* ---- 16 weight rows per 512-bit vector (prompts) ----
 *
 * Zen 5 and Intel's server cores run a 512-bit vpdpbusd at the rate of a
 * 256-bit one (Zen 4 at half that rate: no loss there either), so with many
 * activation rows two packs of 8 weight rows go side by side in one zmm
 * vector: lanes 0-7 rows 0-7, lanes 8-15 rows 8-15, twice the products per
 * instruction. Every lane runs the 8-row kernel's operations in the same
 * order, so each value keeps its bits. */

INLINE __m512i join_i(__m256i lo, __m256i hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

INLINE __m512 join_f(__m256 lo, __m256 hi)
{
    return _mm512_castsi512_ps(join_i(_mm256_castps_si256(lo), _mm256_castps_si256(hi)));
}

INLINE void store_rows(float *y, __m512 v, int nw)
{
    float t[16];
    _mm512_storeu_ps(t, v);
    memcpy(y, t, (size_t)nw * sizeof(float));
}

/* The packed loop of 16 weight rows: T##_pack packs 8 rows (PACK8), T##_join
 * puts two side by side (PACK16), T##_rows16 runs NR activation rows over
 * kc packed blocks. ABLK: the activation block type. */
#define GEMM16(T, BYTES, ABLK, PACK8, PACK16, KCT)                                                 \
    static void gemm16_##T(int64_t nb, const uint8_t *const rows[16], size_t ws, const uint8_t *x, \
                           size_t xs, int nw, int nr, float *y, size_t ys)                          \
    {                                                                                              \
        const __m256i off_a = row_offsets(rows, ws), off_b = row_offsets(rows + 8, ws);            \
        const size_t pf = 16 * ws;                                                                 \
        PACK8 half[2];                                                                             \
        PACK16 pk[KCT];                                                                            \
        __m512 acc[GEMM_ROWS];                                                                     \
        for (int r0 = 0; r0 < nr; r0 += GEMM_ROWS) {                                               \
            const int nrr = nr - r0 < GEMM_ROWS ? nr - r0 : GEMM_ROWS;                             \
            for (int r = 0; r < nrr; r++)                                                          \
                acc[r] = _mm512_setzero_ps();                                                      \
            for (int64_t b0 = 0; b0 < nb; b0 += (KCT)) {                                           \
                const int kc = nb - b0 < (KCT) ? (int)(nb - b0) : (KCT);                           \
                for (int b = 0; b < kc; b++) {                                                     \
                    const size_t off = (size_t)(b0 + b) * (BYTES);                                 \
                    T##_pack(rows, off_a, pf, off, &half[0]);                                      \
                    T##_pack(rows + 8, off_b, pf, off, &half[1]);                                  \
                    T##_join(&half[0], &half[1], &pk[b]);                                          \
                }                                                                                  \
                const uint8_t *xb = x + (size_t)r0 * xs + (size_t)b0 * sizeof(ABLK);               \
                int r = 0;                                                                         \
                for (; r + 4 <= nrr; r += 4)                                                       \
                    T##_rows16(pk, kc, xb + (size_t)r * xs, xs, acc + r, 4);                       \
                switch (nrr - r) {                                                                 \
                case 3: T##_rows16(pk, kc, xb + (size_t)r * xs, xs, acc + r, 3); break;            \
                case 2: T##_rows16(pk, kc, xb + (size_t)r * xs, xs, acc + r, 2); break;            \
                case 1: T##_rows16(pk, kc, xb + (size_t)r * xs, xs, acc + r, 1); break;            \
                default: break;                                                                    \
                }                                                                                  \
            }                                                                                      \
            for (int r = 0; r < nrr; r++)                                                          \
                store_rows(y + (size_t)(r0 + r) * ys, acc[r], nw);                                 \
        }                                                                                          \
    }

/* The 16-row entry of a gemm kernel (called for nw > 8): few activation rows
 * take the 8-row path twice, more the packed 16-row loop. */
#define GEMM_ENTRY16(T, BLOCK)                                                                     \
    if (nw > 8) {                                                                                  \
        if (nr <= 4) {                                                                             \
            gemm_##T(n, wv, ws, 8, xv, xs, nr, y, ys);                                             \
            gemm_##T(n, (const uint8_t *)wv + 8 * ws, ws, nw - 8, xv, xs, nr, y + 8, ys);          \
        } else {                                                                                   \
            const uint8_t *rows16[16];                                                             \
            for (int k = 0; k < 16; k++) /* missing rows repeat row 0; their lanes are dropped */  \
                rows16[k] = (const uint8_t *)wv + (size_t)(k < nw ? k : 0) * ws;                   \
            gemm16_##T(n / (BLOCK), rows16, ws, xv, xs, nw, nr, y, ys);                            \
        }                                                                                          \
        return;                                                                                    \
    }

/* ---- blocks of 32, 16 rows ---- */

typedef struct pack16 {
    __m512i q[8];
    __m512 d;
} pack16;

#define KC16 16 /* blocks of 32 packed at once, 16 rows (as KC's bytes for 8) */

INLINE void join_pack8(const pack8 *a, const pack8 *b, pack16 *p)
{
    for (int i = 0; i < 8; i++)
        p->q[i] = join_i(a->q[i], b->q[i]);
    p->d = join_f(a->d, b->d);
}

INLINE void gemm_rows16(const pack16 *pk, int kc, const uint8_t *x, size_t xs, __m512 *accp, const int NR)
{
    __m512 acc[4];
    UNROLL for (int g = 0; g < NR; g++)
        acc[g] = accp[g];
    for (int b = 0; b < kc; b++) {
        const pack16 *p = pk + b;
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_ax8_0 *a = (const dsri_ax8_0 *)(x + (size_t)g * xs) + b;
            __m512i s0 = _mm512_set1_epi32(a->c), s1 = _mm512_setzero_si512();
            UNROLL for (int i = 0; i < 8; i += 2) {
                s0 = _mm512_dpbusd_epi32(s0, p->q[i], _mm512_set1_epi32(ld_i32(a->q + 4 * i)));
                s1 = _mm512_dpbusd_epi32(s1, p->q[i + 1], _mm512_set1_epi32(ld_i32(a->q + 4 * i + 4)));
            }
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_set1_ps(a->d));
            acc[g] = _mm512_fmadd_ps(f, p->d, acc[g]);
        }
    }
    UNROLL for (int g = 0; g < NR; g++)
        accp[g] = acc[g];
}

/* DECODE(p): the 32 weights of the block at p as unsigned bytes, value + 128
 * (the f16 scale is the block's first two bytes for all these types). */
#define GEMM_Q32(T, BYTES, DECODE)                                                                 \
    INLINE __m256i decode_##T(const uint8_t *p) { return DECODE; }                                 \
    INLINE void T##_pack(const uint8_t *const rows[8], __m256i row_off, size_t pf, size_t off,   \
                         pack8 *p)                                                               \
    {                                                                                            \
        __m256i v[8];                                                                            \
        UNROLL for (int k = 0; k < 8; k++) {                                                     \
            _mm_prefetch((const char *)((uintptr_t)rows[k] + off + pf), PREFETCH_HINT);           \
            v[k] = decode_##T(rows[k] + off);                                                    \
        }                                                                                        \
        transpose8x8(v, p->q);                                                                   \
        p->d = scales8(rows, row_off, off);                                                      \
    }                                                                                            \
    INLINE void T##_join(const pack8 *a, const pack8 *b, pack16 *p) { join_pack8(a, b, p); }     \
    INLINE void T##_rows16(const pack16 *pk, int kc, const uint8_t *x, size_t xs, __m512 *acc,   \
                           const int NR)                                                         \
    {                                                                                            \
        gemm_rows16(pk, kc, x, xs, acc, NR);                                                     \
    }                                                                                            \
    GEMM16(T, BYTES, dsri_ax8_0, pack8, pack16, KC16)                                            \
    INLINE void direct_##T(int64_t nb, const uint8_t *const rows[8], __m256i row_off, size_t pf,  \
                           const uint8_t *x, size_t xs, int nw, float *y, size_t ys, const int NR)  \
    {                                                                                              \
        __m256 acc[4];                                                                             \
        UNROLL for (int g = 0; g < NR; g++)                                                        \
            acc[g] = _mm256_setzero_ps();                                                          \
        for (int64_t b = 0; b < nb; b++) {                                                         \
            const size_t off = (size_t)b * (BYTES);                                                \
            __m256i v[8];                                                                          \
            UNROLL for (int k = 0; k < 8; k++) {                                                   \
                _mm_prefetch((const char *)((uintptr_t)rows[k] + off + pf), PREFETCH_HINT);                 \
                v[k] = decode_##T(rows[k] + off);                                                  \
            }                                                                                      \
            const __m256 dv = scales8(rows, row_off, off);                                      \
            UNROLL for (int g = 0; g < NR; g++) {                                                  \
                const dsri_ax8_0 *a = (const dsri_ax8_0 *)(x + (size_t)g * xs) + b;               \
                const __m256i yv = _mm256_loadu_si256((const __m256i *)a->q);                      \
                __m256i p[8];                                                                      \
                UNROLL for (int k = 0; k < 8; k++)                                                 \
                    p[k] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), v[k], yv);                  \
                __m256i sum = _mm256_add_epi32(hsum8x8_epi32(p), _mm256_set1_epi32(a->c));         \
                __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(a->d));           \
                acc[g] = _mm256_fmadd_ps(f, dv, acc[g]);                                           \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int g = 0; g < NR; g++) {                                                      \
            float t[8];                                                                            \
            _mm256_storeu_ps(t, acc[g]);                                                           \
            memcpy(y + (size_t)g * ys, t, (size_t)nw * sizeof(float));                             \
        }                                                                                          \
    }                                                                                              \
    static void gemm_##T(int64_t n, const void *wv, size_t ws, int nw, const void *xv, size_t xs, int nr, \
                         float *y, size_t ys)                                                      \
    {                                                                                              \
        GEMM_ENTRY16(T, 32)                                                                        \
        const uint8_t *rows[8], *x = xv;                                                           \
        for (int k = 0; k < 8; k++) /* missing rows repeat row 0; their lanes are dropped */       \
            rows[k] = (const uint8_t *)wv + (size_t)(k < nw ? k : 0) * ws;                         \
        const int64_t nb = n / 32;                                                                 \
        const size_t pf = prefetch_ahead(ws);                                                      \
        const __m256i row_off = row_offsets(rows, ws);                                             \
        if (nr <= 4) { /* few rows: no packing, the same arithmetic per lane */                   \
            switch (nr) {                                                                          \
            case 1: direct_##T(nb, rows, row_off, pf, x, xs, nw, y, ys, 1); break;                     \
            case 2: direct_##T(nb, rows, row_off, pf, x, xs, nw, y, ys, 2); break;                     \
            case 3: direct_##T(nb, rows, row_off, pf, x, xs, nw, y, ys, 3); break;                     \
            default: direct_##T(nb, rows, row_off, pf, x, xs, nw, y, ys, 4); break;                    \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        pack8 pk[KC];                                                                              \
        __m256 acc[GEMM_ROWS];                                                                     \
        for (int r0 = 0; r0 < nr; r0 += GEMM_ROWS) {                                               \
            const int nrr = nr - r0 < GEMM_ROWS ? nr - r0 : GEMM_ROWS;                             \
            for (int r = 0; r < nrr; r++)                                                          \
                acc[r] = _mm256_setzero_ps();                                                      \
            for (int64_t b0 = 0; b0 < nb; b0 += KC) {                                              \
                const int kc = nb - b0 < KC ? (int)(nb - b0) : KC;                                 \
                for (int b = 0; b < kc; b++)                                                       \
                    T##_pack(rows, row_off, pf, (size_t)(b0 + b) * (BYTES), &pk[b]);               \
                const uint8_t *xb = x + (size_t)r0 * xs + (size_t)b0 * sizeof(dsri_ax8_0);         \
                int r = 0;                                                                         \
                for (; r + 4 <= nrr; r += 4)                                                       \
                    gemm_rows(pk, kc, xb + (size_t)r * xs, xs, acc + r, 4);                        \
                switch (nrr - r) {                                                                 \
                case 3: gemm_rows(pk, kc, xb + (size_t)r * xs, xs, acc + r, 3); break;             \
                case 2: gemm_rows(pk, kc, xb + (size_t)r * xs, xs, acc + r, 2); break;             \
                case 1: gemm_rows(pk, kc, xb + (size_t)r * xs, xs, acc + r, 1); break;             \
                default: break;                                                                    \
                }                                                                                  \
            }                                                                                      \
            for (int r = 0; r < nrr; r++) {                                                        \
                float t[8];                                                                        \
                _mm256_storeu_ps(t, acc[r]);                                                       \
                memcpy(y + (size_t)(r0 + r) * ys, t, (size_t)nw * sizeof(float));                 \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void dot_##T(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)    \
    {                                                                                              \
        gemm_##T(n, w, 0, 1, x, xs, nr, out, 1);                                                   \
    }

GEMM_Q32(q8_0, 34, _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), _mm256_set1_epi8((char)0x80)))
GEMM_Q32(q4_0, 18, _mm256_add_epi8(nibbles32(p + 2), _mm256_set1_epi8(120)))
GEMM_Q32(q5_0, 22, _mm256_add_epi8(_mm256_or_si256(nibbles32(p + 6), bits32_x10(p + 2)), _mm256_set1_epi8(112)))
GEMM_Q32(iq4_nl, 18,
         _mm256_xor_si256(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(
                                                  _mm_loadu_si128((const __m128i *)kvalues_iq4nl)),
                                              nibbles32(p + 2)),
                          _mm256_set1_epi8((char)0x80)))

/* ---- K types, Q8_K activations ---- */

/* Q4_K / Q5_K scales and minimums (6 bits each, 12 bytes) -> bytes 0..7
 * scales, 8..15 minimums. */
INLINE __m128i k4_scales(const uint8_t *s)
{
    uint32_t u[4];
    memcpy(u, s, 12);
    const uint32_t m1 = 0x3f3f3f3f, m2 = 0x0f0f0f0f, m3 = 0x03030303;
    u[3] = ((u[2] >> 4) & m2) | (((u[1] >> 6) & m3) << 4);
    uint32_t t = u[1] & m1;
    u[1] = (u[2] & m2) | (((u[0] >> 6) & m3) << 4);
    u[2] = t;
    u[0] &= m1;
    return _mm_setr_epi32((int)u[0], (int)u[1], (int)u[2], (int)u[3]);
}

/* int16 word j of each 128-bit lane broadcast over that lane: low lane word
 * a, high lane word b (a, b < 8). */
INLINE __m256i word_shuffle(int a, int b)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 * (2 * b + 1) + 2 * b)),
                            _mm_set1_epi16((short)(0x0100 * (2 * a + 1) + 2 * a)));
}



/* ---- Q4_K, 8 weight rows per vector ----
 *
 * As for the 32-element types, lane k is weight row k. Per super-block and
 * pair the integers isum = sum_j scale_j * dot_j (sub-blocks of 32) and
 * msum = sum_j min_j * (sum of y over sub-block j) are exact whatever way
 * they are computed; the floats are then, per lane,
 * acc = fma(float(isum) * d - float(msum) * dmin, d_y, acc), in super-block
 * order. With many activation rows the weights are packed (transposed,
 * nibbles split) once per tile; with few, each row's integers are summed
 * with maddubs + vpdpwssd and reduced across lanes. */

typedef struct pack8k {
    __m256i q[8][8]; /* [j][i] lane k: bytes 4i..4i+3 of sub-block j of row k (0..15) */
    __m256i sc[8];   /* [j] lane k: scale j of row k */
    __m256i mn[8];   /* [j] lane k: min j of row k, twice as int16 (for a pair of 16-sums) */
    __m256 d, dmin;
} pack8k;

#define KC_K 8 /* super-blocks packed at once */

/* isum / msum of one weight super-block and one activation block, 8 lanes
 * each (to be summed). */
INLINE void q4k_ints(const uint8_t *w, const dsri_aq8_k *a, __m256i *isum, __m256i *msum)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m128i dup = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const __m128i sm = k4_scales(w + 4);
    /* the scales as int16 in memory: each is then one broadcast load (a
     * shuffle with a constant built per use cost more) */
    int16_t sc[16];
    _mm256_storeu_si256((__m256i *)sc, _mm256_cvtepu8_epi16(sm));
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, dup));
    __m256i i0 = _mm256_setzero_si256(), i1 = _mm256_setzero_si256();
    UNROLL for (int c = 0; c < 4; c++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(w + 16 + 32 * c));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        const int8_t *y = a->q + 64 * c;
        i0 = _mm256_dpwssd_epi32(i0, _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y)),
                                 _mm256_set1_epi16(sc[2 * c]));
        i1 = _mm256_dpwssd_epi32(i1, _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y + 32))),
                                 _mm256_set1_epi16(sc[2 * c + 1]));
    }
    *isum = _mm256_add_epi32(i0, i1);
    *msum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a->bsums), mn16);
}

INLINE __m256 q4k_step(__m256i isum, __m256i msum, __m256 dv, __m256 dmv, float dy, __m256 acc)
{
    __m256 t = _mm256_fmsub_ps(_mm256_cvtepi32_ps(isum), dv, _mm256_mul_ps(_mm256_cvtepi32_ps(msum), dmv));
    return _mm256_fmadd_ps(t, _mm256_set1_ps(dy), acc);
}

INLINE void q4k_pack(const uint8_t *const rows[8], __m256i row_off, size_t pf, size_t off, pack8k *p)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    int32_t sc[8][8], mn[8][8];
    for (int k = 0; k < 8; k++) {
        for (int l = 0; l < 144; l += 64)
            _mm_prefetch((const char *)((uintptr_t)rows[k] + off + pf + (size_t)l), PREFETCH_HINT);
        uint8_t b[16];
        _mm_storeu_si128((__m128i *)b, k4_scales(rows[k] + off + 4));
        for (int j = 0; j < 8; j++) {
            sc[j][k] = b[j];
            mn[j][k] = b[8 + j] * 0x10001;
        }
    }
    for (int j = 0; j < 8; j++) {
        p->sc[j] = _mm256_loadu_si256((const __m256i *)sc[j]);
        p->mn[j] = _mm256_loadu_si256((const __m256i *)mn[j]);
    }
    for (int c = 0; c < 4; c++) {
        __m256i lo[8], hi[8];
        for (int k = 0; k < 8; k++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(rows[k] + off + 16 + 32 * c));
            lo[k] = _mm256_and_si256(q, m4);
            hi[k] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        }
        transpose8x8(lo, p->q[2 * c]);
        transpose8x8(hi, p->q[2 * c + 1]);
    }
    p->d = scales8(rows, row_off, off);
    p->dmin = scales8(rows, row_off, off + 2);
}

INLINE void q4k_rows(const pack8k *pk, int kc, const uint8_t *x, size_t xs, __m256 *accp, const int NR)
{
    __m256 acc[4];
    UNROLL for (int g = 0; g < NR; g++)
        acc[g] = accp[g];
    for (int b = 0; b < kc; b++) {
        const pack8k *p = pk + b;
        __m256i isum[4], msum[4];
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
            isum[g] = msum[g] = _mm256_setzero_si256();
            UNROLL for (int j = 0; j < 8; j++)
                msum[g] = _mm256_dpwssd_epi32(msum[g], p->mn[j], _mm256_set1_epi32(ld_i32((const int8_t *)a->bsums + 4 * j)));
        }
        for (int j = 0; j < 8; j++) {
            __m256i s0[4], s1[4];
            UNROLL for (int g = 0; g < NR; g++)
                s0[g] = s1[g] = _mm256_setzero_si256();
            UNROLL for (int i = 0; i < 8; i += 2) {
                const __m256i w0 = p->q[j][i], w1 = p->q[j][i + 1];
                UNROLL for (int g = 0; g < NR; g++) {
                    const int8_t *yq = ((const dsri_aq8_k *)(x + (size_t)g * xs) + b)->q + 32 * j + 4 * i;
                    s0[g] = _mm256_dpbusd_epi32(s0[g], w0, _mm256_set1_epi32(ld_i32(yq)));
                    s1[g] = _mm256_dpbusd_epi32(s1[g], w1, _mm256_set1_epi32(ld_i32(yq + 4)));
                }
            }
            UNROLL for (int g = 0; g < NR; g++)
                isum[g] = _mm256_add_epi32(isum[g], _mm256_mullo_epi32(_mm256_add_epi32(s0[g], s1[g]), p->sc[j]));
        }
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
            acc[g] = q4k_step(isum[g], msum[g], p->d, p->dmin, a->d, acc[g]);
        }
    }
    UNROLL for (int g = 0; g < NR; g++)
        accp[g] = acc[g];
}

/* Q4_K / Q5_K, 16 rows: two pack8k side by side. */
typedef struct pack16k {
    __m512i q[8][8], sc[8], mn[8];
    __m512 d, dmin;
} pack16k;

#define KC16_K 4 /* super-blocks packed at once, 16 rows (21 KiB: in L1) */

INLINE void q4k_join(const pack8k *a, const pack8k *b, pack16k *p)
{
    for (int j = 0; j < 8; j++) {
        for (int i = 0; i < 8; i++)
            p->q[j][i] = join_i(a->q[j][i], b->q[j][i]);
        p->sc[j] = join_i(a->sc[j], b->sc[j]);
        p->mn[j] = join_i(a->mn[j], b->mn[j]);
    }
    p->d = join_f(a->d, b->d);
    p->dmin = join_f(a->dmin, b->dmin);
}

INLINE void q4k_rows16(const pack16k *pk, int kc, const uint8_t *x, size_t xs, __m512 *accp, const int NR)
{
    __m512 acc[4];
    UNROLL for (int g = 0; g < NR; g++)
        acc[g] = accp[g];
    for (int b = 0; b < kc; b++) {
        const pack16k *p = pk + b;
        __m512i isum[4], msum[4];
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
            isum[g] = msum[g] = _mm512_setzero_si512();
            UNROLL for (int j = 0; j < 8; j++)
                msum[g] = _mm512_dpwssd_epi32(msum[g], p->mn[j], _mm512_set1_epi32(ld_i32((const int8_t *)a->bsums + 4 * j)));
        }
        for (int j = 0; j < 8; j++) {
            __m512i s0[4], s1[4];
            UNROLL for (int g = 0; g < NR; g++)
                s0[g] = s1[g] = _mm512_setzero_si512();
            UNROLL for (int i = 0; i < 8; i += 2) {
                const __m512i w0 = p->q[j][i], w1 = p->q[j][i + 1];
                UNROLL for (int g = 0; g < NR; g++) {
                    const int8_t *yq = ((const dsri_aq8_k *)(x + (size_t)g * xs) + b)->q + 32 * j + 4 * i;
                    s0[g] = _mm512_dpbusd_epi32(s0[g], w0, _mm512_set1_epi32(ld_i32(yq)));
                    s1[g] = _mm512_dpbusd_epi32(s1[g], w1, _mm512_set1_epi32(ld_i32(yq + 4)));
                }
            }
            UNROLL for (int g = 0; g < NR; g++)
                isum[g] = _mm512_add_epi32(isum[g], _mm512_mullo_epi32(_mm512_add_epi32(s0[g], s1[g]), p->sc[j]));
        }
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
            /* q4k_step's operations on 16 lanes */
            __m512 t = _mm512_fmsub_ps(_mm512_cvtepi32_ps(isum[g]), p->d,
                                       _mm512_mul_ps(_mm512_cvtepi32_ps(msum[g]), p->dmin));
            acc[g] = _mm512_fmadd_ps(t, _mm512_set1_ps(a->d), acc[g]);
        }
    }
    UNROLL for (int g = 0; g < NR; g++)
        accp[g] = acc[g];
}

/* Q4_K with few activation rows (generation): two weight rows per 512-bit
 * vector (row 2p in the low half, 2p + 1 in the high half), each half the
 * integers q4k_ints computes for its row (maddubs, then vpdpwssd with the
 * sub-block's scale, here picked per half by vpermw from both rows' scales),
 * so one instruction does two rows' work; the same exact integers, then the
 * same float operations as every other Q4_K path. */
static const int16_t q4k_pick[9][32] = {
#define PICK(a) {a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, \
                 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), \
                 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a)}
    PICK(0), PICK(1), PICK(2), PICK(3), PICK(4), PICK(5), PICK(6), PICK(7),
#undef PICK
    /* each row's minimums, twice each (one per 16-sum of the activations) */
    {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15,
     24, 24, 25, 25, 26, 26, 27, 27, 28, 28, 29, 29, 30, 30, 31, 31},
};

INLINE __m512i bcast256(const void *p)
{
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

INLINE void q4k_direct2(int64_t nb, const uint8_t *const rows[8], __m256i row_off, size_t pf,
                        const uint8_t *x, size_t xs, int nw, float *y, size_t ys, const int NR)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m256 acc[4];
    UNROLL for (int g = 0; g < NR; g++)
        acc[g] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * 144;
        for (int k = 0; k < 8; k++)
            for (int l = 0; l < 144; l += 64)
                _mm_prefetch((const char *)((uintptr_t)rows[k] + off + pf + (size_t)l), PREFETCH_HINT);
        const __m256 dv = scales8(rows, row_off, off), dmv = scales8(rows, row_off, off + 2);
        __m256i is[4][8], ms[4][8];
        for (int pr = 0; pr < 4; pr++) {
            const uint8_t *wa = rows[2 * pr] + off, *wb = rows[2 * pr + 1] + off;
            const __m512i sc = _mm512_cvtepu8_epi16(_mm256_set_m128i(k4_scales(wb + 4), k4_scales(wa + 4)));
            const __m512i mn = _mm512_permutexvar_epi16(_mm512_loadu_si512(q4k_pick[8]), sc);
            __m512i i0[4], i1[4];
            UNROLL for (int g = 0; g < NR; g++) {
                const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
                i0[g] = i1[g] = _mm512_setzero_si512();
                __m512i m = _mm512_madd_epi16(bcast256(a->bsums), mn);
                ms[g][2 * pr] = _mm512_castsi512_si256(m);
                ms[g][2 * pr + 1] = _mm512_extracti64x4_epi64(m, 1);
            }
            UNROLL for (int c = 0; c < 4; c++) {
                const __m512i q = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(wa + 16 + 32 * c))),
                    _mm256_loadu_si256((const __m256i *)(wb + 16 + 32 * c)), 1);
                const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
                const __m512i slo = _mm512_permutexvar_epi16(_mm512_loadu_si512(q4k_pick[2 * c]), sc);
                const __m512i shi = _mm512_permutexvar_epi16(_mm512_loadu_si512(q4k_pick[2 * c + 1]), sc);
                UNROLL for (int g = 0; g < NR; g++) {
                    const int8_t *yq = ((const dsri_aq8_k *)(x + (size_t)g * xs) + b)->q + 64 * c;
                    i0[g] = _mm512_dpwssd_epi32(i0[g], _mm512_maddubs_epi16(lo, bcast256(yq)), slo);
                    i1[g] = _mm512_dpwssd_epi32(i1[g], _mm512_maddubs_epi16(hi, bcast256(yq + 32)), shi);
                }
            }
            UNROLL for (int g = 0; g < NR; g++) {
                __m512i t = _mm512_add_epi32(i0[g], i1[g]);
                is[g][2 * pr] = _mm512_castsi512_si256(t);
                is[g][2 * pr + 1] = _mm512_extracti64x4_epi64(t, 1);
            }
        }
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
            acc[g] = q4k_step(hsum8x8_epi32(is[g]), hsum8x8_epi32(ms[g]), dv, dmv, a->d, acc[g]);
        }
    }
    UNROLL for (int g = 0; g < NR; g++) {
        float t[8];
        _mm256_storeu_ps(t, acc[g]);
        memcpy(y + (size_t)g * ys, t, (size_t)nw * sizeof(float));
    }
}

/* The driver of a K-type gemm: T##_ints (one pair's integers, 8 lanes to be
 * summed), T##_step (the floats), T##_pack / T##_rows (packed path); the
 * f16 scales at block offsets DOFF and MOFF. */
#define GEMM_K(T, BYTES, PACK, KCT, DOFF, MOFF, PACK16, KC16T, DIRECT)                              \
    GEMM16(T, BYTES, dsri_aq8_k, PACK, PACK16, KC16T)                                            \
    INLINE UNUSED_FN void T##_direct(int64_t nb, const uint8_t *const rows[8], __m256i row_off,   \
                                     size_t pf,                                                    \
                           const uint8_t *x, size_t xs, int nw, float *y, size_t ys, const int NR)  \
    {                                                                                              \
        __m256 acc[4];                                                                             \
        UNROLL for (int g = 0; g < NR; g++)                                                        \
            acc[g] = _mm256_setzero_ps();                                                          \
        for (int64_t b = 0; b < nb; b++) {                                                         \
            const size_t off = (size_t)b * (BYTES);                                                \
            for (int k = 0; k < 8; k++)                                                            \
                for (int l = 0; l < (BYTES); l += 64)                                              \
                    _mm_prefetch((const char *)((uintptr_t)rows[k] + off + pf + (size_t)l), PREFETCH_HINT); \
            const __m256 dv = scales8(rows, row_off, off + (DOFF)), dmv = scales8(rows, row_off, off + (MOFF)); \
            UNROLL for (int g = 0; g < NR; g++) {                                                  \
                const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;                \
                __m256i is[8], ms[8];                                                              \
                FUNROLL for (int k = 0; k < 8; k++)                                                \
                    T##_ints(rows[k] + off, a, &is[k], &ms[k]);                                    \
                acc[g] = T##_step(hsum8x8_epi32(is), hsum8x8_epi32(ms), dv, dmv, a->d, acc[g]);    \
            }                                                                                      \
        }                                                                                          \
        UNROLL for (int g = 0; g < NR; g++) {                                                      \
            float t[8];                                                                            \
            _mm256_storeu_ps(t, acc[g]);                                                           \
            memcpy(y + (size_t)g * ys, t, (size_t)nw * sizeof(float));                             \
        }                                                                                          \
    }                                                                                              \
    static void gemm_##T(int64_t n, const void *wv, size_t ws, int nw, const void *xv, size_t xs, int nr, \
                         float *y, size_t ys)                                                      \
    {                                                                                              \
        GEMM_ENTRY16(T, 256)                                                                       \
        const uint8_t *rows[8], *x = xv;                                                           \
        for (int k = 0; k < 8; k++)                                                                \
            rows[k] = (const uint8_t *)wv + (size_t)(k < nw ? k : 0) * ws;                         \
        const int64_t nb = n / 256;                                                                \
        const size_t pf = prefetch_ahead(ws);                                                      \
        const __m256i row_off = row_offsets(rows, ws);                                             \
        if (nr <= 4) {                                                                             \
            switch (nr) {                                                                          \
            case 1: DIRECT(nb, rows, row_off, pf, x, xs, nw, y, ys, 1); break;                     \
            case 2: DIRECT(nb, rows, row_off, pf, x, xs, nw, y, ys, 2); break;                     \
            case 3: DIRECT(nb, rows, row_off, pf, x, xs, nw, y, ys, 3); break;                     \
            default: DIRECT(nb, rows, row_off, pf, x, xs, nw, y, ys, 4); break;                    \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        PACK pk[KCT];                                                                              \
        __m256 acc[GEMM_ROWS];                                                                     \
        for (int r0 = 0; r0 < nr; r0 += GEMM_ROWS) {                                               \
            const int nrr = nr - r0 < GEMM_ROWS ? nr - r0 : GEMM_ROWS;                             \
            for (int r = 0; r < nrr; r++)                                                          \
                acc[r] = _mm256_setzero_ps();                                                      \
            for (int64_t b0 = 0; b0 < nb; b0 += (KCT)) {                                           \
                const int kc = nb - b0 < (KCT) ? (int)(nb - b0) : (KCT);                           \
                for (int b = 0; b < kc; b++)                                                       \
                    T##_pack(rows, row_off, pf, (size_t)(b0 + b) * (BYTES), &pk[b]);               \
                const uint8_t *xb = x + (size_t)r0 * xs + (size_t)b0 * sizeof(dsri_aq8_k);         \
                int r = 0;                                                                         \
                for (; r + 4 <= nrr; r += 4)                                                       \
                    T##_rows(pk, kc, xb + (size_t)r * xs, xs, acc + r, 4);                         \
                switch (nrr - r) {                                                                 \
                case 3: T##_rows(pk, kc, xb + (size_t)r * xs, xs, acc + r, 3); break;              \
                case 2: T##_rows(pk, kc, xb + (size_t)r * xs, xs, acc + r, 2); break;              \
                case 1: T##_rows(pk, kc, xb + (size_t)r * xs, xs, acc + r, 1); break;              \
                default: break;                                                                    \
                }                                                                                  \
            }                                                                                      \
            for (int r = 0; r < nrr; r++) {                                                        \
                float t[8];                                                                        \
                _mm256_storeu_ps(t, acc[r]);                                                       \
                memcpy(y + (size_t)(r0 + r) * ys, t, (size_t)nw * sizeof(float));                 \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void dot8_##T(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)   \
    {                                                                                              \
        gemm_##T(n, w, 0, 1, x, xs, nr, out, 1);                                                   \
    }

GEMM_K(q4k, 144, pack8k, KC_K, 0, 2, pack16k, KC16_K, q4k_direct2)

/* ---- Q5_K: Q4_K with a fifth bit (qh, bit 2c / 2c+1 of each byte for
 * sub-blocks 2c / 2c+1); the same pack and floats. ---- */

INLINE void q5k_ints(const uint8_t *w, const dsri_aq8_k *a, __m256i *isum, __m256i *msum)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const __m128i dup = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const __m128i sm = k4_scales(w + 4);
    /* the scales as int16 in memory: each is then one broadcast load (a
     * shuffle with a constant built per use cost more) */
    int16_t sc[16];
    _mm256_storeu_si256((__m256i *)sc, _mm256_cvtepu8_epi16(sm));
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, dup));
    const __m256i hb = _mm256_loadu_si256((const __m256i *)(w + 16));
    __m256i i0 = _mm256_setzero_si256(), i1 = _mm256_setzero_si256();
    UNROLL for (int c = 0; c < 4; c++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(w + 48 + 32 * c));
        __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4),
                                     _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4));
        __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                     _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one), 4));
        const int8_t *y = a->q + 64 * c;
        i0 = _mm256_dpwssd_epi32(i0, _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y)),
                                 _mm256_set1_epi16(sc[2 * c]));
        i1 = _mm256_dpwssd_epi32(i1, _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y + 32))),
                                 _mm256_set1_epi16(sc[2 * c + 1]));
    }
    *isum = _mm256_add_epi32(i0, i1);
    *msum = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a->bsums), mn16);
}

INLINE void q5k_pack(const uint8_t *const rows[8], __m256i row_off, size_t pf, size_t off, pack8k *p)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    int32_t sc[8][8], mn[8][8];
    for (int k = 0; k < 8; k++) {
        for (int l = 0; l < 176; l += 64)
            _mm_prefetch((const char *)((uintptr_t)rows[k] + off + pf + (size_t)l), PREFETCH_HINT);
        uint8_t b[16];
        _mm_storeu_si128((__m128i *)b, k4_scales(rows[k] + off + 4));
        for (int j = 0; j < 8; j++) {
            sc[j][k] = b[j];
            mn[j][k] = b[8 + j] * 0x10001;
        }
    }
    for (int j = 0; j < 8; j++) {
        p->sc[j] = _mm256_loadu_si256((const __m256i *)sc[j]);
        p->mn[j] = _mm256_loadu_si256((const __m256i *)mn[j]);
    }
    for (int c = 0; c < 4; c++) {
        __m256i lo[8], hi[8];
        for (int k = 0; k < 8; k++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(rows[k] + off + 48 + 32 * c));
            __m256i hb = _mm256_loadu_si256((const __m256i *)(rows[k] + off + 16));
            lo[k] = _mm256_or_si256(_mm256_and_si256(q, m4),
                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4));
            hi[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one), 4));
        }
        transpose8x8(lo, p->q[2 * c]);
        transpose8x8(hi, p->q[2 * c + 1]);
    }
    p->d = scales8(rows, row_off, off);
    p->dmin = scales8(rows, row_off, off + 2);
}

#define q5k_rows q4k_rows
#define q5k_step q4k_step
#define q5k_join q4k_join
#define q5k_rows16 q4k_rows16
GEMM_K(q5k, 176, pack8k, KC_K, 0, 2, pack16k, KC16_K, q5k_direct)

/* ---- Q6_K, 8 weight rows per vector ----
 * 16 sub-blocks of 16, weights 0..63 with offset -32, signed 8-bit scales:
 * isum = sum_j scale_j * dot_j - 32 * sum_j scale_j * bsum_j (exact), then
 * per lane acc = fma(float(isum) * d_y, d, acc). */

typedef struct pack8q6 {
    __m256i q[16][4]; /* [j][i] lane k: bytes 4i..4i+3 of sub-block j (16 weights) of row k (0..63) */
    __m256i sc[16];   /* [j] lane k: scale j of row k */
    __m256i sm[8];    /* [p] lane k: -32 * scales 2p, 2p+1 of row k as int16 pair */
    __m256 d;
} pack8q6;

#define KC_Q6 8

INLINE void q6k_ints(const uint8_t *w, const dsri_aq8_k *a, __m256i *isum, __m256i *msum)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 192)));
    const __m256i scm32 = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(sc16, 5));
    __m256i i0 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)a->bsums), scm32);
    __m256i i1 = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = w + 64 * h, *qh = w + 128 + 32 * h;
        const __m256i sh = h ? _mm256_permute2x128_si256(sc16, sc16, 0x11) : _mm256_permute2x128_si256(sc16, sc16, 0x00);
        __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
        __m256i hv = _mm256_loadu_si256((const __m256i *)qh);
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hv, m2), 4));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 2), m2), 4));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 4), m2), 4));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                               _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 6), m2), 4));
        UNROLL for (int k = 0; k < 4; k++) {
            __m256i sv = _mm256_shuffle_epi8(sh, word_shuffle(2 * k, 2 * k + 1));
            __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(a->q + 128 * h + 32 * k)));
            if (k & 1)
                i1 = _mm256_dpwssd_epi32(i1, p, sv);
            else
                i0 = _mm256_dpwssd_epi32(i0, p, sv);
        }
    }
    *isum = _mm256_add_epi32(i0, i1);
    *msum = _mm256_setzero_si256();
}

INLINE __m256 q6k_step(__m256i isum, __m256i msum, __m256 dv, __m256 dmv, float dy, __m256 acc)
{
    (void)msum;
    (void)dmv;
    return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(dy)), dv, acc);
}

/* sub-block j (16 weights, j = 8h + 2k + e) of Q6_K: bytes e*16.. of chunk (h, k) */
INLINE void q6k_pack(const uint8_t *const rows[8], __m256i row_off, size_t pf, size_t off, pack8q6 *p)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    int32_t sc[16][8], sm[8][8];
    for (int k = 0; k < 8; k++) {
        for (int l = 0; l < 210; l += 64)
            _mm_prefetch((const char *)((uintptr_t)rows[k] + off + pf + (size_t)l), PREFETCH_HINT);
        const int8_t *s = (const int8_t *)(rows[k] + off + 192);
        for (int j = 0; j < 16; j++)
            sc[j][k] = s[j];
        for (int q = 0; q < 8; q++)
            sm[q][k] = (int32_t)(((uint32_t)(uint16_t)(int16_t)(-32 * s[2 * q + 1]) << 16) |
                                 (uint16_t)(int16_t)(-32 * s[2 * q]));
    }
    for (int j = 0; j < 16; j++)
        p->sc[j] = _mm256_loadu_si256((const __m256i *)sc[j]);
    for (int q = 0; q < 8; q++)
        p->sm[q] = _mm256_loadu_si256((const __m256i *)sm[q]);
    for (int h = 0; h < 2; h++) {
        __m256i q[4][8];
        for (int k = 0; k < 8; k++) {
            const uint8_t *ql = rows[k] + off + 64 * h, *qh = rows[k] + off + 128 + 32 * h;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hv = _mm256_loadu_si256((const __m256i *)qh);
            q[0][k] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hv, m2), 4));
            q[1][k] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                      _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 2), m2), 4));
            q[2][k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                      _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 4), m2), 4));
            q[3][k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                      _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hv, 6), m2), 4));
        }
        for (int c = 0; c < 4; c++) {
            __m256i t[8];
            transpose8x8(q[c], t); /* t[i]: dword i of the chunk: i < 4 sub-block 8h+2c, else 8h+2c+1 */
            for (int i = 0; i < 4; i++) {
                p->q[8 * h + 2 * c][i] = t[i];
                p->q[8 * h + 2 * c + 1][i] = t[4 + i];
            }
        }
    }
    p->d = scales8(rows, row_off, off + 208);
}

INLINE void q6k_rows(const pack8q6 *pk, int kc, const uint8_t *x, size_t xs, __m256 *accp, const int NR)
{
    __m256 acc[4];
    UNROLL for (int g = 0; g < NR; g++)
        acc[g] = accp[g];
    for (int b = 0; b < kc; b++) {
        const pack8q6 *p = pk + b;
        __m256i isum[4];
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
            isum[g] = _mm256_setzero_si256();
            UNROLL for (int q = 0; q < 8; q++)
                isum[g] = _mm256_dpwssd_epi32(isum[g], p->sm[q],
                                              _mm256_set1_epi32(ld_i32((const int8_t *)a->bsums + 4 * q)));
        }
        for (int j = 0; j < 16; j++) {
            __m256i s0[4], s1[4];
            UNROLL for (int g = 0; g < NR; g++)
                s0[g] = s1[g] = _mm256_setzero_si256();
            const __m256i w0 = p->q[j][0], w1 = p->q[j][1], w2 = p->q[j][2], w3 = p->q[j][3];
            UNROLL for (int g = 0; g < NR; g++) {
                const int8_t *yq = ((const dsri_aq8_k *)(x + (size_t)g * xs) + b)->q + 16 * j;
                s0[g] = _mm256_dpbusd_epi32(s0[g], w0, _mm256_set1_epi32(ld_i32(yq)));
                s1[g] = _mm256_dpbusd_epi32(s1[g], w1, _mm256_set1_epi32(ld_i32(yq + 4)));
                s0[g] = _mm256_dpbusd_epi32(s0[g], w2, _mm256_set1_epi32(ld_i32(yq + 8)));
                s1[g] = _mm256_dpbusd_epi32(s1[g], w3, _mm256_set1_epi32(ld_i32(yq + 12)));
            }
            UNROLL for (int g = 0; g < NR; g++)
                isum[g] = _mm256_add_epi32(isum[g], _mm256_mullo_epi32(_mm256_add_epi32(s0[g], s1[g]), p->sc[j]));
        }
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
            acc[g] = q6k_step(isum[g], isum[g], p->d, p->d, a->d, acc[g]);
        }
    }
    UNROLL for (int g = 0; g < NR; g++)
        accp[g] = acc[g];
}

/* Q6_K with few activation rows: two weight rows per 512-bit vector, as
 * q4k_direct2 (each half q6k_ints' integers for its row; the scales of
 * sub-blocks 2i and 2i + 1 picked per half by vpermw). */
static const int16_t q6k_pick[8][32] = {
#define PICK(a) {a, a, a, a, a, a, a, a, (a) + 1, (a) + 1, (a) + 1, (a) + 1, (a) + 1, (a) + 1, (a) + 1, (a) + 1, \
                 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), 16 + (a), \
                 17 + (a), 17 + (a), 17 + (a), 17 + (a), 17 + (a), 17 + (a), 17 + (a), 17 + (a)}
    PICK(0), PICK(2), PICK(4), PICK(6), PICK(8), PICK(10), PICK(12), PICK(14),
#undef PICK
};

INLINE __m512i load_pair(const uint8_t *a, const uint8_t *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

INLINE void q6k_direct2(int64_t nb, const uint8_t *const rows[8], __m256i row_off, size_t pf,
                        const uint8_t *x, size_t xs, int nw, float *y, size_t ys, const int NR)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    __m256 acc[4];
    UNROLL for (int g = 0; g < NR; g++)
        acc[g] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const size_t off = (size_t)b * 210;
        for (int k = 0; k < 8; k++)
            for (int l = 0; l < 210; l += 64)
                _mm_prefetch((const char *)((uintptr_t)rows[k] + off + pf + (size_t)l), PREFETCH_HINT);
        const __m256 dv = scales8(rows, row_off, off + 208);
        __m256i is[4][8];
        for (int pr = 0; pr < 4; pr++) {
            const uint8_t *wa = rows[2 * pr] + off, *wb = rows[2 * pr + 1] + off;
            const __m512i sc = _mm512_cvtepi8_epi16(_mm256_set_m128i(_mm_loadu_si128((const __m128i *)(wb + 192)),
                                                                     _mm_loadu_si128((const __m128i *)(wa + 192))));
            const __m512i scm32 = _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(sc, 5));
            __m512i i0[4], i1[4];
            UNROLL for (int g = 0; g < NR; g++) {
                const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
                i0[g] = _mm512_madd_epi16(bcast256(a->bsums), scm32);
                i1[g] = _mm512_setzero_si512();
            }
            for (int h = 0; h < 2; h++) {
                const __m512i l0 = load_pair(wa + 64 * h, wb + 64 * h);
                const __m512i l1 = load_pair(wa + 64 * h + 32, wb + 64 * h + 32);
                const __m512i hv = load_pair(wa + 128 + 32 * h, wb + 128 + 32 * h);
                __m512i q[4];
                q[0] = _mm512_or_si512(_mm512_and_si512(l0, m4), _mm512_slli_epi16(_mm512_and_si512(hv, m2), 4));
                q[1] = _mm512_or_si512(_mm512_and_si512(l1, m4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hv, 2), m2), 4));
                q[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l0, 4), m4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hv, 4), m2), 4));
                q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l1, 4), m4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hv, 6), m2), 4));
                UNROLL for (int k = 0; k < 4; k++) {
                    const __m512i sv = _mm512_permutexvar_epi16(_mm512_loadu_si512(q6k_pick[4 * h + k]), sc);
                    UNROLL for (int g = 0; g < NR; g++) {
                        const int8_t *yq = ((const dsri_aq8_k *)(x + (size_t)g * xs) + b)->q + 128 * h + 32 * k;
                        __m512i pq = _mm512_maddubs_epi16(q[k], bcast256(yq));
                        if (k & 1)
                            i1[g] = _mm512_dpwssd_epi32(i1[g], pq, sv);
                        else
                            i0[g] = _mm512_dpwssd_epi32(i0[g], pq, sv);
                    }
                }
            }
            UNROLL for (int g = 0; g < NR; g++) {
                __m512i t = _mm512_add_epi32(i0[g], i1[g]);
                is[g][2 * pr] = _mm512_castsi512_si256(t);
                is[g][2 * pr + 1] = _mm512_extracti64x4_epi64(t, 1);
            }
        }
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
            const __m256i isum = hsum8x8_epi32(is[g]);
            acc[g] = q6k_step(isum, isum, dv, dv, a->d, acc[g]);
        }
    }
    UNROLL for (int g = 0; g < NR; g++) {
        float t[8];
        _mm256_storeu_ps(t, acc[g]);
        memcpy(y + (size_t)g * ys, t, (size_t)nw * sizeof(float));
    }
}

/* Q6_K, 16 rows: two pack8q6 side by side. */
typedef struct pack16q6 {
    __m512i q[16][4], sc[16], sm[8];
    __m512 d;
} pack16q6;

#define KC16_Q6 4

INLINE void q6k_join(const pack8q6 *a, const pack8q6 *b, pack16q6 *p)
{
    for (int j = 0; j < 16; j++) {
        for (int i = 0; i < 4; i++)
            p->q[j][i] = join_i(a->q[j][i], b->q[j][i]);
        p->sc[j] = join_i(a->sc[j], b->sc[j]);
    }
    for (int q = 0; q < 8; q++)
        p->sm[q] = join_i(a->sm[q], b->sm[q]);
    p->d = join_f(a->d, b->d);
}

INLINE void q6k_rows16(const pack16q6 *pk, int kc, const uint8_t *x, size_t xs, __m512 *accp, const int NR)
{
    __m512 acc[4];
    UNROLL for (int g = 0; g < NR; g++)
        acc[g] = accp[g];
    for (int b = 0; b < kc; b++) {
        const pack16q6 *p = pk + b;
        __m512i isum[4];
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
            isum[g] = _mm512_setzero_si512();
            UNROLL for (int q = 0; q < 8; q++)
                isum[g] = _mm512_dpwssd_epi32(isum[g], p->sm[q],
                                              _mm512_set1_epi32(ld_i32((const int8_t *)a->bsums + 4 * q)));
        }
        for (int j = 0; j < 16; j++) {
            __m512i s0[4], s1[4];
            UNROLL for (int g = 0; g < NR; g++)
                s0[g] = s1[g] = _mm512_setzero_si512();
            const __m512i w0 = p->q[j][0], w1 = p->q[j][1], w2 = p->q[j][2], w3 = p->q[j][3];
            UNROLL for (int g = 0; g < NR; g++) {
                const int8_t *yq = ((const dsri_aq8_k *)(x + (size_t)g * xs) + b)->q + 16 * j;
                s0[g] = _mm512_dpbusd_epi32(s0[g], w0, _mm512_set1_epi32(ld_i32(yq)));
                s1[g] = _mm512_dpbusd_epi32(s1[g], w1, _mm512_set1_epi32(ld_i32(yq + 4)));
                s0[g] = _mm512_dpbusd_epi32(s0[g], w2, _mm512_set1_epi32(ld_i32(yq + 8)));
                s1[g] = _mm512_dpbusd_epi32(s1[g], w3, _mm512_set1_epi32(ld_i32(yq + 12)));
            }
            UNROLL for (int g = 0; g < NR; g++)
                isum[g] = _mm512_add_epi32(isum[g], _mm512_mullo_epi32(_mm512_add_epi32(s0[g], s1[g]), p->sc[j]));
        }
        UNROLL for (int g = 0; g < NR; g++) {
            const dsri_aq8_k *a = (const dsri_aq8_k *)(x + (size_t)g * xs) + b;
            /* q6k_step's operations on 16 lanes */
            acc[g] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum[g]), _mm512_set1_ps(a->d)), p->d, acc[g]);
        }
    }
    UNROLL for (int g = 0; g < NR; g++)
        accp[g] = acc[g];
}

GEMM_K(q6k, 210, pack8q6, KC_Q6, 208, 208, pack16q6, KC16_Q6, q6k_direct2)

/* ---- f32 / f16 / bf16 weights, f32 activations ----
 *
 * Every (weight row, activation row) pair is summed one way, whatever the
 * batch and the grouping: one 16-lane f32 accumulator, acc = fma(w, x, acc)
 * over k = 0, 16, 32, ... in order (weights converted to f32 exactly; the
 * last step masked, its missing lanes zero in both operands), then the 16
 * lanes added by the fixed tree of reduce8. So a batch row gets the bits it
 * gets alone (tests/test_backend.c).
 *
 * One activation row (generation, memory-bound): the 8 weight rows are read
 * straight from the matrix and converted on the fly, 8 independent
 * accumulators, one vector of x per 8 FMAs, and a software prefetch of the
 * next 8 rows (8 interleaved short streams, as for the Q8_0 kernels).
 *
 * More rows (prompts, compute-bound): the weights are converted once per
 * block of FKC elements into a panel of 8 f32 rows (16 KiB, L1), and a
 * register tile of FMR weight rows x FNR activation rows (24 accumulators;
 * 4 + 6 vector loads per 24 FMAs) runs over the panel for every activation
 * row of the batch, so a weight is converted once per FROWS activation rows
 * instead of once per row. The accumulators wait in a buffer between k
 * blocks (a store and a load keep the bits). The weights of the next block
 * and the activations a few vectors ahead are prefetched: without it the
 * conversion waited on memory for a quarter of the time. */

#define FKC 512  /* k block (elements of each weight row in the panel) */
#define FMR 4    /* weight rows of the register tile */
#define FNR 6    /* activation rows of the register tile */
#define FROWS 64 /* activation rows whose accumulators wait in the buffer
                  * (32 KiB of stack, with the 16 KiB panel; 32 rows ran the
                  * 8960-wide rows 12% slower) */
#define FPF_X 4  /* activation prefetch distance in the tile, vectors */

/* 16 weights at p as f32, all or the first lanes of mask m (the others 0). */
INLINE __m512 ldw_f32(const uint8_t *p) { return _mm512_loadu_ps(p); }
INLINE __m512 ldw_f32_m(const uint8_t *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
INLINE __m512 ldw_f16(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
INLINE __m512 ldw_f16_m(const uint8_t *p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
/* bf16 is the top half of an f32: widen and shift (exact) */
INLINE __m512 ldw_bf16(const uint8_t *p)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
INLINE __m512 ldw_bf16_m(const uint8_t *p, __mmask16 m)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

/* Lane k = the sum of the 16 lanes of c[k], always by the same tree: the
 * 256-bit halves added, then the 128-bit halves, then lanes j and j + 2,
 * then lanes 0 and 1; 8 rows at once, every lane through the same
 * additions. */
INLINE __m256 reduce8(const __m512 c[8])
{
    __m512 t[4], u[2];
    for (int i = 0; i < 4; i++) /* 256-bit half h: row 2i + h, its two 256-bit halves added */
        t[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xEE));
    for (int i = 0; i < 2; i++) /* 128-bit lane q: row 4i + q, its two 128-bit halves added */
        u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(t[2 * i], t[2 * i + 1], 0xDD));
    /* 128-bit lane q: row q lanes 0+2, 1+3, row q + 4 lanes 0+2, 1+3 */
    __m512 v = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u[0]), _mm512_castps_pd(u[1]))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u[0]), _mm512_castps_pd(u[1]))));
    /* 128-bit lane q: row q, row q + 4 (then don't-cares) */
    v = _mm512_add_ps(_mm512_shuffle_ps(v, v, _MM_SHUFFLE(2, 2, 2, 0)), _mm512_shuffle_ps(v, v, _MM_SHUFFLE(3, 3, 3, 1)));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castps512_ps256(_mm512_permutexvar_ps(order, v));
}

/* the first nw (1..8) lanes of v to y */
INLINE void store_nw(float *y, __m256 v, int nw)
{
    _mm256_mask_storeu_ps(y, (__mmask8)((1u << nw) - 1), v);
}

/* The register tile: FMR panel rows (pw, FKC floats apart) times NR
 * activation rows (x, xs bytes apart, at the block's first element), steps
 * vectors of 16; a non-zero tail adds one step with x masked by it (the
 * panel is zero there). Accumulators in and out through acc (activation row
 * j, weight row i at acc[8 * j + i]). */
INLINE void ftile(const float *pw, int steps, __mmask16 tail, const uint8_t *x, size_t xs, __m512 *acc, const int NR)
{
    __m512 c[FMR][FNR];
    FUNROLL for (int j = 0; j < NR; j++)
        FUNROLL for (int i = 0; i < FMR; i++)
            c[i][j] = acc[8 * j + i];
    for (int s = 0; s < steps; s++) {
        __m512 w[FMR];
        FUNROLL for (int i = 0; i < FMR; i++)
            w[i] = _mm512_load_ps(pw + i * FKC + 16 * s);
        FUNROLL for (int j = 0; j < NR; j++) {
            const float *xj = (const float *)(x + (size_t)j * xs) + 16 * s;
            _mm_prefetch((const char *)(xj + 16 * FPF_X), _MM_HINT_T0);
            const __m512 xv = _mm512_loadu_ps(xj);
            FUNROLL for (int i = 0; i < FMR; i++)
                c[i][j] = _mm512_fmadd_ps(w[i], xv, c[i][j]);
        }
    }
    if (tail) {
        __m512 w[FMR];
        FUNROLL for (int i = 0; i < FMR; i++)
            w[i] = _mm512_load_ps(pw + i * FKC + 16 * steps);
        FUNROLL for (int j = 0; j < NR; j++) {
            const __m512 xv = _mm512_maskz_loadu_ps(tail, (const float *)(x + (size_t)j * xs) + 16 * steps);
            FUNROLL for (int i = 0; i < FMR; i++)
                c[i][j] = _mm512_fmadd_ps(w[i], xv, c[i][j]);
        }
    }
    FUNROLL for (int j = 0; j < NR; j++)
        FUNROLL for (int i = 0; i < FMR; i++)
            acc[8 * j + i] = c[i][j];
}

/* NR activation rows against the nw (1..8) rows of the panel, FMR at a
 * time (the second time the NR rows of x come from L1). */
INLINE void ftiles(const float *panel, int steps, __mmask16 tail, const uint8_t *x, size_t xs, __m512 *acc, int nw,
                   const int NR)
{
    ftile(panel, steps, tail, x, xs, acc, NR);
    if (nw > FMR)
        ftile(panel + FMR * FKC, steps, tail, x, xs, acc + FMR, NR);
}

/* ESZ: bytes per weight; LD / LDM: 16 weights as f32 (all / masked). */
#define GEMM_FLOAT(T, ESZ, LD, LDM)                                                                \
    static void gemm_##T(int64_t n, const void *wv, size_t ws, int nw, const void *xv, size_t xs, int nr, \
                         float *y, size_t ys)                                                      \
    {                                                                                              \
        const uint8_t *rows[8], *x = xv;                                                           \
        for (int k = 0; k < 8; k++) /* missing rows repeat row 0; their lanes are dropped */       \
            rows[k] = (const uint8_t *)wv + (size_t)(k < nw ? k : 0) * ws;                         \
        const int64_t nfull = n / 16;                                                              \
        const __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1);                                  \
        if (nr == 1) {                                                                             \
            __m512 c[8];                                                                           \
            for (int k = 0; k < 8; k++)                                                            \
                c[k] = _mm512_setzero_ps();                                                        \
            const float *xr = (const float *)x;                                                    \
            for (int64_t s = 0; s < nfull; s++) {                                                  \
                const __m512 xv = _mm512_loadu_ps(xr + 16 * s);                                    \
                FUNROLL for (int k = 0; k < 8; k++) {                                              \
                    const uint8_t *p = rows[k] + (size_t)s * 16 * (ESZ);                           \
                    _mm_prefetch((const char *)((uintptr_t)p + 8 * ws), _MM_HINT_T0);              \
                    c[k] = _mm512_fmadd_ps(LD(p), xv, c[k]);                                       \
                }                                                                                  \
            }                                                                                      \
            if (tail) {                                                                            \
                const __m512 xv = _mm512_maskz_loadu_ps(tail, xr + 16 * nfull);                    \
                FUNROLL for (int k = 0; k < 8; k++)                                                \
                    c[k] = _mm512_fmadd_ps(LDM(rows[k] + (size_t)nfull * 16 * (ESZ), tail), xv, c[k]); \
            }                                                                                      \
            store_nw(y, reduce8(c), nw);                                                           \
            return;                                                                                \
        }                                                                                          \
        _Alignas(64) float panel[8 * FKC];                                                         \
        __m512 acc[8 * FROWS];                                                                     \
        const int np = nw > FMR ? 8 : FMR; /* panel rows in use */                                \
        for (int r0 = 0; r0 < nr; r0 += FROWS) {                                                   \
            const int nrr = nr - r0 < FROWS ? nr - r0 : FROWS;                                     \
            for (int i = 0; i < 8 * nrr; i++)                                                      \
                acc[i] = _mm512_setzero_ps();                                                      \
            for (int64_t k0 = 0; k0 < n; k0 += FKC) {                                              \
                const int kc = n - k0 < FKC ? (int)(n - k0) : FKC;                                 \
                const int steps = kc / 16;                                                         \
                const __mmask16 bt = kc % 16 ? tail : 0;                                           \
                /* the block's weights as f32 (zero past n); the next block, or the                \
                 * next 8 rows' first, on its way meanwhile */                                     \
                const size_t next = k0 + FKC < n ? (size_t)FKC * (ESZ) : 8 * ws - (size_t)k0 * (ESZ); \
                for (int k = 0; k < np; k++) {                                                     \
                    const uint8_t *p = rows[k] + (size_t)k0 * (ESZ);                               \
                    for (int l = 0; l < FKC * (ESZ); l += 64)                                      \
                        _mm_prefetch((const char *)((uintptr_t)p + next + (size_t)l), _MM_HINT_T0); \
                    for (int s = 0; s < steps; s++)                                                \
                        _mm512_store_ps(panel + k * FKC + 16 * s, LD(p + (size_t)s * 16 * (ESZ)));   \
                    if (bt)                                                                        \
                        _mm512_store_ps(panel + k * FKC + 16 * steps, LDM(p + (size_t)steps * 16 * (ESZ), bt)); \
                }                                                                                  \
                const uint8_t *xb = x + (size_t)r0 * xs + (size_t)k0 * sizeof(float);              \
                int r = 0;                                                                         \
                for (; r + FNR <= nrr; r += FNR)                                                   \
                    ftiles(panel, steps, bt, xb + (size_t)r * xs, xs, acc + 8 * r, nw, FNR);       \
                const uint8_t *xr = xb + (size_t)r * xs;                                           \
                switch (nrr - r) {                                                                 \
                case 5: ftiles(panel, steps, bt, xr, xs, acc + 8 * r, nw, 5); break;               \
                case 4: ftiles(panel, steps, bt, xr, xs, acc + 8 * r, nw, 4); break;               \
                case 3: ftiles(panel, steps, bt, xr, xs, acc + 8 * r, nw, 3); break;               \
                case 2: ftiles(panel, steps, bt, xr, xs, acc + 8 * r, nw, 2); break;               \
                case 1: ftiles(panel, steps, bt, xr, xs, acc + 8 * r, nw, 1); break;               \
                default: break;                                                                    \
                }                                                                                  \
            }                                                                                      \
            for (int r = 0; r < nrr; r++)                                                          \
                store_nw(y + (size_t)(r0 + r) * ys, reduce8(acc + 8 * r), nw);                     \
        }                                                                                          \
    }                                                                                              \
    static void dot_##T(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)    \
    {                                                                                              \
        gemm_##T(n, w, 0, 1, x, xs, nr, out, 1);                                                   \
    }

GEMM_FLOAT(f32, 4, ldw_f32, ldw_f32_m)
GEMM_FLOAT(f16, 2, ldw_f16, ldw_f16_m)
GEMM_FLOAT(bf16, 2, ldw_bf16, ldw_bf16_m)

/* ---- bf16 weights, activations rounded to bf16 (vdpbf16ps) ----
 *
 * Where the CPU has AVX512_BF16 (Zen 4/5, Sapphire Rapids; checked at run
 * time, the f32 kernel above otherwise), BF16 weights take vdpbf16ps, as
 * llama.cpp does: the activations are rounded to bf16 once per matmul
 * (DSRI_ACT_BF16, to nearest even like llama.cpp, by the driver's
 * quantize step) and each instruction adds two exact products per lane: 32
 * multiply-adds per instruction against 16 for the f32 FMA, and no weight
 * conversion. The rounding costs accuracy: up to 2^-9 of |w||x| per dot
 * (tests/test_backend.c, bf16_tolerance). Rounding inside the kernel
 * instead, once per call (8 weight rows), cost as much as vdpbf16ps saved
 * (one vcvtne2ps2bf16 per 8 vdpbf16ps; 75 against 82 GMAC/s for the f32
 * kernel).
 *
 * The sum of every (weight row, activation row) pair is again one way,
 * whatever the batch: one 16-lane accumulator, acc = dpbf16(acc, x, w) over
 * k = 0, 32, 64, ... in order (past n the activations are zero and so are
 * the weights: masked loads or the panel's padding), then reduce8. One
 * activation row: the 8 weight rows read straight from the matrix (8
 * accumulators, the next 8 rows prefetched, as above). More rows: per block
 * of FKC elements the 8 weight rows are copied to a bf16 panel (zero past
 * n, 8 KiB) and the FMR x FNR register tile runs over it and the
 * activations (4 + 6 loads per 24 vdpbf16ps). */

#define BF16_FN __attribute__((target("avx512bf16")))
#define BPF_X 4 /* activation prefetch distance in the bf16 tile, vectors */

/* 32 activations at x rounded to bf16 (to nearest even, as llama.cpp
 * does); the masked form zero past mask m */
INLINE BF16_FN __m512i round_bf16(const float *x)
{
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + 16), _mm512_loadu_ps(x));
}
INLINE BF16_FN __m512i round_bf16_m(const float *x, __mmask32 m)
{
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps((__mmask16)(m >> 16), x + 16),
                                        _mm512_maskz_loadu_ps((__mmask16)m, x));
}

/* One activation row in DSRI_ACT_BF16 form: bf16, zero up to a multiple
 * of 32 elements (the kernels read whole vectors of it). */
static BF16_FN void round_row_bf16(const float *x, uint16_t *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm512_storeu_si512(dst + i, round_bf16(x + i));
    if (i < n)
        _mm512_storeu_si512(dst + i, round_bf16_m(x + i, (__mmask32)((1ull << (n - i)) - 1)));
}

INLINE BF16_FN __m512bh ldbh(const void *p) { return (__m512bh)_mm512_loadu_si512(p); }
INLINE BF16_FN __m512bh ldbh_m(const void *p, __mmask32 m) { return (__m512bh)_mm512_maskz_loadu_epi16(m, p); }

/* The bf16 register tile: FMR panel rows (pw, FKC apart) times NR
 * activation rows (x, xs bytes apart, at the block's first element), steps
 * of 32 (the panel and the activations zero past n: no tail); accumulators
 * as in ftile. */
INLINE BF16_FN void btile(const uint16_t *pw, int steps, const uint8_t *x, size_t xs, __m512 *acc, const int NR)
{
    __m512 c[FMR][FNR];
    FUNROLL for (int j = 0; j < NR; j++)
        FUNROLL for (int i = 0; i < FMR; i++)
            c[i][j] = acc[8 * j + i];
    for (int s = 0; s < steps; s++) {
        __m512bh w[FMR];
        FUNROLL for (int i = 0; i < FMR; i++)
            w[i] = (__m512bh)_mm512_load_si512(pw + i * FKC + 32 * s);
        FUNROLL for (int j = 0; j < NR; j++) {
            const uint8_t *xj = x + (size_t)j * xs + 64 * (size_t)s;
            _mm_prefetch((const char *)(xj + 64 * BPF_X), _MM_HINT_T0);
            const __m512bh xv = ldbh(xj);
            FUNROLL for (int i = 0; i < FMR; i++)
                c[i][j] = _mm512_dpbf16_ps(c[i][j], xv, w[i]);
        }
    }
    FUNROLL for (int j = 0; j < NR; j++)
        FUNROLL for (int i = 0; i < FMR; i++)
            acc[8 * j + i] = c[i][j];
}

INLINE BF16_FN void btiles(const uint16_t *panel, int steps, const uint8_t *x, size_t xs, __m512 *acc, int nw,
                           const int NR)
{
    btile(panel, steps, x, xs, acc, NR);
    if (nw > FMR)
        btile(panel + FMR * FKC, steps, x, xs, acc + FMR, NR);
}

static BF16_FN void gemm_bf16dp(int64_t n, const void *wv, size_t ws, int nw, const void *xv, size_t xs, int nr,
                                float *y, size_t ys)
{
    const uint8_t *rows[8], *x = xv;
    for (int k = 0; k < 8; k++) /* missing rows repeat row 0; their lanes are dropped */
        rows[k] = (const uint8_t *)wv + (size_t)(k < nw ? k : 0) * ws;
    const int64_t nfull = n / 32;
    const __mmask32 tail = (__mmask32)((1ull << (n % 32)) - 1);
    if (nr == 1) {
        __m512 c[8];
        for (int k = 0; k < 8; k++)
            c[k] = _mm512_setzero_ps();
        for (int64_t s = 0; s < nfull; s++) {
            const __m512bh xb = ldbh(x + 64 * s);
            FUNROLL for (int k = 0; k < 8; k++) {
                const uint8_t *p = rows[k] + (size_t)s * 64;
                _mm_prefetch((const char *)((uintptr_t)p + 8 * ws), _MM_HINT_T0);
                c[k] = _mm512_dpbf16_ps(c[k], xb, ldbh(p));
            }
        }
        if (tail) {
            const __m512bh xb = ldbh(x + 64 * nfull); /* zero past n */
            FUNROLL for (int k = 0; k < 8; k++)
                c[k] = _mm512_dpbf16_ps(c[k], xb, ldbh_m(rows[k] + (size_t)nfull * 64, tail));
        }
        store_nw(y, reduce8(c), nw);
        return;
    }
    _Alignas(64) uint16_t panel[8 * FKC];
    __m512 acc[8 * FROWS];
    const int np = nw > FMR ? 8 : FMR; /* panel rows in use */
    for (int r0 = 0; r0 < nr; r0 += FROWS) {
        const int nrr = nr - r0 < FROWS ? nr - r0 : FROWS;
        for (int i = 0; i < 8 * nrr; i++)
            acc[i] = _mm512_setzero_ps();
        for (int64_t k0 = 0; k0 < n; k0 += FKC) {
            const int kc = n - k0 < FKC ? (int)(n - k0) : FKC;
            const int full = kc / 32, steps = (kc + 31) / 32;
            const __mmask32 bt = kc % 32 ? tail : 0;
            /* the block's weights (zero past n); the next block, or the next
             * 8 rows' first, on its way meanwhile */
            const size_t next = k0 + FKC < n ? (size_t)FKC * 2 : 8 * ws - (size_t)k0 * 2;
            for (int k = 0; k < np; k++) {
                const uint8_t *p = rows[k] + (size_t)k0 * 2;
                for (int l = 0; l < FKC * 2; l += 64)
                    _mm_prefetch((const char *)((uintptr_t)p + next + (size_t)l), _MM_HINT_T0);
                for (int s = 0; s < full; s++)
                    _mm512_store_si512(panel + k * FKC + 32 * s, _mm512_loadu_si512(p + (size_t)s * 64));
                if (bt)
                    _mm512_store_si512(panel + k * FKC + 32 * full, _mm512_maskz_loadu_epi16(bt, p + (size_t)full * 64));
            }
            const uint8_t *xb = x + (size_t)r0 * xs + (size_t)k0 * 2;
            int r = 0;
            for (; r + FNR <= nrr; r += FNR)
                btiles(panel, steps, xb + (size_t)r * xs, xs, acc + 8 * r, nw, FNR);
            const uint8_t *xr = xb + (size_t)r * xs;
            switch (nrr - r) {
            case 5: btiles(panel, steps, xr, xs, acc + 8 * r, nw, 5); break;
            case 4: btiles(panel, steps, xr, xs, acc + 8 * r, nw, 4); break;
            case 3: btiles(panel, steps, xr, xs, acc + 8 * r, nw, 3); break;
            case 2: btiles(panel, steps, xr, xs, acc + 8 * r, nw, 2); break;
            case 1: btiles(panel, steps, xr, xs, acc + 8 * r, nw, 1); break;
            default: break;
            }
        }
        for (int r = 0; r < nrr; r++)
            store_nw(y + (size_t)(r0 + r) * ys, reduce8(acc + 8 * r), nw);
    }
}

static BF16_FN void dot_bf16dp(int64_t n, const void *w, const void *x, size_t xs, int nr, float *out)
{
    gemm_bf16dp(n, w, 0, 1, x, xs, nr, out, 1);
}

/* ---- the IQ lattice types: avx2's kernels, here with mask-register signs
 * and vpdpwssd (the same integers, the same bits) ---- */

#include "backend/iq_dot_x86.inc.c"

/* ---- kernel table ---- */

static const dsri_simd_kernel k_f32 = {DSRI_ACT_F32, dot_f32, NULL, gemm_f32, 0};
static const dsri_simd_kernel k_f16 = {DSRI_ACT_F32, dot_f16, NULL, gemm_f16, 0};
static const dsri_simd_kernel k_bf16 = {DSRI_ACT_F32, dot_bf16, NULL, gemm_bf16, 0};
static const dsri_simd_kernel k_bf16dp = {DSRI_ACT_BF16, dot_bf16dp, NULL, gemm_bf16dp, 0};
static const dsri_simd_kernel k_q4_0 = {DSRI_ACT_X8_0, dot_q4_0, NULL, gemm_q4_0, 16};
static const dsri_simd_kernel k_q5_0 = {DSRI_ACT_X8_0, dot_q5_0, NULL, gemm_q5_0, 16};
static const dsri_simd_kernel k_q8_0 = {DSRI_ACT_X8_0, dot_q8_0, NULL, gemm_q8_0, 16};
static const dsri_simd_kernel k_iq4_nl = {DSRI_ACT_X8_0, dot_iq4_nl, NULL, gemm_iq4_nl, 16};
static const dsri_simd_kernel k_q4_k = {DSRI_ACT_Q8_K, dot8_q4k, NULL, gemm_q4k, 16};
static const dsri_simd_kernel k_q5_k = {DSRI_ACT_Q8_K, dot8_q5k, NULL, gemm_q5k, 16};
static const dsri_simd_kernel k_q6_k = {DSRI_ACT_Q8_K, dot8_q6k, NULL, gemm_q6k, 16};

/* AVX512_BF16 (CPUID leaf 7 sub-leaf 1, EAX bit 5): not every AVX-512 VNNI
 * CPU has it (Ice Lake, Cascade Lake do not); the OS saving the zmm state
 * was checked with the rest (cpu.c). */
static int bf16dp_available(void)
{
    return __builtin_cpu_supports("avx512bf16");
}

const dsri_simd_kernel *dsri_avx512_kernel_for(uint32_t type)
{
    switch (type) {
    case DSRI_TYPE_F32: return &k_f32;
    case DSRI_TYPE_F16: return &k_f16;
    case DSRI_TYPE_BF16: return bf16dp_available() ? &k_bf16dp : &k_bf16;
    case DSRI_TYPE_Q4_0: return &k_q4_0;
    case DSRI_TYPE_Q5_0: return &k_q5_0;
    case DSRI_TYPE_Q8_0: return &k_q8_0;
    case DSRI_TYPE_IQ4_NL: return &k_iq4_nl;
    case DSRI_TYPE_Q4_K: return &k_q4_k;
    case DSRI_TYPE_Q5_K: return &k_q5_k;
    case DSRI_TYPE_Q6_K: return &k_q6_k;
    case DSRI_TYPE_IQ2_XXS:
    case DSRI_TYPE_IQ2_XS:
    case DSRI_TYPE_IQ2_S:
    case DSRI_TYPE_IQ3_XXS:
    case DSRI_TYPE_IQ3_S:
    case DSRI_TYPE_IQ1_S:
    case DSRI_TYPE_IQ1_M: return iq_kernel_for(type);
    default: return dsri_avx2_kernel_for(type); /* Q4_1, Q5_1, Q2_K, Q3_K, IQ4_XS */
    }
}

/* ---- activations ---- */

size_t dsri_avx512_act_row_bytes(dsri_act_kind act, int64_t n)
{
    if (act == DSRI_ACT_BF16)
        return (size_t)((n + 31) / 32) * 64;
    return dsri_avx2_act_row_bytes(act == DSRI_ACT_X8_0 ? DSRI_ACT_Q8_0 : act, n);
}

void dsri_avx512_quantize_act(dsri_act_kind act, const float *x, void *dst, int64_t n)
{
    if (act == DSRI_ACT_BF16) {
        round_row_bf16(x, dst, n);
        return;
    }
    if (act != DSRI_ACT_X8_0) {
        dsri_avx2_quantize_act(act, x, dst, n);
        return;
    }
    /* Q8_0 blocks (the same layout), then -128 * sum(q) in place of s */
    dsri_avx2_quantize_act(DSRI_ACT_Q8_0, x, dst, n);
    dsri_ax8_0 *y = dst;
    for (int64_t ib = 0; ib < n / 32; ib++) {
        int32_t sum = 0;
        for (int i = 0; i < 32; i++)
            sum += y[ib].q[i];
        y[ib].c = -128 * sum;
    }
}
