/*
 * libdsr1 - tests for lib/quant (weight types).
 *
 *   test_quant [DATA_DIR]     DATA_DIR holds the qwen2-*.gguf fixtures
 *                             (default: current directory)
 *
 * Checks: fp16/bf16 conversions (known bit patterns, exhaustive fp16 round
 * trip), type traits / row sizes, the IQ types' grids and sign table
 * against their defining rules, hand-built blocks of every supported type
 * against values computed element by element from the format description,
 * quantize->dequantize round trips, and real tensors of the fixture models
 * (each file's tensors vs the F32 model's; where we have ggml's reference
 * quantizer, re-quantizing the F32 tensor must give the file's exact bytes).
 * Exits non-zero on any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/iq_tables.h"
#include "quant/quant.h"
#include "check.h"


static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)(v >> 8);
}

/* deterministic pseudo-random numbers */
static uint32_t g_rng = 12345u;
static uint32_t rng_u32(void)
{
    g_rng = g_rng * 1664525u + 1013904223u;
    return g_rng;
}
static float rng_unit(void) /* [-1, 1) */
{
    return (float)((double)(rng_u32() >> 8) / 8388608.0 - 1.0);
}
static float rng_gauss(void)
{
    float s = 0;
    for (int i = 0; i < 6; i++) s += rng_unit();
    return s * 0.7071f;
}

/* ------------------------------------------------------------ fp16 / bf16 */

static void test_fp16(void)
{
    static const struct { uint16_t h; uint32_t f; } to32[] = {
        {0x0000, 0x00000000u}, /* +0 */
        {0x8000, 0x80000000u}, /* -0 */
        {0x3C00, 0x3F800000u}, /* 1 */
        {0xC000, 0xC0000000u}, /* -2 */
        {0x3555, 0x3EAAA000u}, /* 0.333251953125 */
        {0x7BFF, 0x477FE000u}, /* 65504 (max) */
        {0x0400, 0x38800000u}, /* 2^-14 (min normal) */
        {0x0001, 0x33800000u}, /* 2^-24 (min subnormal) */
        {0x03FF, 0x387FC000u}, /* max subnormal 1023 * 2^-24 */
        {0x8200, 0xB8000000u}, /* -2^-15 (subnormal) */
        {0x7C00, 0x7F800000u}, /* +inf */
        {0xFC00, 0xFF800000u}, /* -inf */
    };
    for (size_t i = 0; i < sizeof to32 / sizeof to32[0]; i++) {
        const uint32_t got = bits_of(dsri_fp16_to_fp32(to32[i].h));
        CHECK(got == to32[i].f, "fp16_to_fp32(0x%04x) = 0x%08x, want 0x%08x", to32[i].h, got, to32[i].f);
    }
    CHECK(isnan(dsri_fp16_to_fp32(0x7E00)), "0x7e00 must be NaN");
    CHECK(isnan(dsri_fp16_to_fp32(0x7C01)), "0x7c01 (signalling) must be NaN");
    CHECK(isnan(dsri_fp16_to_fp32(0xFE00)), "0xfe00 must be NaN");

    static const struct { uint32_t f; uint16_t h; } to16[] = {
        {0x3F800000u, 0x3C00}, /* 1 */
        {0x80000000u, 0x8000}, /* -0 */
        {0x477FE000u, 0x7BFF}, /* 65504 */
        {0x477FEFFFu, 0x7BFF}, /* just below 65520: stays finite */
        {0x477FF000u, 0x7C00}, /* 65520: tie, rounds to even = inf */
        {0x501502F9u, 0x7C00}, /* 1e10 -> inf */
        {0xFF800000u, 0xFC00}, /* -inf */
        {0x3F801000u, 0x3C00}, /* 1 + 2^-11: tie -> even (down) */
        {0x3F803000u, 0x3C02}, /* 1 + 3*2^-11: tie -> even (up) */
        {0x3F801001u, 0x3C01}, /* just above the tie: up */
        {0x3F800FFFu, 0x3C00}, /* just below the tie: down */
        {0x33000000u, 0x0000}, /* 2^-25: tie between 0 and min subnormal -> 0 */
        {0x33000001u, 0x0001}, /* just above: min subnormal */
        {0x33C00000u, 0x0002}, /* 3*2^-25: tie between 1 and 2 -> 2 */
        {0x32FFFFFFu, 0x0000}, /* below half the min subnormal */
        {0x322BCC77u, 0x0000}, /* 1e-8 */
        {0xB3800000u, 0x8001}, /* -2^-24 */
        {0x387FE000u, 0x0400}, /* max subnormal + half ulp: tie -> even = min normal */
        {0x387FC000u, 0x03FF}, /* max subnormal, exact */
        {0x38800000u, 0x0400}, /* min normal */
        {0x3EAAAAABu, 0x3555}, /* 1/3 */
    };
    for (size_t i = 0; i < sizeof to16 / sizeof to16[0]; i++) {
        const uint16_t got = dsri_fp32_to_fp16(float_of(to16[i].f));
        CHECK(got == to16[i].h, "fp32_to_fp16(0x%08x) = 0x%04x, want 0x%04x", to16[i].f, got, to16[i].h);
    }
    {
        const uint16_t h = dsri_fp32_to_fp16(NAN);
        CHECK((h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0 && (h & 0x0200), "fp32_to_fp16(NaN) = 0x%04x", h);
        const uint16_t hs = dsri_fp32_to_fp16(float_of(0xFF800001u)); /* signalling, low payload */
        CHECK((hs & 0xFE00) == 0xFE00, "fp32_to_fp16(-sNaN) = 0x%04x", hs);
    }
    /* every half value survives half -> float -> half (NaNs stay NaN) */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        const float f = dsri_fp16_to_fp32((uint16_t)h);
        const uint16_t back = dsri_fp32_to_fp16(f);
        const int is_nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);
        if (is_nan ? !isnan(f) || (back & 0x7C00) != 0x7C00 || !(back & 0x3FF) : back != h) {
            if (bad++ < 5) fprintf(stderr, "  fp16 round trip 0x%04x -> 0x%04x\n", (unsigned)h, back);
        }
        /* cross-check the value itself against ldexp arithmetic */
        if (!is_nan && (h & 0x7C00) != 0x7C00) {
            const int e = (int)((h >> 10) & 0x1F), m = (int)(h & 0x3FF);
            double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
            if (h & 0x8000) v = -v;
            if ((double)f != v && bad++ < 5) fprintf(stderr, "  fp16 value 0x%04x\n", (unsigned)h);
        }
    }
    CHECK(bad == 0, "%d half values did not round trip", bad);

    /* fp32 -> fp16 rounding vs a double-precision reference on random floats */
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        const uint32_t u = (rng_u32() & 0x8FFFFFFFu) | ((rng_u32() % 40u + 100u) << 23); /* exps around fp16 range */
        const float f = float_of(u);
        const uint16_t h = dsri_fp32_to_fp16(f);
        const double hv = dsri_fp16_to_fp32(h);
        /* h must be a nearest representable half: neighbours are not closer */
        const uint16_t up = (uint16_t)(h + 1), dn = (uint16_t)(h - 1);
        const double err = fabs(hv - (double)f);
        if (isinf(hv)) continue;
        if ((h & 0x7FFF) != 0x7BFF && fabs((double)dsri_fp16_to_fp32(up) - f) < err) bad++;
        if ((h & 0x7FFF) != 0 && fabs((double)dsri_fp16_to_fp32(dn) - f) < err) bad++;
    }
    CHECK(bad == 0, "%d fp32->fp16 results not nearest", bad);
}

