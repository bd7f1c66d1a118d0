/*
 * libdsr1 - tests for the lattice quantizers (lib/quant/quant_iq*.c).
 *
 *   test_quant_iq [DATA_DIR]   DATA_DIR/models holds qwen2-f32.gguf and
 *                              the qwen2-iq*.gguf fixtures
 *
 * Checks, for IQ3_S, IQ3_XXS, IQ2_S, IQ2_XS, IQ2_XXS, IQ1_M, IQ1_S:
 * - the neighbour tables against ggml's rule, recomputed by brute force
 *   (every off-grid vector of levels: the grid entries at the nwant
 *   smallest distinct distances, sorted by distance then index);
 * - the fixture files, made by llama.cpp's quantizer from qwen2-f32 with an
 *   importance matrix of all ones (qwen2-iq3_s: with none): every tensor of
 *   the type in any of them, quantized from the f32 tensor the same way,
 *   gives the file's blocks, byte for byte, and so an RMS error (after our
 *   dequantizer) no worse than the file's; both errors are printed;
 * - properties: scaling the input by 4 scales the result by 4 exactly,
 *   negating it negates the result (IQ2, IQ3), requantizing dequantized
 *   values moves them little (not to the same blocks: see below), an
 *   all-zero row gives zero blocks, the one-call and the table-holding
 *   paths agree, and bad arguments and a missing importance matrix are
 *   refused (failed allocations too, in builds with failure injection).
 * Exits non-zero on any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "quant/quant_iq_lattice.h"
#include "check.h"

static const struct {
    uint32_t type;
    const char *name;
} types[] = {
    {DSRI_TYPE_IQ3_S, "iq3_s"},     {DSRI_TYPE_IQ3_XXS, "iq3_xxs"}, {DSRI_TYPE_IQ2_S, "iq2_s"},
    {DSRI_TYPE_IQ2_XS, "iq2_xs"},   {DSRI_TYPE_IQ2_XXS, "iq2_xxs"}, {DSRI_TYPE_IQ1_M, "iq1_m"},
    {DSRI_TYPE_IQ1_S, "iq1_s"},
};
#define N_TYPES (int)(sizeof types / sizeof types[0])

/* ------------------------------------------------------- neighbour tables */

static int cmp_pair(const void *a, const void *b)
{
    const int *l = a, *r = b;
    return l[0] != r[0] ? (l[0] < r[0] ? -1 : 1) : (l[1] < r[1] ? -1 : l[1] > r[1]);
}

/* ggml's iq2xs_init_impl / iq3xs_init_impl rule, as written there: sort
 * every entry by (squared distance between odd values 2l+1, index) and
 * take entries while at most nwant distinct distances are seen. */
static int brute_neighbours(const dsri_iq_lattice *lat, const int *p, int *pairs, uint16_t *out)
{
    for (int j = 0; j < lat->grid_size; j++) {
        int d2 = 0;
        for (int i = 0; i < lat->dim; i++) {
            const int diff = (2 * lat->levels[j * lat->dim + i] + 1) - (2 * p[i] + 1);
            d2 += diff * diff;
        }
        pairs[2 * j] = d2;
        pairs[2 * j + 1] = j;
    }
    qsort(pairs, (size_t)lat->grid_size, 2 * sizeof(int), cmp_pair);
    int n = 0, nhave = 1, d2 = pairs[0];
    for (int j = 0; j < lat->grid_size; j++) {
        if (pairs[2 * j] > d2) {
            if (nhave == lat->nwant)
                break;
            d2 = pairs[2 * j];
            nhave++;
        }
        out[n++] = (uint16_t)pairs[2 * j + 1];
    }
    return n;
}

