/* Thread-local error messages and status names. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[DSRI_ERROR_CAP];
static _Thread_local uint32_t n_recorded;

dsr1_status dsri_error(dsr1_status status, const char *fmt, ...)
{
    if (status == DSR1_ERR_BUFFER_TOO_SMALL)
        return status; /* a size answer, not a failure: keep the real last error */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    n_recorded++;
    return status;
}

void dsri_error_clear(void)
{
    last_error[0] = '\0';
}

uint32_t dsri_error_mark(void)
{
    return n_recorded;
}

void dsri_error_save(dsri_error_saved *saved)
{
    saved->mark = n_recorded;
    memcpy(saved->text, last_error, strlen(last_error) + 1);
}

void dsri_error_restore(const dsri_error_saved *saved)
{
    if (n_recorded == saved->mark)
        return; /* the callback recorded nothing */
    memcpy(last_error, saved->text, strlen(saved->text) + 1);
    n_recorded = saved->mark;
}

const char *dsr1_last_error(void)
{
    return last_error;
}

const char *dsr1_status_string(dsr1_status status)
{
    switch (status) {
    case DSR1_OK: return "DSR1_OK: success";
    case DSR1_ERR_INVALID_ARGUMENT: return "DSR1_ERR_INVALID_ARGUMENT: invalid argument";
    case DSR1_ERR_IO: return "DSR1_ERR_IO: input/output error";
    case DSR1_ERR_FORMAT: return "DSR1_ERR_FORMAT: malformed input (a model file, a saved state)";
    case DSR1_ERR_UNSUPPORTED: return "DSR1_ERR_UNSUPPORTED: not supported";
    case DSR1_ERR_OUT_OF_MEMORY: return "DSR1_ERR_OUT_OF_MEMORY: out of memory";
    case DSR1_ERR_BUFFER_TOO_SMALL: return "DSR1_ERR_BUFFER_TOO_SMALL: buffer too small";
    case DSR1_ERR_CONTEXT_FULL: return "DSR1_ERR_CONTEXT_FULL: context window full";
    case DSR1_ERR_NUMERIC: return "DSR1_ERR_NUMERIC: non-finite numbers";
    case DSR1_ERR_CANCELLED: return "DSR1_ERR_CANCELLED: cancelled";
    case DSR1_ERR_STATE: return "DSR1_ERR_STATE: invalid in the current state";
    case DSR1_ERR_INTERNAL: return "DSR1_ERR_INTERNAL: internal error";
    }
    return "DSR1_ERR_UNKNOWN: unknown status";
}