static void test_bf16(void)
{
    static const struct { uint32_t f; uint16_t h; } to16[] = {
        {0x3F800000u, 0x3F80}, /* 1 */
        {0x3F808000u, 0x3F80}, /* tie, even below */
        {0x3F818000u, 0x3F82}, /* tie, odd below -> up */
        {0x3F808001u, 0x3F81}, /* above tie */
        {0x3F807FFFu, 0x3F80}, /* below tie */
        {0xC0490FDBu, 0xC049}, /* -pi */
        {0x7F800000u, 0x7F80}, /* inf */
        {0xFF800000u, 0xFF80}, /* -inf */
        {0x7F7FFFFFu, 0x7F80}, /* FLT_MAX rounds to inf */
        {0x7F800001u, 0x7FC0}, /* sNaN -> quiet NaN */
        {0xFFC12345u, 0xFFC1}, /* qNaN keeps sign and top payload */
        {0x00010000u, 0x0001}, /* subnormal */
        {0x80000000u, 0x8000}, /* -0 */
    };
    for (size_t i = 0; i < sizeof to16 / sizeof to16[0]; i++) {
        const uint16_t got = dsri_fp32_to_bf16(float_of(to16[i].f));
        CHECK(got == to16[i].h, "fp32_to_bf16(0x%08x) = 0x%04x, want 0x%04x", to16[i].f, got, to16[i].h);
    }
    CHECK(bits_of(dsri_bf16_to_fp32(0x3F80)) == 0x3F800000u, "bf16 1.0");
    CHECK(bits_of(dsri_bf16_to_fp32(0x0001)) == 0x00010000u, "bf16 subnormal");
    CHECK(bits_of(dsri_bf16_to_fp32(0xFF80)) == 0xFF800000u, "bf16 -inf");
    CHECK(isnan(dsri_bf16_to_fp32(0x7FC1)), "bf16 NaN");
}

/* ------------------------------------------------------------ traits */

static void test_traits(void)
{
    static const struct { uint32_t type; const char *name; uint32_t bs, ts; } t[] = {
        {0, "f32", 1, 4},       {1, "f16", 1, 2},       {2, "q4_0", 32, 18},    {3, "q4_1", 32, 20},
        {6, "q5_0", 32, 22},    {7, "q5_1", 32, 24},    {8, "q8_0", 32, 34},    {10, "q2_K", 256, 84},
        {11, "q3_K", 256, 110}, {12, "q4_K", 256, 144}, {13, "q5_K", 256, 176}, {14, "q6_K", 256, 210},
        {20, "iq4_nl", 32, 18}, {23, "iq4_xs", 256, 136}, {30, "bf16", 1, 2},
        {16, "iq2_xxs", 256, 66}, {17, "iq2_xs", 256, 74}, {22, "iq2_s", 256, 82}, {18, "iq3_xxs", 256, 98},
        {21, "iq3_s", 256, 110},  {19, "iq1_s", 256, 50},  {29, "iq1_m", 256, 56},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const dsri_type_traits *tr = dsri_type_traits_get(t[i].type);
        CHECK(tr != NULL, "traits(%u)", t[i].type);
        if (!tr) continue;
        CHECK(strcmp(tr->name, t[i].name) == 0 && tr->block_size == t[i].bs && tr->type_size == t[i].ts,
              "traits(%u) = %s %u %u", t[i].type, tr->name, tr->block_size, tr->type_size);
        CHECK(dsri_row_size(t[i].type, (int64_t)t[i].bs * 7) == (size_t)t[i].ts * 7, "row_size(%u)", t[i].type);
        if (t[i].bs > 1) {
            CHECK(dsri_row_size(t[i].type, t[i].bs + 1) == 0, "row_size(%u) of a partial block", t[i].type);
            float y[1];
            CHECK(dsri_dequantize_row(t[i].type, y, y, 1) == -1, "dequantize partial block type %u", t[i].type);
        }
    }
    static const uint32_t unsupported[] = {4, 5, 9, 15, 24, 31, 39, 1000};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        float y[256] = {0};
        uint8_t b[1024] = {0};
        CHECK(dsri_type_traits_get(unsupported[i]) == NULL, "type %u should be unsupported", unsupported[i]);
        CHECK(dsri_row_size(unsupported[i], 256) == 0, "row_size of type %u", unsupported[i]);
        CHECK(dsri_dequantize_row(unsupported[i], b, y, 256) == -1, "dequantize type %u", unsupported[i]);
        CHECK(dsri_quantize_row(unsupported[i], y, b, 256) == -1, "quantize type %u", unsupported[i]);
    }
    CHECK(dsri_row_size(2, -32) == 0, "negative n");
    const float a[5] = {1, 2, 3, 4, 5}, b[5] = {0.5f, -1, 2, 0.25f, -2};
    CHECK(dsri_vec_dot_f32(a, b, 5) == 0.5f - 2 + 6 + 1 - 10, "vec_dot = %g", (double)dsri_vec_dot_f32(a, b, 5));
    CHECK(dsri_vec_dot_f32(a, b, 0) == 0.0f, "vec_dot of 0 elements");
}

/* ------------------------------------------------------------ IQ tables */

/* A grid against its defining rule (lib/quant/gen_iq_tables.py): every
 * element (byte i of an entry, n_elems of them) is one of the type's levels,
 * and the entries' packed level codes (level of element i at bits*i) are
 * strictly increasing, as ggml lists them; returns the number of entries
 * that break it. */
static int grid_violations(const char *name, const void *grid, int n_entries, int entry_bytes, int bits,
                           const int *levels, int n_levels)
{
    int bad = 0;
    long prev = -1;
    for (int k = 0; k < n_entries; k++) {
        uint64_t v = entry_bytes == 8 ? ((const uint64_t *)grid)[k] : ((const uint32_t *)grid)[k];
        long code = 0;
        int ok = 1;
        for (int i = 0; i < entry_bytes; i++) {
            int byte = (int)((v >> (8 * i)) & 0xFF), l = 0;
            if (levels[0] < 0)
                byte = (int8_t)byte; /* the IQ1 grid holds int8 values */
            while (l < n_levels && levels[l] != byte)
                l++;
            ok &= l < n_levels;
            code |= (long)l << (bits * i);
        }
        if (!ok || code <= prev) {
            if (!bad)
                printf("  %s[%d] = 0x%llx breaks the rule\n", name, k, (unsigned long long)v);
            bad++;
        }
        prev = code;
    }
    return bad;
}

