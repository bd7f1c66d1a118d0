/*
 * The IQ weight types' lattice grids and sign table (internal), generated
 * into iq_tables.c by gen_iq_tables.py, which says how each is defined.
 * Shared by the dequantizers (dequant_iq.c), the SIMD kernels and the
 * quantizers.
 *
 * A grid entry packs a short vector of magnitudes, element i in byte i (the
 * lowest first): 8 bytes for the IQ1/IQ2 grids, 4 for the IQ3 grids. The
 * IQ1 grid's bytes are int8 -1, 0, +1.
 */
#ifndef DSRI_IQ_TABLES_H
#define DSRI_IQ_TABLES_H

#include <stdint.h>

extern const uint64_t dsri_iq2xxs_grid[256];
extern const uint64_t dsri_iq2xs_grid[512];
extern const uint64_t dsri_iq2s_grid[1024];
extern const uint64_t dsri_iq1s_grid[2048]; /* IQ1_S and IQ1_M */
extern const uint32_t dsri_iq3xxs_grid[256];
extern const uint32_t dsri_iq3s_grid[512];

/* For 7 sign bits i (bit j set: element j negative), the 8 sign bits with
 * element 7's making the count of negatives even (the IQ2/IQ3 types store 7
 * bits per group of 8). */
extern const uint8_t dsri_ksigns_iq2xs[128];

/* The shift added to every IQ1_S / IQ1_M level: +-1/8 (a per-group sign
 * bit chooses). */
#define DSRI_IQ1_DELTA 0.125f

#endif
