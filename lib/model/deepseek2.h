/*
 * DeepSeek-V3 / R1 extras (internal): the multi-token-prediction (MTP) head
 * as a draft model for self-speculative decoding.
 *
 * The MTP block (DeepSeek-V3 report, section 2.2) combines the main model's
 * final hidden state h_i at position i (before the output norm) with the
 * embedding of the token t_{i+1} chosen for position i+1 (eq. 21, embedding
 * first as the released weights expect), runs one transformer block and the
 * shared output head: logits for t_{i+2}, the draft. It has its own
 * attention and so its own cache layer (n_layer, counted by
 * dsr1_context_kv_bytes_per_token): entry i is the block run on
 * (h_i, t_{i+1}), so the block attends over every earlier position like
 * the main model does.
 *
 * What the context keeps for it (model/context.h): the hidden states of the
 * rows of the last forward pass (ctx->hidden), and which MTP cache entries
 * are current (ctx->mtp_n_past; dsr1_eval / dsr1_context_truncate /
 * dsr1_context_reset drop the entries that a rewind invalidates, entry i
 * depending on the tokens up to i+1).
 *
 * Speculative decoding (lib/generate/generation.c, speculative_mtp):
 *   1. The main model evaluated position p; t_{p+1} is sampled.
 *      dsri_deepseek2_mtp_draft(ctx, t_{p+1}, &d) brings the MTP cache up
 *      to date (every position whose hidden state it still has, normally
 *      one or two rows) and drafts d = argmax of the logits for p+2.
 *   2. dsr1_eval([t_{p+1}, d], pos p+1, DSR1_EVAL_LOGITS_ALL). Row 0 gives
 *      t_{p+2}, sampled exactly as plain decoding would sample it. If
 *      t_{p+2} == d, row 1 holds the main model's logits for p+3 (d is in
 *      the cache): one more token without another evaluation. Otherwise
 *      d's entry is dropped (dsr1_context_truncate).
 *   Batches of at most 2 rows take the same (absorbed) attention path as
 *   single tokens and every backend op computes rows independently, so the
 *   logits are bit for bit those of one-token decoding and the generated
 *   tokens are exactly those of plain decoding, with any sampler.
 */
#ifndef DSRI_DEEPSEEK2_H
#define DSRI_DEEPSEEK2_H

#include "dsr1.h"

/* 1 when the model is deepseek2 with an MTP block loaded. */
int dsri_deepseek2_has_mtp(const dsr1_model *m);

/* Low level: run the MTP block on n rows: hidden (n x n_embd), next_tokens
 * (the token following each row's position), consecutive positions pos
 * (written to the MTP cache layer); writes n x n_vocab logits. The context
 * then counts the MTP entries from pos[0] on as stale. */
dsr1_status dsri_deepseek2_mtp(dsr1_context *ctx, const float *hidden, const dsr1_token *next_tokens,
                               const int32_t *pos, int n, float *logits);

/* The step used by speculative decoding. next: the token chosen for
 * position n_past (not evaluated yet). Runs the MTP block on the rows
 * [first stale entry, n_past - 1] whose hidden states the context still
 * holds (their next tokens from the cache, the last one `next`), so that
 * the MTP cache is current up to n_past. draft (may be NULL: only update
 * the cache) receives the greedy draft for position n_past + 1, or -1 when
 * the hidden state of position n_past - 1 is not available; draft_p (may be
 * NULL) its probability under the head's softmax, the head's own estimate
 * of how likely the main model is to agree. Entries older than the held
 * hidden states that are stale (the cache was filled without the MTP head)
 * stay stale: drafts get worse, never wrong (the generation API avoids it
 * by evaluating such a prefix again). */
dsr1_status dsri_deepseek2_mtp_draft(dsr1_context *ctx, dsr1_token next, dsr1_token *draft, float *draft_p);

#endif
