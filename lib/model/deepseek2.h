/*
 * DeepSeek-V3 / R1 extras (internal): the multi-token-prediction (MTP) head
 * as a draft model for self-speculative decoding.
 *
 * Usage (one sequence, greedy draft of one token):
 *   1. dsr1_eval(ctx, tokens, n, pos, flags): the main model; afterwards
 *      dsri_deepseek2_hidden(ctx) holds the final hidden states (before the
 *      output norm) of the last internal chunk, n_chunk x n_embd floats,
 *      row t for position pos_chunk[t]. Valid until the next call on ctx.
 *   2. Having chosen the next token t_{i+1} after position i, call
 *      dsri_deepseek2_mtp(ctx, hidden_i, &t_{i+1}, &i, 1, logits): the MTP
 *      block combines h_i with the embedding of t_{i+1} (DeepSeek-V3 report
 *      eq. 21, embedding first as the released weights expect) and returns
 *      logits for t_{i+2}: the draft.
 *   3. Verify the draft by evaluating [t_{i+1}, draft] in one dsr1_eval with
 *      DSR1_EVAL_LOGITS_ALL and keep it when the main model agrees
 *      (dsr1_context_truncate otherwise).
 * The MTP block has its own attention and so its own cache layer
 * (n_layer, counted by dsr1_context_kv_bytes_per_token); it sees the
 * positions it was run on. For the best acceptance run it over every
 * position (rows may be a batch: hidden n x n_embd, consecutive positions),
 * e.g. over the prompt with its tokens shifted by one.
 */
#ifndef DSRI_DEEPSEEK2_H
#define DSRI_DEEPSEEK2_H

#include "dsr1.h"

/* 1 when the model is deepseek2 with an MTP block loaded. */
int dsri_deepseek2_has_mtp(const dsr1_model *m);

/* Final hidden states the last forward pass left (see above). */
const float *dsri_deepseek2_hidden(const dsr1_context *ctx);

/* Run the MTP block on n rows: hidden (n x n_embd, may be
 * dsri_deepseek2_hidden(ctx)), next_tokens (the token following each row's
 * position), consecutive positions pos; writes n x n_vocab logits.
 * Invalidates dsri_deepseek2_hidden(). */
dsr1_status dsri_deepseek2_mtp(dsr1_context *ctx, const float *hidden, const dsr1_token *next_tokens,
                               const int32_t *pos, int n, float *logits);

#endif
