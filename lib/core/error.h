/*
 * Error reporting (internal).
 *
 * A failing call records a message in a thread-local buffer and returns its
 * status; dsr1_last_error() reads it back on the same thread. Thread-local,
 * so two threads never see each other's errors. Handles used by one thread
 * at a time also keep a copy of their last call's message (core/handle.h).
 *
 * DSR1_ERR_BUFFER_TOO_SMALL is not a failure (it answers a size query):
 * dsri_error() does not record a message for it.
 */
#ifndef DSRI_ERROR_H
#define DSRI_ERROR_H

#include <stdint.h>

#include "dsr1.h"

#if defined(__GNUC__) || defined(__clang__)
#define DSRI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DSRI_PRINTF(a, b)
#endif

/* Record "fmt..." as this thread's last error and return status, so callers
 * can write: return dsri_error(DSR1_ERR_FORMAT, "tensor '%s': ...", name); */
dsr1_status dsri_error(dsr1_status status, const char *fmt, ...) DSRI_PRINTF(2, 3);

/* Clear this thread's last error. */
void dsri_error_clear(void);

/* A counter of the messages recorded on this thread: a call that compares
 * it before and after knows whether its failure recorded a message. */
uint32_t dsri_error_mark(void);

/* This thread's message and counter, kept around a call into the host (a
 * log, progress, abort, event or step callback): the callback may call the
 * library, and its own failures must not replace the message of the call
 * that ran it (a failed load logging its error, a cancelled step sending
 * DONE), so that the handle's message and dsr1_last_error() describe the
 * call the host made.
 *
 *     dsri_error_saved saved;
 *     dsri_error_save(&saved);
 *     host_callback(...);
 *     dsri_error_restore(&saved);
 */
#define DSRI_ERROR_CAP 1024
typedef struct dsri_error_saved {
    uint32_t mark;
    char text[DSRI_ERROR_CAP];
} dsri_error_saved;

void dsri_error_save(dsri_error_saved *saved);
void dsri_error_restore(const dsri_error_saved *saved);

#endif
