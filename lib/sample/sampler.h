/* Sampler internals other modules need (internal). */
#ifndef DSRI_SAMPLER_H
#define DSRI_SAMPLER_H

#include "dsr1.h"

/* The vocabulary size the sampler was made for. */
int32_t dsri_sampler_n_vocab(const dsr1_sampler *smp);

/* What a generation asks of one sampling step beyond the token. */
typedef struct dsri_sample_opts {
    const uint64_t *allow;   /* NULL, or n_vocab bits: tokens the grammar allows */
    int want_logprobs;       /* fill logprob and top */
    float *logprob;          /* the chosen token's log-probability (may be NULL) */
    dsr1_token_logprob *top; /* n_top best, best first */
    int32_t n_top;
    dsr1_token forced;       /* >= 0: the host chose this token; only log-probabilities are computed */
} dsri_sample_opts;

/* dsr1_sampler_sample with the options (o may be NULL), without the busy
 * guard. */
dsr1_status dsri_sampler_sample_ex(dsr1_sampler *smp, const float *logits, int32_t n_vocab, const dsri_sample_opts *o,
                                   dsr1_token *out);

/* Candidate visits of the last dsr1_sampler_sample's top-k and top-p (0
 * when neither ran): tests check that it stays linear in n_vocab for any
 * logits. */
int64_t dsri_sampler_last_work(const dsr1_sampler *smp);

/* dsri_sampler_sample_ex above and this are the unguarded bodies of the
 * public calls, for a generation step that holds the sampler
 * (core/handle.h). */
void dsri_sampler_accept(dsr1_sampler *smp, dsr1_token token);

/* Bytes of the sampler's dsr1_sampler_state_save blob. */
size_t dsri_sampler_state_size(const dsr1_sampler *smp);

/* The sampler's busy flag, for dsri_borrow. */
struct dsri_handle *dsri_sampler_handle(dsr1_sampler *smp);

#endif