static void test_tables(uint32_t type, const char *name)
{
    dsri_iq_lattice *lat = dsri_iq_lattice_new(type);
    CHECK(lat != NULL, "%s: lattice", name);
    if (!lat)
        return;
    int *pairs = malloc(2 * sizeof(int) * (size_t)lat->grid_size);
    uint16_t *want = malloc(sizeof(uint16_t) * (size_t)lat->grid_size);
    const int n_codes = 1 << (lat->bits * lat->dim), mask = (1 << lat->bits) - 1;
    int bad_grid = 0, bad_lists = 0, n_off = 0;
    for (int j = 0; j < lat->grid_size; j++) {
        int code = 0;
        for (int i = 0; i < lat->dim; i++)
            code |= lat->levels[j * lat->dim + i] << (lat->bits * i);
        bad_grid += lat->map[code] != j;
    }
    for (int code = 0; code < n_codes; code++) {
        int p[8], in_range = 1;
        for (int i = 0; i < lat->dim; i++) {
            p[i] = (code >> (lat->bits * i)) & mask;
            in_range &= p[i] < lat->n_levels;
        }
        if (lat->map[code] >= 0)
            continue;
        const int64_t off = -(int64_t)lat->map[code] - 1;
        if (off < 0 || off >= lat->n_neighbours || off + 1 + lat->neighbours[off] > lat->n_neighbours) {
            bad_lists++;
            continue;
        }
        const uint16_t *got = lat->neighbours + off;
        if (!in_range) {
            bad_lists += got[0] != 0;
            continue;
        }
        n_off++;
        const int n = brute_neighbours(lat, p, pairs, want);
        if (got[0] != n || memcmp(got + 1, want, sizeof *want * (size_t)n) != 0) {
            if (!bad_lists)
                printf("  %s: code 0x%x: %d neighbours, want %d\n", name, code, got[0], n);
            bad_lists++;
        }
    }
    printf("%s: %d off-grid codes, %lld neighbour entries\n", name, n_off, (long long)lat->n_neighbours);
    CHECK(bad_grid == 0, "%s: %d grid entries not mapped to themselves", name, bad_grid);
    CHECK(bad_lists == 0, "%s: %d neighbour lists differ from ggml's rule", name, bad_lists);
    CHECK(n_off > 0, "%s: no off-grid codes", name);
    free(pairs);
    free(want);
    dsri_iq_lattice_free(lat);
}

/* ------------------------------------------------------------- fixtures */

static uint8_t *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) != NULL &&
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

typedef struct model_file {
    uint8_t *buf;
    dsri_gguf *g;
} model_file;

static int open_model(model_file *m, const char *dir, const char *name)
{
    char path[1024];
    size_t size = 0;
    snprintf(path, sizeof path, "%s/models/qwen2-%s.gguf", dir, name);
    m->g = NULL;
    m->buf = read_all(path, &size);
    if (!m->buf || dsri_gguf_parse(m->buf, size, &m->g) != DSR1_OK) {
        printf("cannot read %s\n", path);
        free(m->buf);
        m->buf = NULL;
        return -1;
    }
    return 0;
}

static void close_model(model_file *m)
{
    dsri_gguf_free(m->g);
    free(m->buf);
}

/* The fixture files with lattice-type tensors, and how llama.cpp made them:
 * with an importance matrix of all ones, except qwen2-iq3_s, made without
 * one (its blocks are ggml's for no importance matrix, not for ones). */
static const struct {
    const char *name;
    int flat_imatrix;
} fixtures[] = {
    {"iq3_s", 0}, {"iq3_xxs", 1}, {"iq2_s", 1}, {"iq2_xs", 1}, {"iq2_xxs", 1}, {"iq1_m", 1}, {"iq1_s", 1},
};
#define N_FIXTURES (int)(sizeof fixtures / sizeof fixtures[0])

typedef struct fixture_stats {
    double err_ours, err_ref; /* sums of squared errors against the f32 values */
    int64_t n_values, n_blocks, n_same;
    int n_tensors, bad;
} fixture_stats;