static void test_iq_tables(void)
{
    static const int iq2[] = {8, 25, 43}, iq1[] = {-1, 0, 1}, iq3xxs[] = {4, 12, 20, 28, 36, 44, 52, 62},
                     iq3s[] = {1, 3, 5, 7, 9, 11, 13, 15};
    CHECK(grid_violations("iq2xxs_grid", dsri_iq2xxs_grid, 256, 8, 2, iq2, 3) == 0, "iq2xxs_grid");
    CHECK(grid_violations("iq2xs_grid", dsri_iq2xs_grid, 512, 8, 2, iq2, 3) == 0, "iq2xs_grid");
    CHECK(grid_violations("iq2s_grid", dsri_iq2s_grid, 1024, 8, 2, iq2, 3) == 0, "iq2s_grid");
    CHECK(grid_violations("iq1s_grid", dsri_iq1s_grid, 2048, 8, 2, iq1, 3) == 0, "iq1s_grid");
    CHECK(grid_violations("iq3xxs_grid", dsri_iq3xxs_grid, 256, 4, 3, iq3xxs, 8) == 0, "iq3xxs_grid");
    CHECK(grid_violations("iq3s_grid", dsri_iq3s_grid, 512, 4, 3, iq3s, 8) == 0, "iq3s_grid");
    /* the sign table: 7 stored bits, the eighth making the count even */
    int bad = 0;
    for (int i = 0; i < 128; i++) {
        int s = dsri_ksigns_iq2xs[i], ones = 0;
        for (int b = 0; b < 8; b++)
            ones += (s >> b) & 1;
        bad += (s & 127) != i || ones % 2 != 0;
    }
    CHECK(bad == 0, "ksigns_iq2xs: %d entries break the parity rule", bad);
    /* spot values as ggml-common.h lists them */
    CHECK(dsri_iq2xxs_grid[1] == 0x080808080808082bULL && dsri_iq2xxs_grid[255] == 0x2b2b2b1908081908ULL,
          "iq2xxs_grid ends");
    CHECK(dsri_iq3xxs_grid[5] == 0x04040c3eu && dsri_iq3s_grid[3] == 0x0101010bu, "iq3 grids");
    CHECK(dsri_iq1s_grid[1] == 0xffffffffffffff01ULL && dsri_iq1s_grid[2] == 0xffffffffffff0000ULL, "iq1s_grid");
}

/* ------------------------------------------------------------ hand-built blocks */

static const int kv_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* Dequantizes blk (with a 1-byte misalignment to exercise unaligned reads)
 * and compares with want[] exactly; the blocks below only produce values
 * that are exact in f32, so no tolerance is needed. */
static void check_block(const char *what, uint32_t type, const uint8_t *blk, const float *want, int n)
{
    const dsri_type_traits *tr = dsri_type_traits_get(type);
    uint8_t *buf = malloc(tr->type_size * 2 + 1);
    float *got = malloc(sizeof(float) * (size_t)n * 2);
    /* two copies of the block: the second must decode identically */
    memcpy(buf + 1, blk, tr->type_size);
    memcpy(buf + 1 + tr->type_size, blk, tr->type_size);
    CHECK(dsri_dequantize_row(type, buf + 1, got, 2 * (int64_t)n) == 0, "%s: dequantize", what);
    int bad = 0;
    for (int i = 0; i < 2 * n; i++) {
        if (got[i] != want[i % n]) {
            if (bad++ < 4)
                fprintf(stderr, "  %s: y[%d] = %.9g, want %.9g\n", what, i, (double)got[i], (double)want[i % n]);
        }
    }
    CHECK(bad == 0, "%s: %d wrong values", what, bad);
    free(buf);
    free(got);
}

#define F16_ONE 0x3C00
#define F16_HALF 0x3800
#define F16_QUARTER 0x3400
#define F16_TWO 0x4000
#define F16_EIGHTH 0x3000
#define F16_MINUS_ONE 0xBC00

static void test_blocks_32(void)
{
    uint8_t b[64];
    float want[256];

    /* Q4_0: d = 0.5, qs[j] = j | (15-j) << 4 */
    put16(b, F16_HALF);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    for (int j = 0; j < 16; j++) {
        want[j] = (float)(j - 8) * 0.5f;
        want[j + 16] = (float)(7 - j) * 0.5f;
    }
    CHECK(want[0] == -4.0f && want[16] == 3.5f && want[31] == -4.0f, "q4_0 expectations");
    check_block("q4_0", 2, b, want, 32);

    /* Q4_1: d = 0.5, m = -1 */
    put16(b, F16_HALF);
    put16(b + 2, F16_MINUS_ONE);
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(j | ((15 - j) << 4));
    for (int j = 0; j < 16; j++) {
        want[j] = (float)j * 0.5f - 1.0f;
        want[j + 16] = (float)(15 - j) * 0.5f - 1.0f;
    }
    check_block("q4_1", 3, b, want, 32);

    /* Q5_0: d = 1, qh = 0xA5A5F00F: element k's 5th bit is qh bit k */
    const uint32_t qh = 0xA5A5F00Fu;
    put16(b, F16_ONE);
    b[2] = 0x0F; b[3] = 0xF0; b[4] = 0xA5; b[5] = 0xA5;
    for (int j = 0; j < 16; j++) b[6 + j] = (uint8_t)(j | ((15 - j) << 4));
    for (int k = 0; k < 32; k++) {
        const int lo = k < 16 ? k : 15 - (k - 16);
        want[k] = (float)((lo | (int)((qh >> k) & 1) << 4) - 16);
    }
    /* by hand: y[0] = (0|16)-16 = 0, y[4] = 4-16 = -12, y[16] = (15|16)-16 = 15, y[17] = 14-16 = -2 */
    CHECK(want[0] == 0 && want[4] == -12 && want[16] == 15 && want[17] == -2, "q5_0 expectations");
    check_block("q5_0", 6, b, want, 32);

    /* Q5_1: d = 0.25, m = 2 */
    put16(b, F16_QUARTER);
    put16(b + 2, F16_TWO);
    b[4] = 0x0F; b[5] = 0xF0; b[6] = 0xA5; b[7] = 0xA5;
    for (int j = 0; j < 16; j++) b[8 + j] = (uint8_t)(j | ((15 - j) << 4));
    for (int k = 0; k < 32; k++) {
        const int lo = k < 16 ? k : 15 - (k - 16);
        want[k] = (float)(lo | (int)((qh >> k) & 1) << 4) * 0.25f + 2.0f;
    }
    check_block("q5_1", 7, b, want, 32);

    /* Q8_0: d = 0.125, signed bytes */
    put16(b, F16_EIGHTH);
    for (int j = 0; j < 32; j++) {
        const int q = j * 9 - 128; /* -128 .. 151 -> wraps past 127 */
        const int8_t s = (int8_t)(q > 127 ? q - 256 : q);
        memcpy(b + 2 + j, &s, 1);
        want[j] = (float)s * 0.125f;
    }
    CHECK(want[0] == -16.0f, "q8_0 expectations");
    check_block("q8_0", 8, b, want, 32);

    /* IQ4_NL: d = 2, low nibble j, high nibble 7j mod 16 */
    put16(b, F16_TWO);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | (((7 * j) % 16) << 4));
    for (int j = 0; j < 16; j++) {
        want[j] = 2.0f * (float)kv_iq4nl[j];
        /* index taken from the block bytes, not (7*j)%16: clang 14's loop
         * vectorizer miscompiles kv_iq4nl[(7*j)%16] over a constant table */
        want[j + 16] = 2.0f * (float)kv_iq4nl[b[2 + j] >> 4];
    }
    CHECK(want[0] == -254.0f && want[17] == -20.0f && want[31] == 2.0f * 13, "iq4_nl expectations");
    check_block("iq4_nl", 20, b, want, 32);
}

