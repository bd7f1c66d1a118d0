/*
 * libdsr1 - the lattice quantizers' shared machinery (internal to lib/quant).
 *
 * The IQ1/IQ2/IQ3 types store each group of 8 (IQ1, IQ2) or 4 (IQ3) weights
 * as one entry of a grid: a sparse subset of the vectors of small levels
 * (3 levels per element for IQ1/IQ2, 8 for IQ3). Quantizing a group means
 * rounding it to levels and, when that vector is not on the grid, picking
 * the best of its grid neighbours. ggml's quantizers (iq2xs_init_impl,
 * iq3xs_init_impl in ggml-quants.c) build, for every vector of levels that
 * is not on the grid, the list of grid entries at the nwant smallest
 * distinct squared distances from it, ordered by (distance, grid index).
 * A dsri_iq_lattice holds those lists for one type, built from the grids in
 * iq_tables.c; it is read-only once built, so threads may share one.
 *
 * Codes: a vector of levels l[i] packs as sum l[i] << (bits * i), bits 2
 * (8 elements) or 3 (4 elements), as ggml's kmap index.
 */
#ifndef DSRI_QUANT_IQ_LATTICE_H
#define DSRI_QUANT_IQ_LATTICE_H

#include <stdint.h>

#include "quant_internal.h"

struct dsri_iq_lattice {
    uint32_t type;       /* the ggml type it was built for */
    int grid_size;       /* entries */
    int dim;             /* elements per entry: 8 or 4 */
    int bits;            /* bits per level in a code: 2 or 3 */
    int n_levels;        /* levels per element: 3 or 8 */
    int nwant;           /* distinct distances whose entries are neighbours */
    uint8_t *levels;     /* grid_size * dim levels, entry-major */
    int32_t *map;        /* 1 << (bits * dim) codes: >= 0 the grid index of an
                          * entry with that code, else -(o + 1) with o the
                          * offset of its neighbour list in neighbours */
    uint16_t *neighbours; /* lists: a count n, then n grid indices; the list
                           * at offset 0 is empty (codes with a level out of
                           * range, never produced by the quantizers) */
    int64_t n_neighbours; /* uint16 entries in neighbours */
};

/* The grid entry whose levels, mapped through value[], are closest to
 * xval[0..dim) * 1/scale in the weighted sense: the entry of the code's
 * neighbour list minimising sum w[i] * (scale * value[l[i]] - xval[i])^2, the
 * first in list order on ties (ggml's iq*_find_best_neighbour*). An empty
 * list, or one where every distance is NaN, searches the whole grid. Writes
 * the entry's levels to L and returns its index. */
int dsri_iq_best_neighbour(const dsri_iq_lattice *lat, uint32_t code, const float *xval, const float *w,
                           float scale, const float *value, int8_t *L);

/* The types' row quantizers, n a multiple of 256; qw: n importance weights
 * or NULL where the type has a fallback (the caller checked). */
void dsri_iq_quantize_iq23(const dsri_iq_lattice *lat, const float *x, uint8_t *y, int64_t n, const float *qw);
void dsri_iq_quantize_iq1(const dsri_iq_lattice *lat, const float *x, uint8_t *y, int64_t n, const float *qw);

#endif
