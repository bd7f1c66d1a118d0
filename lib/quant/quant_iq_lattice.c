/*
 * libdsr1 - quantizers for the lattice weight types IQ1_S, IQ1_M, IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S: the per-type neighbour tables
 * (dsri_iq_lattice, see quant_iq_lattice.h), the neighbour search and the
 * entry points. The searches themselves are in quant_iq23.c and
 * quant_iq1.c; they follow ggml's quantize_row_iq*_impl (ggml-quants.c)
 * operation for operation, so that the same input and importance weights
 * give the blocks llama.cpp writes.
 */
#include <float.h>

#include "core/alloc.h"
#include "quant/iq_tables.h"
#include "quant_iq_lattice.h"

/* What defines one type's lattice: its grid (iq_tables.c) and how many
 * distinct distances ggml's init takes neighbours from. */
typedef struct lattice_desc {
    uint32_t type;
    const uint64_t *grid8; /* 8-element grids, or */
    const uint32_t *grid4; /* 4-element grids */
    int grid_size;
    int nwant;
} lattice_desc;

static const lattice_desc descs[] = {
    {DSRI_TYPE_IQ2_XXS, dsri_iq2xxs_grid, NULL, 256, 2},
    {DSRI_TYPE_IQ2_XS, dsri_iq2xs_grid, NULL, 512, 2},
    {DSRI_TYPE_IQ2_S, dsri_iq2s_grid, NULL, 1024, 1},
    {DSRI_TYPE_IQ1_S, dsri_iq1s_grid, NULL, 2048, 3},
    {DSRI_TYPE_IQ1_M, dsri_iq1s_grid, NULL, 2048, 3},
    {DSRI_TYPE_IQ3_XXS, NULL, dsri_iq3xxs_grid, 256, 2},
    {DSRI_TYPE_IQ3_S, NULL, dsri_iq3s_grid, 512, 3},
};

static const lattice_desc *desc_of(uint32_t type)
{
    for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++)
        if (descs[i].type == type)
            return &descs[i];
    return NULL;
}

/* The level a grid byte stands for (the inverse of gen_iq_tables.py's
 * level tables); -1 if it is none. */
static int level_of(uint32_t type, uint8_t byte)
{
    static const uint8_t iq2[3] = {8, 25, 43};
    static const uint8_t iq3xxs[8] = {4, 12, 20, 28, 36, 44, 52, 62};
    switch (type) {
    case DSRI_TYPE_IQ1_S:
    case DSRI_TYPE_IQ1_M: return (int8_t)byte >= -1 && (int8_t)byte <= 1 ? (int8_t)byte + 1 : -1;
    case DSRI_TYPE_IQ3_S: return byte & 1 && byte <= 15 ? byte / 2 : -1;
    case DSRI_TYPE_IQ3_XXS:
        for (int l = 0; l < 8; l++)
            if (iq3xxs[l] == byte)
                return l;
        return -1;
    default:
        for (int l = 0; l < 3; l++)
            if (iq2[l] == byte)
                return l;
        return -1;
    }
}

void dsri_iq_lattice_free(dsri_iq_lattice *lat)
{
    if (!lat)
        return;
    dsri_free(lat->levels);
    dsri_free(lat->map);
    dsri_free(lat->neighbours);
    dsri_free(lat);
}

/* Appends the neighbour list of every off-grid code whose levels are all in
 * range: the entries at the nwant smallest distinct squared distances, by
 * distance then index. Distances are taken between levels; ggml's between
 * the odd values 2l+1, four times as large, which orders them the same. */