static void test_blocks_k(void)
{
    uint8_t b[256];
    float want[256];
    uint8_t qs[128];

    for (int i = 0; i < 128; i++) qs[i] = (uint8_t)((i * 37 + 11) & 0xFF);

    /* ---- Q2_K: scales[16] @0, qs[64] @16, d @80, dmin @82 */
    {
        memset(b, 0, sizeof b);
        for (int s = 0; s < 16; s++) b[s] = (uint8_t)(((s * 3 + 1) & 15) | (((s * 7 + 2) & 15) << 4));
        memcpy(b + 16, qs, 64);
        put16(b + 80, F16_ONE);
        put16(b + 82, F16_HALF);
        for (int i = 0; i < 256; i++) {
            const int s = i / 16, h = i / 128, r = i % 128, plane = r / 32, w = r % 32;
            const int q = (qs[32 * h + w] >> (2 * plane)) & 3;
            want[i] = 1.0f * (float)((s * 3 + 1) & 15) * (float)q - 0.5f * (float)((s * 7 + 2) & 15);
        }
        /* by hand: y[0]: scale 1, min 2, qs[0]=11=0b1011 -> q=3: 3 - 1 = 2.
         * y[200]: sub-block 12 (scale 37&15=5, min 86&15=6), byte 32+8=40:
         * qs[40] = (40*37+11)&255 = 1491&255 = 211 = 0b11010011, plane 2 -> (211>>4)&3 = 1: 5 - 3 = 2.
         * y[255]: sub-block 15 (scale 46&15=14, min 107&15=11), byte 63: qs[63] = 2342&255 = 38
         * = 0b00100110, plane 3 -> 0: 0 - 5.5 = -5.5 */
        CHECK(want[0] == 2.0f && want[200] == 2.0f && want[255] == -5.5f, "q2_K expectations %g %g %g",
              (double)want[0], (double)want[200], (double)want[255]);
        check_block("q2_K", 10, b, want, 256);
    }

    /* ---- Q3_K: hmask[32] @0, qs[64] @32, scales[12] @96, d @108 */
    {
        int s6[16];
        for (int j = 0; j < 16; j++) s6[j] = (j * 23 + 5) % 64; /* 6-bit, many >= 16 */
        memset(b, 0, sizeof b);
        for (int k = 0; k < 32; k++) b[k] = (uint8_t)((k * 29 + 3) & 0xFF);
        memcpy(b + 32, qs, 64);
        /* pack: byte j (j<8) low nibble = s6[j] low 4 bits, high nibble = s6[j+8] low 4 bits;
         * bits 2k..2k+1 of byte 8+(j%4), k = j/4, = s6[j] >> 4 */
        for (int j = 0; j < 8; j++) b[96 + j] = (uint8_t)((s6[j] & 15) | ((s6[j + 8] & 15) << 4));
        for (int j = 0; j < 16; j++) b[96 + 8 + (j % 4)] |= (uint8_t)((s6[j] >> 4) << (2 * (j / 4)));
        put16(b + 108, F16_HALF);
        for (int i = 0; i < 256; i++) {
            const int s = i / 16, h = i / 128, r = i % 128, plane = r / 32, w = r % 32;
            const int lo = (qs[32 * h + w] >> (2 * plane)) & 3;
            const int hb = (b[w] >> (4 * h + plane)) & 1; /* high bit: hmask[i % 32], bit i / 32 */
            want[i] = 0.5f * (float)(s6[s] - 32) * (float)(lo - (hb ? 0 : 4));
        }
        /* by hand: y[0]: scale s6[0]=5 -> 5-32 = -27, qs[0]=11 -> lo 3, hmask[0]=3 bit0 set -> q=3:
         * 0.5*-27*3 = -40.5 */
        CHECK(want[0] == -40.5f, "q3_K expectations %g", (double)want[0]);
        check_block("q3_K", 11, b, want, 256);
    }

    /* 6-bit scales/mins for Q4_K / Q5_K, several with the high bits set */
    static const int sc6[8] = {1, 17, 63, 5, 33, 48, 2, 60};
    static const int mn6[8] = {3, 0, 21, 40, 62, 7, 19, 50};
    uint8_t kscales[12];
    for (int j = 0; j < 4; j++) {
        kscales[j] = (uint8_t)(sc6[j] | ((sc6[j + 4] >> 4) << 6));
        kscales[j + 4] = (uint8_t)(mn6[j] | ((mn6[j + 4] >> 4) << 6));
        kscales[j + 8] = (uint8_t)((sc6[j + 4] & 15) | ((mn6[j + 4] & 15) << 4));
    }

    /* ---- Q4_K: d @0, dmin @2, scales[12] @4, qs[128] @16 */
    {
        memset(b, 0, sizeof b);
        put16(b, F16_HALF);
        put16(b + 2, F16_QUARTER);
        memcpy(b + 4, kscales, 12);
        memcpy(b + 16, qs, 128);
        for (int i = 0; i < 256; i++) {
            const int c = i / 64, w = i % 64, sb = 2 * c + w / 32;
            const uint8_t byte = qs[32 * c + w % 32];
            const int q = w < 32 ? (byte & 15) : (byte >> 4);
            want[i] = 0.5f * (float)sc6[sb] * (float)q - 0.25f * (float)mn6[sb];
        }
        /* by hand: y[0] = 0.5*1*(11&15=11) - 0.25*3 = 4.75;
         * y[100]: chunk 1, w 36 -> sub-block 3 (scale 5, min 40), byte qs[36] = (36*37+11)&255 = 1343&255 = 63,
         *         high nibble 3: 0.5*5*3 - 0.25*40 = -2.5
         * y[130]: chunk 2, w 2 -> sub-block 4 (scale 33, min 62), qs[66] = 2453&255 = 149 = 0x95, low 5:
         *         0.5*33*5 - 0.25*62 = 82.5 - 15.5 = 67 */
        CHECK(want[0] == 4.75f && want[100] == -2.5f && want[130] == 67.0f, "q4_K expectations %g %g %g",
              (double)want[0], (double)want[100], (double)want[130]);
        check_block("q4_K", 12, b, want, 256);
    }

    /* ---- Q5_K: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48 */
    {
        uint8_t qh5[32];
        for (int k = 0; k < 32; k++) qh5[k] = (uint8_t)((k * 53 + 7) & 0xFF);
        memset(b, 0, sizeof b);
        put16(b, F16_HALF);
        put16(b + 2, F16_QUARTER);
        memcpy(b + 4, kscales, 12);
        memcpy(b + 16, qh5, 32);
        memcpy(b + 48, qs, 128);
        for (int i = 0; i < 256; i++) {
            const int c = i / 64, w = i % 64, sb = 2 * c + w / 32;
            const uint8_t byte = qs[32 * c + w % 32];
            const int hi = (qh5[w % 32] >> sb) & 1; /* bit 2c for low nibbles, 2c+1 for high */
            const int q = (w < 32 ? (byte & 15) : (byte >> 4)) + 16 * hi;
            want[i] = 0.5f * (float)sc6[sb] * (float)q - 0.25f * (float)mn6[sb];
        }
        /* by hand: y[0]: qh[0] = 7, bit 0 set -> q = 11+16 = 27: 0.5*1*27 - 0.75 = 12.75 */
        CHECK(want[0] == 12.75f, "q5_K expectations %g", (double)want[0]);
        check_block("q5_K", 13, b, want, 256);
    }

    /* ---- Q6_K: ql[128] @0, qh[64] @128, scales[16] int8 @192, d @208 */
    {
        static const int8_t sc[16] = {1, -2, 3, 127, -128, 5, -7, 9, 11, -13, 2, 4, -1, 6, 8, -10};
        uint8_t qh6[64];
        for (int k = 0; k < 64; k++) qh6[k] = (uint8_t)((k * 91 + 5) & 0xFF);
        memset(b, 0, sizeof b);
        memcpy(b, qs, 128);
        memcpy(b + 128, qh6, 64);
        memcpy(b + 192, sc, 16);
        put16(b + 208, F16_QUARTER);
        for (int i = 0; i < 256; i++) {
            const int h = i / 128, r = i % 128, g = r / 32, l = r % 32;
            const uint8_t lb = qs[64 * h + l + 32 * (g & 1)];
            const int nib = g < 2 ? (lb & 15) : (lb >> 4);
            const int hb = (qh6[32 * h + l] >> (2 * g)) & 3;
            const int q = (nib | (hb << 4)) - 32;
            want[i] = 0.25f * (float)sc[8 * h + l / 16 + 2 * g] * (float)q;
        }
        /* by hand: y[0]: ql[0] = 11 low 11, qh[0] = 5 bits 0-1 = 1 -> 11|16 = 27 - 32 = -5: 0.25*1*-5 = -1.25
         * y[40]: g = 1, l = 8: ql[40] = (40*37+11)&255 = 211 low 3, qh[8] = (8*91+5)&255 = 733&255 = 221
         *        = 0b11011101, bits 2-3 = 3 -> 3|48 = 51 - 32 = 19, scale sc[0+0+2] = 3: 0.25*3*19 = 14.25 */
        CHECK(want[0] == -1.25f && want[40] == 14.25f, "q6_K expectations %g %g", (double)want[0], (double)want[40]);
        check_block("q6_K", 14, b, want, 256);
    }

    /* ---- IQ4_XS: d @0, scales_h(u16) @2, scales_l[4] @4, qs[128] @8 */
    {
        static const int ls[8] = {0, 63, 32, 17, 47, 31, 33, 5};
        uint16_t sh = 0;
        memset(b, 0, sizeof b);
        put16(b, F16_HALF);
        for (int ib = 0; ib < 8; ib++) sh = (uint16_t)(sh | ((ls[ib] >> 4) << (2 * ib)));
        put16(b + 2, sh);
        for (int k = 0; k < 4; k++) b[4 + k] = (uint8_t)((ls[2 * k] & 15) | ((ls[2 * k + 1] & 15) << 4));
        memcpy(b + 8, qs, 128);
        for (int i = 0; i < 256; i++) {
            const int ib = i / 32, w = i % 32;
            const uint8_t byte = qs[16 * ib + w % 16];
            const int q = w < 16 ? (byte & 15) : (byte >> 4);
            want[i] = 0.5f * (float)(ls[ib] - 32) * (float)kv_iq4nl[q];
        }
        /* by hand: y[0] = 0.5*(0-32)*kv[11] = -16*38 = -608; y[32]: sub-block 1 (63-32 = 31),
         * qs[16] = (16*37+11)&255 = 603&255 = 91 = 0x5B, low 11 -> 0.5*31*38 = 589 */
        CHECK(want[0] == -608.0f && want[32] == 589.0f, "iq4_xs expectations %g %g", (double)want[0],
              (double)want[32]);
        check_block("iq4_xs", 23, b, want, 256);
    }

    /* F16 / BF16 / F32 rows */
    {
        static const uint16_t h[4] = {0x3C00, 0x0001, 0xFC00, 0xC200};
        static const float hw[4] = {1.0f, 5.9604644775390625e-8f, -INFINITY, -3.0f};
        uint8_t raw[8];
        for (int i = 0; i < 4; i++) put16(raw + 2 * i, h[i]);
        check_block("f16", 1, raw, hw, 1); /* one element at a time */
        float got[4];
        CHECK(dsri_dequantize_row(1, raw, got, 4) == 0 && memcmp(got, hw, sizeof got) == 0, "f16 row");
        static const uint16_t bh[3] = {0x3F80, 0xC049, 0x0001};
        for (int i = 0; i < 3; i++) put16(raw + 2 * i, bh[i]);
        CHECK(dsri_dequantize_row(30, raw, got, 3) == 0 && bits_of(got[0]) == 0x3F800000u &&
                  bits_of(got[1]) == 0xC0490000u && bits_of(got[2]) == 0x00010000u,
              "bf16 row");
        const float f[3] = {1.5f, -0.0f, 3e38f};
        CHECK(dsri_dequantize_row(0, f, got, 3) == 0 && memcmp(got, f, sizeof f) == 0, "f32 row");
    }
}

