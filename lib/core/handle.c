/* Per-handle busy flags and error messages (see handle.h). */
#include "core/handle.h"

#include <string.h>

#include "core/error.h"

void dsri_handle_init(dsri_handle *h)
{
    atomic_init(&h->busy, 0);
    h->message[0] = '\0';
}

dsr1_status dsri_enter(dsri_handle *h, dsri_call *call, const char *fn)
{
    call->fn = fn;
    call->mark = dsri_error_mark();
    if (atomic_exchange_explicit(&h->busy, 1, memory_order_acquire))
        return dsri_error(DSR1_ERR_STATE,
                          "%s: the handle is in use by a call that has not returned (called from one of that "
                          "call's callbacks, or from another thread at the same time)", fn);
    return DSR1_OK;
}

dsr1_status dsri_borrow(dsri_handle *h, const char *fn)
{
    dsri_call call;
    return dsri_enter(h, &call, fn);
}

void dsri_unborrow(dsri_handle *h)
{
    atomic_store_explicit(&h->busy, 0, memory_order_release);
}

static void copy_message(dsri_handle *h, const char *text)
{
    size_t n = strlen(text);
    if (n >= sizeof h->message)
        n = sizeof h->message - 1;
    memcpy(h->message, text, n);
    h->message[n] = '\0';
}

dsr1_status dsri_leave(dsri_handle *h, const dsri_call *call, dsr1_status st)
{
    if (st == DSR1_OK || st == DSR1_ERR_BUFFER_TOO_SMALL) {
        h->message[0] = '\0';
    } else {
        /* a path that recorded nothing still names the function and status */
        if (dsri_error_mark() == call->mark)
            dsri_error(st, "%s: %s", call->fn, dsr1_status_string(st));
        copy_message(h, dsr1_last_error());
    }
    atomic_store_explicit(&h->busy, 0, memory_order_release);
    return st;
}

int dsri_handle_busy(dsri_handle *h, const char *fn)
{
    if (!atomic_load_explicit(&h->busy, memory_order_acquire))
        return 0;
    dsri_error(DSR1_ERR_STATE, "%s: the handle is in use by a call that has not returned; nothing was done", fn);
    return 1;
}

const char *dsri_handle_message(const dsri_handle *h)
{
    return h ? h->message : "";
}