/* Quantizes every tensor of the type in ref from f32's, as llama.cpp did. */
static void compare_file(const model_file *f32, const model_file *ref, const dsri_iq_lattice *lat, int flat,
                         fixture_stats *st)
{
    const uint32_t type = lat->type;
    const size_t bs = dsri_type_traits_get(type)->type_size;
    for (uint64_t ti = 0; ti < dsri_gguf_tensor_count(ref->g); ti++) {
        const dsri_gguf_tensor *t = dsri_gguf_tensor_at(ref->g, ti);
        if (t->type != type)
            continue;
        char tname[256];
        snprintf(tname, sizeof tname, "%.*s", (int)t->name.len, t->name.ptr);
        const dsri_gguf_tensor *src = dsri_gguf_find_tensor(f32->g, tname);
        if (!src || src->type != DSRI_TYPE_F32 || memcmp(src->ne, t->ne, sizeof t->ne) != 0) {
            st->bad++;
            continue;
        }
        const int64_t ne0 = t->ne[0], rows = t->ne[1] * t->ne[2] * t->ne[3];
        const size_t row_bytes = dsri_row_size(type, ne0);
        float *x = malloc(sizeof(float) * (size_t)ne0), *ones = malloc(sizeof(float) * (size_t)ne0);
        float *yo = malloc(sizeof(float) * (size_t)ne0), *yr = malloc(sizeof(float) * (size_t)ne0);
        uint8_t *q = malloc(row_bytes);
        for (int64_t i = 0; i < ne0; i++)
            ones[i] = 1.0f;
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *theirs = t->data + (size_t)r * row_bytes;
            memcpy(x, src->data + (size_t)r * (size_t)ne0 * sizeof(float), sizeof(float) * (size_t)ne0);
            if (dsri_iq_lattice_quantize_row(lat, x, q, ne0, flat ? ones : NULL) != 0 ||
                dsri_dequantize_row(type, q, yo, ne0) != 0 || dsri_dequantize_row(type, theirs, yr, ne0) != 0) {
                st->bad++;
                break;
            }
            for (int64_t i = 0; i < ne0; i++) {
                st->err_ours += (double)(yo[i] - x[i]) * (yo[i] - x[i]);
                st->err_ref += (double)(yr[i] - x[i]) * (yr[i] - x[i]);
            }
            for (int64_t b = 0; b < ne0 / DSRI_QK_K; b++)
                st->n_same += memcmp(q + b * bs, theirs + b * bs, bs) == 0;
            st->n_blocks += ne0 / DSRI_QK_K;
            st->n_values += ne0;
        }
        free(x);
        free(ones);
        free(yo);
        free(yr);
        free(q);
        st->n_tensors++;
    }
}

static void test_fixtures(const model_file *f32, const model_file *files, uint32_t type, const char *name)
{
    dsri_iq_lattice *lat = dsri_iq_lattice_new(type);
    fixture_stats st = {0};
    for (int f = 0; lat && f < N_FIXTURES; f++)
        if (files[f].g)
            compare_file(f32, &files[f], lat, fixtures[f].flat_imatrix, &st);
    dsri_iq_lattice_free(lat);
    const double rms_ours = st.n_values ? sqrt(st.err_ours / (double)st.n_values) : 0;
    const double rms_ref = st.n_values ? sqrt(st.err_ref / (double)st.n_values) : 0;
    printf("%-8s %2d tensors, %7lld values: RMS error ours %.6g, llama.cpp's %.6g (ratio %.4f); "
           "%lld of %lld blocks identical\n",
           name, st.n_tensors, (long long)st.n_values, rms_ours, rms_ref, rms_ref > 0 ? rms_ours / rms_ref : 0,
           (long long)st.n_same, (long long)st.n_blocks);
    CHECK(lat != NULL && st.n_tensors > 0 && st.bad == 0, "%s: %d tensors of the type, %d unusable", name,
          st.n_tensors, st.bad);
    CHECK(rms_ours <= rms_ref, "%s: RMS error %.6g worse than llama.cpp's %.6g", name, rms_ours, rms_ref);
    /* the same algorithm, operation for operation: the same blocks */
    CHECK(st.n_same == st.n_blocks, "%s: %lld of %lld blocks differ from llama.cpp's", name,
          (long long)(st.n_blocks - st.n_same), (long long)st.n_blocks);
}