/* ------------------------------------------------------------ quantizers */

static void test_quantize_exact(void)
{
    float x[32];
    uint8_t b[64];
    /* Q4_0: x = j - 8 for the first half: max-magnitude value -8 -> d = 1, q = x + 8 */
    for (int j = 0; j < 32; j++) x[j] = (float)((j % 16) - 8);
    CHECK(dsri_quantize_row(2, x, b, 32) == 0, "q4_0 quantize");
    CHECK(b[0] == 0x00 && b[1] == 0x3C, "q4_0 d bytes %02x %02x", b[0], b[1]);
    int ok = 1;
    for (int j = 0; j < 16; j++) ok &= b[2 + j] == (uint8_t)(j | (j << 4));
    CHECK(ok, "q4_0 nibbles");
    /* Q8_0: amax 127 -> d = 1, q = x */
    for (int j = 0; j < 32; j++) x[j] = (float)(j * 8 - 127);
    CHECK(dsri_quantize_row(8, x, b, 32) == 0, "q8_0 quantize");
    ok = b[0] == 0x00 && b[1] == 0x3C;
    for (int j = 0; j < 32; j++) ok &= (int8_t)b[2 + j] == j * 8 - 127;
    CHECK(ok, "q8_0 bytes");
    /* Q5_1: x = 0..31 -> d = 1, m = 0, q = x, qh bit k = (k >> 4) */
    for (int j = 0; j < 32; j++) x[j] = (float)j;
    CHECK(dsri_quantize_row(7, x, b, 32) == 0, "q5_1 quantize");
    CHECK(b[0] == 0x00 && b[1] == 0x3C && b[2] == 0 && b[3] == 0, "q5_1 d/m");
    /* elements 16..31 (values 16..31) have the 5th bit: qh = 0xFFFF0000 */
    CHECK(b[4] == 0 && b[5] == 0 && b[6] == 0xFF && b[7] == 0xFF, "q5_1 qh %02x%02x%02x%02x", b[7], b[6], b[5],
          b[4]);
    /* zero block: everything zero */
    memset(x, 0, sizeof x);
    static const uint32_t zt[] = {2, 3, 6, 7, 8};
    for (size_t t = 0; t < sizeof zt / sizeof zt[0]; t++) {
        const size_t sz = dsri_row_size(zt[t], 32);
        memset(b, 0xAA, sizeof b);
        CHECK(dsri_quantize_row(zt[t], x, b, 32) == 0, "quantize zeros type %u", zt[t]);
        float y[32];
        dsri_dequantize_row(zt[t], b, y, 32);
        ok = 1;
        for (int j = 0; j < 32; j++) ok &= y[j] == 0.0f;
        CHECK(ok && sz > 0, "zero block type %u", zt[t]);
    }
}

struct rt_case {
    uint32_t type;
    double max_rel_rms; /* relative RMS error bound on gaussian data */
    double step;        /* per-element bound, in units of the block's absmax (for the
                           min/max types the step is range/levels, range <= 2*absmax) */
};

