/*
 * What every single-thread handle (context, sampler, generation, chat,
 * decoder) embeds: its last call's error message, and a busy flag that
 * refuses a call while another call on the same handle is running (from a
 * callback of that call, or from another thread against the rules), so
 * misuse is DSR1_ERR_STATE instead of corrupted state.
 *
 * A public function on a handle is written as
 *
 *     dsri_call call;
 *     dsr1_status st = dsri_enter(&h->handle, &call, "dsr1_eval");
 *     if (st) return st;
 *     st = ...the work...;
 *     return dsri_leave(&h->handle, &call, st);
 *
 * A refused call records its message only in the thread-local
 * dsr1_last_error(): the handle's message belongs to the running call.
 */
#ifndef DSRI_HANDLE_H
#define DSRI_HANDLE_H

#include <stdatomic.h>
#include <stdint.h>

#include "dsr1.h"

#define DSRI_MSG_CAP 512

typedef struct dsri_handle {
    atomic_int busy;
    char message[DSRI_MSG_CAP]; /* "" after a successful call */
} dsri_handle;

typedef struct dsri_call {
    const char *fn;
    uint32_t mark; /* dsri_error_mark() at entry */
} dsri_call;

/* Zero a freshly allocated handle state (calloc'ed memory already is). */
void dsri_handle_init(dsri_handle *h);

/* Mark the handle busy for fn; DSR1_ERR_STATE when it already is. */
dsr1_status dsri_enter(dsri_handle *h, dsri_call *call, const char *fn);

/* Record the outcome of the call as the handle's message ("" for DSR1_OK
 * and DSR1_ERR_BUFFER_TOO_SMALL) and release the handle; returns st. */
dsr1_status dsri_leave(dsri_handle *h, const dsri_call *call, dsr1_status st);

/* Hold a handle busy for the duration of a call on another handle that
 * borrows it (a generation step holds its context and sampler), without
 * touching its message. DSR1_ERR_STATE when it is busy already. */
dsr1_status dsri_borrow(dsri_handle *h, const char *fn);
void dsri_unborrow(dsri_handle *h);

/* 1 when a call on the handle is running (void functions such as the free
 * functions refuse to act then and record a thread-local message). */
int dsri_handle_busy(dsri_handle *h, const char *fn);

/* The message of the handle's last call; "" for NULL. */
const char *dsri_handle_message(const dsri_handle *h);

#endif