/* ----------------------------------------------------------- properties */

static uint32_t rng_state = 12345u;
static float rng_gauss(void) /* roughly normal, mean 0, variance 1/2 */
{
    float s = 0;
    for (int i = 0; i < 6; i++) {
        rng_state = rng_state * 1664525u + 1013904223u;
        s += (float)(rng_state >> 8) / 16777216.0f - 0.5f;
    }
    return s;
}

static int is_iq1(uint32_t type) { return type == DSRI_TYPE_IQ1_S || type == DSRI_TYPE_IQ1_M; }

static void test_properties(uint32_t type, const char *name)
{
    enum { NB = 16, N = NB * DSRI_QK_K };
    static float x[N], x2[N], w[N], y[N], y2[N], y3[N];
    const size_t rs = dsri_row_size(type, N);
    uint8_t *q = malloc(rs), *q2 = malloc(rs);
    for (int i = 0; i < N; i++) {
        x[i] = rng_gauss() * (i % 97 == 0 ? 8.0f : 1.0f); /* some outliers */
        w[i] = 0.25f + (float)(i % 16) * 0.125f;          /* uneven importance, the same each row of 1024 */
    }
    dsri_iq_lattice *lat = dsri_iq_lattice_new(type);
    int rc = dsri_iq_lattice_quantize_row(lat, x, q, N, w);
    CHECK(rc == 0 && dsri_dequantize_row(type, q, y, N) == 0, "%s: quantize", name);

    /* the one-call paths give the same bytes, for one row and for 4 */
    rc = dsri_quantize_row_iq_lattice(type, x, q2, N, w);
    CHECK(rc == 0 && memcmp(q, q2, rs) == 0, "%s: one-call path differs (rc %d)", name, rc);
    memset(q2, 0, rs);
    rc = dsri_quantize_rows_iq_lattice(type, x, q2, 4, N / 4, w);
    CHECK(rc == 0 && memcmp(q, q2, rs) == 0, "%s: 4 rows in one call differ (rc %d)", name, rc);
    CHECK(dsri_quantize_rows_iq_lattice(type, x, q2, 0, N, w) == 0, "%s: 0 rows", name);
    CHECK(dsri_quantize_rows_iq_lattice(type, x, q2, -1, N, w) == -1, "%s: -1 rows", name);

    /* every operation commutes with scaling by 4: only the scales change */
    for (int i = 0; i < N; i++)
        x2[i] = 4 * x[i];
    dsri_iq_lattice_quantize_row(lat, x2, q2, N, w);
    dsri_dequantize_row(type, q2, y2, N);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += y2[i] != 4 * y[i];
    CHECK(bad == 0, "%s: quantizing 4x gives %d values that are not 4x", name, bad);

    /* the IQ2/IQ3 search sees only |x| and a sign pattern whose fix-up
     * depends on |x|: negating the input negates the result (IQ1's levels
     * carry a shift that breaks the symmetry) */
    if (!is_iq1(type)) {
        for (int i = 0; i < N; i++)
            x2[i] = -x[i];
        dsri_iq_lattice_quantize_row(lat, x2, q2, N, w);
        dsri_dequantize_row(type, q2, y2, N);
        bad = 0;
        for (int i = 0; i < N; i++)
            bad += y2[i] != -y[i];
        CHECK(bad == 0, "%s: quantizing -x gives %d values that are not the negated ones", name, bad);
    }

    /* Dequantized values lie on the lattice, so quantizing them again
     * should come close to reproducing them; not exactly, since ggml's
     * search stretches each super-block scale by a fudge factor (1.033 for
     * IQ3_S ...) and rounds sub-block scales. Measured: the second
     * quantization moves values by 14-24% of what the first did. */
    dsri_iq_lattice_quantize_row(lat, y, q2, N, w);
    dsri_dequantize_row(type, q2, y3, N);
    double e1 = 0, e2 = 0;
    for (int i = 0; i < N; i++) {
        e1 += (double)(y[i] - x[i]) * (y[i] - x[i]);
        e2 += (double)(y3[i] - y[i]) * (y3[i] - y[i]);
    }
    printf("%-8s requantized: RMS change %.4g after a first error of %.4g\n", name, sqrt(e2 / N), sqrt(e1 / N));
    CHECK(e1 > 0 && e2 < 0.3 * 0.3 * e1, "%s: requantizing moves values by %.4g (first error %.4g)", name,
          sqrt(e2 / N), sqrt(e1 / N));

    /* An all-zero row is all-zero bytes (decoding to zeros). A zero
     * sub-block among others cannot decode to zeros (the smallest
     * sub-block scale code is d, not 0), nor can one below ggml's
     * threshold (1e-8 ... 1e-15): the format's limits, not tested. */
    memset(x2, 0, sizeof x2);
    memset(q2, 0xA5, rs);
    rc = dsri_iq_lattice_quantize_row(lat, x2, q2, N, w);
    bad = 0;
    for (size_t i = 0; i < rs; i++)
        bad += q2[i] != 0;
    dsri_dequantize_row(type, q2, y2, N);
    for (int i = 0; i < N; i++)
        bad += y2[i] != 0;
    CHECK(rc == 0 && bad == 0, "%s: zero row gives %d non-zero bytes and values", name, bad);
    /* tiny and zero sub-blocks next to normal ones still quantize */
    for (int i = 0; i < 64; i++)
        x2[DSRI_QK_K + i] = x[i], x2[DSRI_QK_K + 64 + i] = 1e-12f * x[i];
    CHECK(dsri_iq_lattice_quantize_row(lat, x2, q2, N, w) == 0 && dsri_dequantize_row(type, q2, y2, N) == 0 &&
              fabsf(y2[DSRI_QK_K] - x[0]) < 0.5f * fabsf(x[0]) + 0.5f,
          "%s: a block of tiny and zero sub-blocks", name);

    /* without an importance matrix: refused where ggml asserts, else
     * quantized with ggml's fallback weights */
    const int needs = type == DSRI_TYPE_IQ2_XXS || type == DSRI_TYPE_IQ2_XS || type == DSRI_TYPE_IQ1_S;
    rc = dsri_iq_lattice_quantize_row(lat, x, q2, N, NULL);
    CHECK(rc == (needs ? DSRI_IQ_ERR_NEEDS_IMATRIX : 0), "%s: no imatrix: rc %d", name, rc);
    rc = dsri_quantize_row_iq_lattice(type, x, q2, N, NULL);
    CHECK(rc == (needs ? DSRI_IQ_ERR_NEEDS_IMATRIX : 0), "%s: no imatrix, one call: rc %d", name, rc);

    /* bad arguments */
    CHECK(dsri_iq_lattice_quantize_row(lat, x, q2, 100, w) == -1, "%s: n not a multiple of 256", name);
    CHECK(dsri_iq_lattice_quantize_row(lat, x, q2, 0, w) == -1, "%s: n = 0", name);
    CHECK(dsri_iq_lattice_quantize_row(lat, NULL, q2, N, w) == -1, "%s: NULL src", name);
    CHECK(dsri_iq_lattice_quantize_row(lat, x, NULL, N, w) == -1, "%s: NULL dst", name);
    CHECK(dsri_iq_lattice_quantize_row(NULL, x, q2, N, w) == -1, "%s: NULL lattice", name);
    dsri_iq_lattice_free(lat);
    free(q);
    free(q2);
}