static void test_roundtrip(void)
{
    enum { N = 256 * 64 };
    static const struct rt_case cases[] = {
        {0, 0.0, 0.0},          {1, 3e-4, 5e-4},          {30, 3e-3, 4e-3},        {8, 0.006, 1.0 / 254 + 2e-3},
        {2, 0.12, 1.0 / 8 + 2e-3}, {3, 0.09, 1.0 / 15 + 2e-3}, {6, 0.06, 1.0 / 16 + 2e-3},
        {7, 0.045, 1.0 / 31 + 2e-3}, {10, 0.40, 0.0}, {11, 0.25, 0.0}, {12, 0.10, 0.0}, {13, 0.05, 0.0},
        {14, 0.025, 0.0},
    };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    uint8_t *q = malloc((size_t)N * 4 + 64);
    for (int i = 0; i < N; i++) x[i] = rng_gauss() * (i % 512 < 256 ? 1.0f : 0.01f); /* two magnitudes */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const uint32_t t = cases[c].type;
        const dsri_type_traits *tr = dsri_type_traits_get(t);
        CHECK(dsri_quantize_row(t, x, q + 1, N) == 0, "quantize %s", tr->name);
        CHECK(dsri_dequantize_row(t, q + 1, y, N) == 0, "dequantize %s", tr->name);
        double se = 0, s2 = 0;
        int bad = 0;
        const int bs = (int)tr->block_size > 1 ? (int)tr->block_size : 32;
        for (int b0 = 0; b0 < N; b0 += bs) {
            float amax = 0;
            for (int i = b0; i < b0 + bs; i++) amax = fmaxf(amax, fabsf(x[i]));
            for (int i = b0; i < b0 + bs; i++) {
                const double e = (double)y[i] - x[i];
                se += e * e;
                s2 += (double)x[i] * x[i];
                if (cases[c].step > 0 && fabs(e) > cases[c].step * amax * 1.0001 + 1e-30 && bad++ < 3)
                    fprintf(stderr, "  %s: x[%d] = %g -> %g (amax %g)\n", tr->name, i, (double)x[i], (double)y[i],
                            (double)amax);
            }
        }
        const double rel = sqrt(se / s2);
        printf("  round trip %-6s rel RMS %.5f\n", tr->name, rel);
        CHECK(rel <= cases[c].max_rel_rms, "%s round trip rel RMS %g > %g", tr->name, rel, cases[c].max_rel_rms);
        CHECK(bad == 0, "%s: %d elements beyond the per-element bound", tr->name, bad);
        /* quantizing the dequantized values must be (nearly) idempotent in value */
        if (t != 0) {
            float *y2 = malloc(sizeof(float) * N);
            dsri_quantize_row(t, y, q, N);
            dsri_dequantize_row(t, q, y2, N);
            double se2 = 0;
            for (int i = 0; i < N; i++) se2 += ((double)y2[i] - y[i]) * ((double)y2[i] - y[i]);
            CHECK(sqrt(se2 / s2) <= cases[c].max_rel_rms, "%s re-quantization drift %g", tr->name, sqrt(se2 / s2));
            free(y2);
        }
    }
    free(x);
    free(y);
    free(q);
}

/* ------------------------------------------------------------ GGUF fixtures */

/* A minimal GGUF v2/v3 reader: just enough to find tensors. */
typedef struct {
    char name[128];
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t offset;
} mini_tensor;

typedef struct {
    uint8_t *buf;
    size_t size;
    uint64_t n_tensors;
    mini_tensor *t;
    size_t data_off;
} mini_gguf;

typedef struct {
    const uint8_t *p, *end;
    int err;
} rd;

static uint64_t rd_le(rd *r, int n)
{
    if (r->err || (size_t)(r->end - r->p) < (size_t)n) {
        r->err = 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    return v;
}

static void rd_skip(rd *r, uint64_t n)
{
    if (r->err || (uint64_t)(r->end - r->p) < n) {
        r->err = 1;
        return;
    }
    r->p += n;
}

static void skip_value(rd *r, uint32_t vt, int depth)
{
    static const int sizes[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (depth > 4 || vt > 12) {
        r->err = 1;
        return;
    }
    if (vt == 8) { /* string */
        rd_skip(r, rd_le(r, 8));
    } else if (vt == 9) { /* array */
        const uint32_t et = (uint32_t)rd_le(r, 4);
        const uint64_t n = rd_le(r, 8);
        if (et != 8 && et != 9 && et <= 12) {
            if (n > (uint64_t)(r->end - r->p)) r->err = 1;
            else rd_skip(r, n * (uint64_t)sizes[et]);
        } else {
            for (uint64_t i = 0; i < n && !r->err; i++) skip_value(r, et, depth + 1);
        }
    } else {
        rd_skip(r, (uint64_t)sizes[vt]);
    }
}

static void mini_free(mini_gguf *g)
{
    free(g->buf);
    free(g->t);
    memset(g, 0, sizeof *g);
}

static int mini_open(mini_gguf *g, const char *path)
{
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    const long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    g->buf = malloc(sz > 0 ? (size_t)sz : 1);
    g->size = (size_t)sz;
    if (!g->buf || fread(g->buf, 1, g->size, f) != g->size) {
        fclose(f);
        mini_free(g);
        return -1;
    }
    fclose(f);
    rd r = {g->buf, g->buf + g->size, 0};
    if (g->size < 4 || memcmp(g->buf, "GGUF", 4) != 0) goto fail;
    r.p += 4;
    const uint32_t version = (uint32_t)rd_le(&r, 4);
    if (version < 2) goto fail;
    g->n_tensors = rd_le(&r, 8);
    const uint64_t n_kv = rd_le(&r, 8);
    uint64_t alignment = 32;
    for (uint64_t i = 0; i < n_kv && !r.err; i++) {
        const uint64_t klen = rd_le(&r, 8);
        const uint8_t *key = r.p;
        rd_skip(&r, klen);
        const uint32_t vt = (uint32_t)rd_le(&r, 4);
        if (!r.err && klen == 17 && memcmp(key, "general.alignment", 17) == 0 && vt == 4)
            alignment = rd_le(&r, 4);
        else
            skip_value(&r, vt, 0);
    }
    if (r.err || g->n_tensors > 100000 || alignment == 0) goto fail;
    g->t = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->t);
    for (uint64_t i = 0; i < g->n_tensors && !r.err; i++) {
        mini_tensor *t = &g->t[i];
        const uint64_t nlen = rd_le(&r, 8);
        if (nlen >= sizeof t->name) goto fail;
        if (!r.err && (uint64_t)(r.end - r.p) >= nlen) memcpy(t->name, r.p, nlen);
        rd_skip(&r, nlen);
        t->n_dims = (uint32_t)rd_le(&r, 4);
        if (t->n_dims > 4) goto fail;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) t->ne[d] = (int64_t)rd_le(&r, 8);
        t->type = (uint32_t)rd_le(&r, 4);
        t->offset = rd_le(&r, 8);
    }
    if (r.err) goto fail;
    g->data_off = (size_t)(((uint64_t)(r.p - g->buf) + alignment - 1) / alignment * alignment);
    return 0;
fail:
    mini_free(g);
    return -1;
}

static const mini_tensor *mini_find(const mini_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->t[i].name, name) == 0) return &g->t[i];
    return NULL;
}

/* dequantizes a whole tensor into a new buffer; NULL on error */
static float *mini_load(const mini_gguf *g, const mini_tensor *t, int64_t *n_out)
{
    const int64_t ne0 = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
    const size_t rs = dsri_row_size(t->type, ne0);
    if (rs == 0 || g->data_off + t->offset + rs * (size_t)rows > g->size) return NULL;
    float *out = malloc(sizeof(float) * (size_t)(ne0 * rows));
    const uint8_t *src = g->buf + g->data_off + t->offset;
    for (int64_t r = 0; r < rows; r++)
        if (dsri_dequantize_row(t->type, src + rs * (size_t)r, out + ne0 * r, ne0) != 0) {
            free(out);
            return NULL;
        }
    *n_out = ne0 * rows;
    return out;
}

