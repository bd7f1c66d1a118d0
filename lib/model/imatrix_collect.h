/*
 * Collecting an importance matrix (internal; dsr1 imatrix): every product
 * of a layer's weight matrix (blk.*) with activations that a context's host
 * runs compute adds the squares of its input rows to that weight's entry of
 * a dsri_imatrix (lib/quant/imatrix.h), per expert for the 3-D expert
 * tensors, as llama-imatrix does. It watches through the host backends'
 * matmul observer, so the context must run on the CPU (no device layers).
 */
#ifndef DSRI_IMATRIX_COLLECT_H
#define DSRI_IMATRIX_COLLECT_H

#include "dsr1.h"
#include "quant/imatrix.h"

typedef struct dsri_imatrix_collector dsri_imatrix_collector;

/* Start collecting into m what ctx evaluates (ctx must outlive the
 * collector; DSR1_ERR_UNSUPPORTED when layers run on a device). */
dsr1_status dsri_imatrix_collect_start(dsr1_context *ctx, dsri_imatrix *m, dsri_imatrix_collector **out);
/* The first failure since the start (an allocation), DSR1_OK if none. */
dsr1_status dsri_imatrix_collect_status(const dsri_imatrix_collector *c);
/* Stop watching and free the collector (NULL: nothing). */
void dsri_imatrix_collect_stop(dsri_imatrix_collector *c);

/* Whether the model has MLA's split attn_k_b / attn_v_b. llama.cpp always
 * runs them absorbed (k_b on the query's nope part, v_b on each head's
 * attention-weighted latent), and those are the inputs its imatrix holds;
 * deepseek2.c decompresses the cache instead for a batch of more than two
 * rows that holds all its keys, so such models are evaluated in a way that
 * never makes one (dsr1 imatrix: the first token alone, then batches of
 * n_ctx - 2). */
int dsri_imatrix_split_mla(const dsr1_model *model);

#endif