static int build_neighbours(dsri_iq_lattice *lat)
{
    const int n_codes = 1 << (lat->bits * lat->dim), mask = (1 << lat->bits) - 1;
    int *d2 = dsri_malloc((size_t)lat->grid_size * sizeof *d2);
    int64_t cap = 1 << 16, n = 1;
    uint16_t *out = dsri_malloc((size_t)cap * sizeof *out);
    if (!d2 || !out) {
        dsri_free(d2);
        dsri_free(out);
        return -1;
    }
    out[0] = 0;
    for (int code = 0; code < n_codes; code++) {
        int p[8], in_range = 1;
        for (int i = 0; i < lat->dim; i++) {
            p[i] = (code >> (lat->bits * i)) & mask;
            in_range &= p[i] < lat->n_levels;
        }
        if (lat->map[code] >= 0 || !in_range)
            continue;
        int lv[3], nlv = 0; /* the smallest distinct distances, ascending */
        for (int j = 0; j < lat->grid_size; j++) {
            const uint8_t *g = lat->levels + (size_t)j * lat->dim;
            int d = 0;
            for (int i = 0; i < lat->dim; i++)
                d += (g[i] - p[i]) * (g[i] - p[i]);
            d2[j] = d;
            int k = nlv;
            while (k > 0 && lv[k - 1] > d)
                k--;
            if ((k > 0 && lv[k - 1] == d) || k == lat->nwant)
                continue;
            if (nlv < lat->nwant)
                nlv++;
            for (int m = nlv - 1; m > k; m--)
                lv[m] = lv[m - 1];
            lv[k] = d;
        }
        int count = 0;
        for (int j = 0; j < lat->grid_size; j++)
            count += d2[j] <= lv[nlv - 1];
        if (n + 1 + count > cap) {
            cap = 2 * cap + count + 1;
            uint16_t *grown = dsri_realloc(out, (size_t)cap * sizeof *out);
            if (!grown) {
                dsri_free(d2);
                dsri_free(out);
                return -1;
            }
            out = grown;
        }
        lat->map[code] = (int32_t)(-(n + 1));
        out[n++] = (uint16_t)count;
        for (int k = 0; k < nlv; k++)
            for (int j = 0; j < lat->grid_size; j++)
                if (d2[j] == lv[k])
                    out[n++] = (uint16_t)j;
    }
    dsri_free(d2);
    lat->neighbours = out;
    lat->n_neighbours = n;
    return 0;
}

dsri_iq_lattice *dsri_iq_lattice_new(uint32_t type)
{
    const lattice_desc *d = desc_of(type);
    if (!d)
        return NULL;
    dsri_iq_lattice *lat = dsri_calloc(1, sizeof *lat);
    if (!lat)
        return NULL;
    lat->type = type;
    lat->grid_size = d->grid_size;
    lat->dim = d->grid8 ? 8 : 4;
    lat->bits = d->grid8 ? 2 : 3;
    lat->n_levels = d->grid8 ? 3 : 8;
    lat->nwant = d->nwant;
    const int n_codes = 1 << (lat->bits * lat->dim);
    lat->levels = dsri_malloc((size_t)lat->grid_size * lat->dim);
    lat->map = dsri_malloc((size_t)n_codes * sizeof *lat->map);
    if (!lat->levels || !lat->map) {
        dsri_iq_lattice_free(lat);
        return NULL;
    }
    for (int c = 0; c < n_codes; c++)
        lat->map[c] = -1; /* the empty list at offset 0 */
    for (int j = 0; j < lat->grid_size; j++) {
        const uint64_t v = d->grid8 ? d->grid8[j] : d->grid4[j];
        int code = 0;
        for (int i = 0; i < lat->dim; i++) {
            const int l = level_of(type, (uint8_t)(v >> (8 * i)));
            lat->levels[j * lat->dim + i] = (uint8_t)(l < 0 ? 0 : l); /* l < 0: the table test fails */
            code |= (l < 0 ? 0 : l) << (lat->bits * i);
        }
        lat->map[code] = j;
    }
    if (build_neighbours(lat) != 0) {
        dsri_iq_lattice_free(lat);
        return NULL;
    }
    return lat;
}