static void test_api(void)
{
    float x[DSRI_QK_K] = {0};
    uint8_t q[256];
    CHECK(dsri_iq_lattice_new(DSRI_TYPE_Q4_0) == NULL, "a lattice for Q4_0");
    CHECK(dsri_iq_lattice_new(DSRI_TYPE_IQ4_XS) == NULL, "a lattice for IQ4_XS");
    CHECK(dsri_quantize_row_iq_lattice(DSRI_TYPE_Q4_0, x, q, DSRI_QK_K, NULL) == -1, "Q4_0 accepted");
    CHECK(dsri_quantize_row_iq_lattice(DSRI_TYPE_IQ4_NL, x, q, DSRI_QK_K, NULL) == -1, "IQ4_NL accepted");
    dsri_iq_lattice_free(NULL);
}

/* Allocation failure injection (builds with -Dalloc_failure_injection=true):
 * each allocation of building a lattice failing in turn gives
 * DSRI_IQ_ERR_NO_MEMORY, everything freed (LeakSanitizer checks that). */
static void test_alloc_failures(uint32_t type, const char *name)
{
    float x[DSRI_QK_K];
    uint8_t want[110], got[110]; /* the largest lattice block: IQ3_S's */
    for (int i = 0; i < DSRI_QK_K; i++)
        x[i] = rng_gauss();
    dsri_alloc_fail_after(0);
    const int rc = dsri_quantize_row_iq_lattice(type, x, want, DSRI_QK_K, NULL);
    const long total = dsri_alloc_fail_after(0);
    CHECK(rc == 0, "%s row: rc %d", name, rc);
    if (total == 0) {
        printf("allocation failure injection not compiled in: its checks run in the builds that have it\n");
        return;
    }
    int bad = 0;
    for (long k = 1; k <= total; k++) {
        dsri_alloc_fail_after(k);
        const int r = dsri_quantize_row_iq_lattice(type, x, got, DSRI_QK_K, NULL);
        dsri_alloc_fail_after(0);
        bad += r == 0 ? memcmp(got, want, dsri_row_size(type, DSRI_QK_K)) != 0 : r != DSRI_IQ_ERR_NO_MEMORY;
    }
    printf("%s lattice: %ld allocations failed in turn\n", name, total);
    CHECK(bad == 0, "%s: %d injected allocation failures not reported as DSRI_IQ_ERR_NO_MEMORY", name, bad);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    test_api();
    test_alloc_failures(DSRI_TYPE_IQ3_S, "iq3_s");
    test_alloc_failures(DSRI_TYPE_IQ1_M, "iq1_m"); /* its lists outgrow the first allocation */
    for (int i = 0; i < N_TYPES; i++) {
        if (types[i].type != DSRI_TYPE_IQ1_M) /* IQ1_S's grid: compared below */
            test_tables(types[i].type, types[i].name);
        test_properties(types[i].type, types[i].name);
    }
    dsri_iq_lattice *s = dsri_iq_lattice_new(DSRI_TYPE_IQ1_S), *m = dsri_iq_lattice_new(DSRI_TYPE_IQ1_M);
    CHECK(s && m && s->n_neighbours == m->n_neighbours &&
              memcmp(s->map, m->map, sizeof(int32_t) << 16) == 0 &&
              memcmp(s->neighbours, m->neighbours, sizeof(uint16_t) * (size_t)s->n_neighbours) == 0,
          "IQ1_M's neighbour tables are not IQ1_S's");
    dsri_iq_lattice_free(s);
    dsri_iq_lattice_free(m);
    model_file f32, files[N_FIXTURES];
    CHECK(open_model(&f32, dir, "f32") == 0, "f32 model");
    for (int f = 0; f < N_FIXTURES; f++)
        CHECK(open_model(&files[f], dir, fixtures[f].name) == 0, "fixture %s", fixtures[f].name);
    if (f32.g)
        for (int i = 0; i < N_TYPES; i++)
            test_fixtures(&f32, files, types[i].type, types[i].name);
    for (int f = 0; f < N_FIXTURES; f++)
        if (files[f].g)
            close_model(&files[f]);
    if (f32.g)
        close_model(&f32);
    return check_summary("test_quant_iq");
}
