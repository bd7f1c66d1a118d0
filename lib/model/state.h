/*
 * Saved context state (internal): the blob format of dsr1_context_state_save
 * and dsr1_chat_state_save, in two phases for loading: parse validates the
 * whole blob against a context without changing anything, apply then
 * writes it into the context (and sampler), so a caller with state of its
 * own (a chat's messages) can prepare it in between and stay all or nothing.
 *
 * Callers hold the context and sampler (dsri_enter / dsri_borrow).
 */
#ifndef DSRI_STATE_H
#define DSRI_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "dsr1.h"

/* One chat message as the blob carries it (role: "system", "user",
 * "assistant" or "tool"; content: len bytes, no NUL among them). */
typedef struct dsri_state_msg {
    const char *role;
    const char *content;
    size_t len;
} dsri_state_msg;

/* A blob that parsed: where its parts lie. */
typedef struct dsri_state_view {
    const uint8_t *data;
    size_t size;
    uint32_t flags;      /* DSRI_STATE_HAS_* */
    int32_t n_past;
    size_t off_tokens, off_kv, off_logits, off_sampler, sampler_len, off_msgs;
    int32_t n_msgs;
} dsri_state_view;

#define DSRI_STATE_HAS_LOGITS 1u
#define DSRI_STATE_HAS_SAMPLER 2u
#define DSRI_STATE_HAS_CHAT 4u

/* Write the state of ctx (and smp, and msgs[0..n_msgs) when msgs is not
 * NULL: a chat's, possibly none) into buf; *n_bytes gets the exact size
 * (DSR1_ERR_BUFFER_TOO_SMALL when buf_size is less). fn names the public
 * call in messages. */
dsr1_status dsri_state_save(dsr1_context *ctx, const dsr1_sampler *smp, const dsri_state_msg *msgs, int32_t n_msgs,
                            void *buf, size_t buf_size, size_t *n_bytes, const char *fn);

/* Validate data[0..size) for ctx (and smp when not NULL); changes nothing. */
dsr1_status dsri_state_parse(const dsr1_context *ctx, const dsr1_sampler *smp, const void *data, size_t size,
                             dsri_state_view *v, const char *fn);

/* Message after byte offset *off of a parsed view's chat part (start with
 * *off = v->off_msgs; n_msgs calls in all). */
void dsri_state_next_msg(const dsri_state_view *v, size_t *off, dsri_state_msg *out);

/* Load a parsed blob: the sampler part into smp (when not NULL) first,
 * then the cache. A failure of the sampler changes nothing; a failure of
 * the device copy leaves the context empty. */
dsr1_status dsri_state_apply(dsr1_context *ctx, dsr1_sampler *smp, const dsri_state_view *v, const char *fn);

/* A whole file into memory (*data freed by the caller with dsri_free), and
 * a buffer into a file (written to "<path>.tmp" and renamed over path, so
 * a failed save never destroys the previous one). DSR1_ERR_IO naming the
 * file and the system's reason. */
dsr1_status dsri_file_read_all(const char *path, void **data, size_t *size, const char *fn);
dsr1_status dsri_file_write_all(const char *path, const void *data, size_t size, const char *fn);

#endif