/* weighted squared distance of grid entry j, scaled, to xval */
static float entry_d2(const dsri_iq_lattice *lat, int j, const float *xval, const float *w, float scale,
                      const float *value)
{
    const uint8_t *g = lat->levels + (size_t)j * lat->dim;
    float d2 = 0;
    for (int i = 0; i < lat->dim; i++) {
        const float diff = scale * value[g[i]] - xval[i];
        d2 += w[i] * diff * diff;
    }
    return d2;
}

int dsri_iq_best_neighbour(const dsri_iq_lattice *lat, uint32_t code, const float *xval, const float *w,
                           float scale, const float *value, int8_t *L)
{
    const uint16_t *list = lat->neighbours + (-(int64_t)lat->map[code] - 1);
    float best = FLT_MAX;
    int index = -1;
    for (int k = 1; k <= list[0]; k++) {
        const float d2 = entry_d2(lat, list[k], xval, w, scale, value);
        if (d2 < best) {
            best = d2;
            index = list[k];
        }
    }
    for (int j = 0; index < 0 && j < lat->grid_size; j++) {
        const float d2 = entry_d2(lat, j, xval, w, scale, value);
        if (d2 < best) {
            best = d2;
            index = j;
        }
    }
    if (index < 0) /* every distance NaN: any entry will do */
        index = list[0] ? list[1] : 0;
    for (int i = 0; i < lat->dim; i++)
        L[i] = (int8_t)lat->levels[(size_t)index * lat->dim + i];
    return index;
}

/* ggml asserts that these get importance weights; the others fall back to
 * weights made from the values themselves. */
static int needs_imatrix(uint32_t type)
{
    return type == DSRI_TYPE_IQ2_XXS || type == DSRI_TYPE_IQ2_XS || type == DSRI_TYPE_IQ1_S;
}

static int check_args(uint32_t type, const float *src, const void *dst, int64_t n, const float *imatrix)
{
    if (!desc_of(type) || n <= 0 || n % DSRI_QK_K != 0 || !src || !dst)
        return -1;
    if (!imatrix && needs_imatrix(type))
        return DSRI_IQ_ERR_NEEDS_IMATRIX;
    return 0;
}

int dsri_iq_lattice_quantize_row(const dsri_iq_lattice *lat, const float *src, void *dst, int64_t n_per_row,
                                 const float *imatrix)
{
    if (!lat)
        return -1;
    const int rc = check_args(lat->type, src, dst, n_per_row, imatrix);
    if (rc != 0)
        return rc;
    if (lat->type == DSRI_TYPE_IQ1_S || lat->type == DSRI_TYPE_IQ1_M)
        dsri_iq_quantize_iq1(lat, src, (uint8_t *)dst, n_per_row, imatrix);
    else
        dsri_iq_quantize_iq23(lat, src, (uint8_t *)dst, n_per_row, imatrix);
    return 0;
}

int dsri_quantize_rows_iq_lattice(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                                  const float *imatrix)
{
    const int rc = nrows < 0 ? -1 : check_args(type, src, dst, n_per_row, imatrix);
    if (rc != 0 || nrows == 0)
        return rc;
    dsri_iq_lattice *lat = dsri_iq_lattice_new(type);
    if (!lat)
        return DSRI_IQ_ERR_NO_MEMORY;
    const size_t row_bytes = dsri_row_size(type, n_per_row);
    for (int64_t r = 0; r < nrows; r++)
        dsri_iq_lattice_quantize_row(lat, src + r * n_per_row, (uint8_t *)dst + (size_t)r * row_bytes, n_per_row,
                                     imatrix);
    dsri_iq_lattice_free(lat);
    return 0;
}

int dsri_quantize_row_iq_lattice(uint32_t type, const float *src, void *dst, int64_t n_per_row,
                                 const float *imatrix)
{
    return dsri_quantize_rows_iq_lattice(type, src, dst, 1, n_per_row, imatrix);
}