/* accepted relative RMS error (vs F32) per ggml type, over whole tensors */
static double type_bound(uint32_t type)
{
    switch (type) {
    case 0: return 0.0;
    case 1: return 1e-3;
    case 30: return 8e-3;
    case 8: return 0.01;
    case 14: return 0.04;
    case 6: case 7: case 13: return 0.07;
    case 2: case 3: case 12: case 20: case 23: return 0.12;
    case 11: return 0.22;
    case 10: return 0.35;
    default: return -1;
    }
}

/* sum over the tensor of w[column] * (x - dequantized)^2 */
static double weighted_error(uint32_t type, const float *x, int64_t rows, int64_t cols, const float *w,
                             const float *imatrix)
{
    const size_t rs = dsri_row_size(type, cols);
    uint8_t *q = malloc(rs * (size_t)rows);
    float *y = malloc(sizeof(float) * (size_t)cols);
    double e = -1;
    if (q && y && dsri_quantize_rows(type, x, q, rows, cols, imatrix) == 0) {
        e = 0;
        for (int64_t r = 0; r < rows; r++) {
            dsri_dequantize_row(type, q + rs * (size_t)r, y, cols);
            for (int64_t j = 0; j < cols; j++) {
                const double d = (double)y[j] - x[r * cols + j];
                e += w[j] * d * d;
            }
        }
    }
    free(q);
    free(y);
    return e;
}

/*
 * dsri_quantize_rows with an importance matrix: on every matrix of the f32
 * fixture, with column weights spread over three orders of magnitude, the
 * error weighted by them must come out lower with the imatrix than without
 * (the quantizer minimises exactly that), for each type that uses it; with
 * NULL it gives dsri_quantize_row's bytes; bad weights are refused.
 */
static void test_imatrix_quantize(const mini_gguf *ref)
{
    static const uint32_t types[] = {20 /* iq4_nl */, 23 /* iq4_xs */};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t type = types[ti];
        const char *tn = dsri_type_traits_get(type)->name;
        double with = 0, without = 0;
        int n_mat = 0, n_better = 0;
        for (uint64_t i = 0; i < ref->n_tensors; i++) {
            const mini_tensor *t = &ref->t[i];
            if (t->n_dims != 2 || t->ne[0] % 256 != 0)
                continue;
            int64_t n = 0;
            float *x = mini_load(ref, t, &n);
            const int64_t cols = t->ne[0], rows = n / cols;
            float *w = malloc(sizeof(float) * (size_t)cols);
            for (int64_t j = 0; j < cols; j++) w[j] = expf(3.0f * rng_unit()); /* e^-3 .. e^3 */
            const double e1 = weighted_error(type, x, rows, cols, w, w);
            const double e0 = weighted_error(type, x, rows, cols, w, NULL);
            CHECK(e1 >= 0 && e0 >= 0, "%s: quantize %s", tn, t->name);
            with += e1;
            without += e0;
            n_mat++;
            n_better += e1 < e0;
            free(w);
            free(x);
        }
        printf("  %-6s with an imatrix: weighted error %.6g vs %.6g without (%d of %d matrices better)\n", tn,
               with, without, n_better, n_mat);
        CHECK(n_mat > 10 && n_better == n_mat, "%s: imatrix lowers the weighted error on %d of %d matrices", tn,
              n_better, n_mat);
        CHECK(with < 0.97 * without, "%s: weighted error %g with imatrix, %g without", tn, with, without);
    }

    float x[512], w[512];
    uint8_t a[2048], b[2048];
    for (int j = 0; j < 512; j++) {
        x[j] = rng_gauss();
        w[j] = 1.0f;
    }
    static const uint32_t all[] = {0, 1, 30, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 20, 23};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const size_t rs = dsri_row_size(all[i], 256);
        CHECK(dsri_quantize_rows(all[i], x, a, 2, 256, NULL) == 0 && dsri_quantize_row(all[i], x, b, 256) == 0 &&
                  dsri_quantize_row(all[i], x + 256, b + rs, 256) == 0 && memcmp(a, b, 2 * rs) == 0,
              "type %u: quantize_rows without imatrix = quantize_row", all[i]);
    }
    CHECK(dsri_quantize_rows(23, x, a, 1, 256, w) == 0, "flat imatrix accepted");
    w[7] = -1.0f;
    CHECK(dsri_quantize_rows(23, x, a, 1, 256, w) == -1, "negative imatrix weight refused");
    w[7] = NAN;
    CHECK(dsri_quantize_rows(23, x, a, 1, 256, w) == -1, "NaN imatrix weight refused");
    w[7] = INFINITY;
    CHECK(dsri_quantize_rows(23, x, a, 1, 256, w) == -1, "infinite imatrix weight refused");
    CHECK(dsri_quantize_rows(23, x, a, -1, 256, NULL) == -1, "negative row count refused");
    CHECK(dsri_quantize_rows(23, x, a, 1, 32, NULL) == -1, "partial IQ4_XS block refused");
}

/*
 * The qwen2 IQ fixtures were made by llama.cpp's quantizer with an all-ones
 * importance matrix for every tensor (but iq3_s, whose mix needs none and
 * was made without): their tensors of the legacy, K and IQ4 types (attn_v,
 * token_embd, the output...) re-quantized from the f32 file with weights of
 * 1 must give the file's bytes (ggml's *_impl paths, which differ from the
 * no-imatrix ones: the counts without are printed too).
 */
static void test_imatrix_fixtures(const char *dir, const mini_gguf *ref)
{
    static const char *files[] = {"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s"};
    long long blocks[64] = {0}, same[64] = {0}, same_plain[64] = {0};
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
        char path[1024];
        mini_gguf g;
        snprintf(path, sizeof path, "%s/models/qwen2-%s.gguf", dir, files[fi]);
        if (mini_open(&g, path) != 0) {
            CHECK(0, "cannot open/parse %s", path);
            continue;
        }
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const mini_tensor *t = &g.t[i];
            const mini_tensor *rt = mini_find(ref, t->name);
            const dsri_type_traits *tr = dsri_type_traits_get(t->type);
            if (!rt || !tr || t->type == 0 || t->type >= 64 || t->n_dims < 2 || t->type == 16 || t->type == 17 ||
                t->type == 18 || t->type == 19 || t->type == 21 || t->type == 22 || t->type == 29)
                continue; /* the lattice types are quant_iq_lattice.c's */
            int64_t n = 0;
            float *b = mini_load(ref, rt, &n);
            const int64_t cols = t->ne[0], rows = n / cols;
            const size_t rs = dsri_row_size(t->type, cols);
            float *ones = malloc(sizeof(float) * (size_t)cols);
            uint8_t *q = malloc(rs), *q0 = malloc(rs);
            for (int64_t j = 0; j < cols; j++) ones[j] = 1.0f;
            const int with = strcmp(files[fi], "iq3_s") != 0;
            const uint8_t *fileq = g.buf + g.data_off + t->offset;
            for (int64_t r = 0; r < rows; r++) {
                CHECK(dsri_quantize_rows(t->type, b + r * cols, q, 1, cols, with ? ones : NULL) == 0 &&
                          dsri_quantize_rows(t->type, b + r * cols, q0, 1, cols, NULL) == 0,
                      "%s: quantize %s", files[fi], t->name);
                for (size_t o = 0; o < rs; o += tr->type_size) {
                    blocks[t->type]++;
                    same[t->type] += memcmp(q + o, fileq + rs * (size_t)r + o, tr->type_size) == 0;
                    same_plain[t->type] += memcmp(q0 + o, fileq + rs * (size_t)r + o, tr->type_size) == 0;
                }
            }
            free(ones);
            free(q);
            free(q0);
            free(b);
        }
        mini_free(&g);
    }
    int types = 0;
    for (int ty = 0; ty < 64; ty++) {
        if (!blocks[ty])
            continue;
        types++;
        printf("  IQ fixtures' %-6s blocks: %lld/%lld identical as made (%lld without an imatrix)\n",
               dsri_type_traits_get((uint32_t)ty)->name, same[ty], blocks[ty], same_plain[ty]);
        CHECK(same[ty] == blocks[ty], "type %d: %lld of %lld blocks differ from llama.cpp's with an imatrix", ty,
              blocks[ty] - same[ty], blocks[ty]);
    }
    CHECK(types >= 3, "the IQ fixtures hold %d legacy/K/IQ4 types", types);
}

struct type_acc {
    double se, s2;
    int tensors;
    long long blocks, blocks_diff; /* re-quantization comparison */
};

static void test_models(const char *dir)
{
    static const char *files[] = {"f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k",
                                  "q3_k_m", "q4_k_m", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs"};
    char path[1024];
    mini_gguf ref;
    snprintf(path, sizeof path, "%s/models/qwen2-f32.gguf", dir);
    if (mini_open(&ref, path) != 0) {
        CHECK(0, "cannot open/parse %s", path);
        return;
    }
    printf("  %s: %llu tensors\n", path, (unsigned long long)ref.n_tensors);
    struct type_acc acc[64];
    memset(acc, 0, sizeof acc);

    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
        mini_gguf g;
        snprintf(path, sizeof path, "%s/models/qwen2-%s.gguf", dir, files[fi]);
        if (mini_open(&g, path) != 0) {
            CHECK(0, "cannot open/parse %s", path);
            continue;
        }
        CHECK(g.n_tensors == ref.n_tensors, "%s: %llu tensors", files[fi], (unsigned long long)g.n_tensors);
        double fse = 0, fs2 = 0;
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const mini_tensor *t = &g.t[i];
            const mini_tensor *rt = mini_find(&ref, t->name);
            CHECK(rt != NULL, "%s: tensor %s not in f32 model", files[fi], t->name);
            if (!rt) continue;
            CHECK(rt->type == 0, "reference %s is type %u", rt->name, rt->type);
            const dsri_type_traits *tr = dsri_type_traits_get(t->type);
            CHECK(tr != NULL, "%s: %s has unsupported type %u", files[fi], t->name, t->type);
            if (!tr || t->type >= 64) continue;
            int64_t n = 0, nr = 0;
            float *a = mini_load(&g, t, &n);
            float *b = mini_load(&ref, rt, &nr);
            CHECK(a && b && n == nr, "%s: load %s", files[fi], t->name);
            if (a && b && n == nr) {
                double se = 0, s2 = 0;
                for (int64_t k = 0; k < n; k++) {
                    const double e = (double)a[k] - b[k];
                    se += e * e;
                    s2 += (double)b[k] * b[k];
                }
                acc[t->type].se += se;
                acc[t->type].s2 += s2;
                acc[t->type].tensors++;
                fse += se;
                fs2 += s2;
                if (strcmp(t->name, "blk.0.ffn_down.weight") == 0)
                    printf("  %-7s blk.0.ffn_down.weight  %-6s [%lld x %lld]  rel RMS %.5f\n", files[fi], tr->name,
                           (long long)t->ne[0], (long long)(n / t->ne[0]), sqrt(se / (s2 > 0 ? s2 : 1)));
                /* per-tensor bound (a little looser than the per-type one) */
                const double bound = type_bound(t->type);
                CHECK(bound >= 0 && sqrt(se / (s2 > 0 ? s2 : 1)) <= (bound == 0 ? 0 : bound * 1.5),
                      "%s: %s (%s) rel RMS %g", files[fi], t->name, tr->name, sqrt(se / (s2 > 0 ? s2 : 1)));

                /* re-quantize the F32 tensor with our reference quantizer */
                const size_t rs = dsri_row_size(t->type, t->ne[0]);
                const int64_t rows = n / t->ne[0];
                uint8_t *qb = malloc(rs);
                const uint8_t *fileq = g.buf + g.data_off + t->offset;
                int have = 1;
                for (int64_t r = 0; r < rows && have; r++) {
                    if (dsri_quantize_row(t->type, b + r * t->ne[0], qb, t->ne[0]) != 0) {
                        have = 0;
                        break;
                    }
                    for (size_t o = 0; o < rs; o += tr->type_size) {
                        acc[t->type].blocks++;
                        if (memcmp(qb + o, fileq + rs * (size_t)r + o, tr->type_size) != 0) acc[t->type].blocks_diff++;
                    }
                }
                free(qb);
            }
            free(a);
            free(b);
        }
        printf("  %-7s all tensors: rel RMS %.5f\n", files[fi], sqrt(fse / fs2));
        mini_free(&g);
    }

    printf("  per type over all files:\n");
    for (uint32_t ty = 0; ty < 64; ty++) {
        if (!acc[ty].tensors) continue;
        const dsri_type_traits *tr = dsri_type_traits_get(ty);
        const double rel = sqrt(acc[ty].se / acc[ty].s2);
        printf("    %-6s %3d tensors  rel RMS %.5f (bound %.3g)", tr->name, acc[ty].tensors, rel, type_bound(ty));
        if (acc[ty].blocks)
            printf("  re-quantized: %lld/%lld blocks identical", acc[ty].blocks - acc[ty].blocks_diff, acc[ty].blocks);
        printf("\n");
        CHECK(rel <= type_bound(ty), "type %s rel RMS %g > %g", tr->name, rel, type_bound(ty));
        /* our quantizers reproduce ggml's reference ones: the fixture files were
         * written by llama-quantize (no imatrix) from the F32 weights */
        CHECK(acc[ty].blocks_diff == 0, "type %s: %lld of %lld re-quantized blocks differ from the file", tr->name,
              acc[ty].blocks_diff, acc[ty].blocks);
    }
    static const uint32_t must_cover[] = {0, 1, 30, 2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 20, 23};
    for (size_t i = 0; i < sizeof must_cover / sizeof must_cover[0]; i++)
        CHECK(acc[must_cover[i]].tensors > 0, "fixtures contain no tensor of type %u", must_cover[i]);
    test_imatrix_quantize(&ref);
    test_imatrix_fixtures(dir, &ref);
    mini_free(&ref);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    printf("test_quant: fp16/bf16\n");
    test_fp16();
    test_bf16();
    printf("test_quant: traits\n");
    test_traits();
    printf("test_quant: IQ grids and sign table\n");
    test_iq_tables();
    printf("test_quant: hand-built blocks\n");
    test_blocks_32();
    test_blocks_k();
    printf("test_quant: quantizers\n");
    test_quantize_exact();
    test_roundtrip();
    printf("test_quant: fixture models in %s\n", dir);
    test_models(dir);
    return check_summary("test_quant");
}
