/* All allocations go through here; see alloc.h for failure injection. */
#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef DSR1_ALLOC_FAILURE_INJECTION
/* Per-thread so that concurrent tests do not disturb each other. */
static _Thread_local long fail_countdown;
static _Thread_local long alloc_count;

static int should_fail(void)
{
    alloc_count++;
    if (fail_countdown > 0 && --fail_countdown == 0)
        return 1;
    return 0;
}

long dsri_alloc_fail_after(long countdown)
{
    long n = alloc_count;
    alloc_count = 0;
    fail_countdown = countdown;
    return n;
}
#else
static int should_fail(void) { return 0; }
long dsri_alloc_fail_after(long countdown) { (void)countdown; return 0; }
#endif

void *dsri_malloc(size_t size)
{
    if (size == 0 || should_fail())
        return NULL;
    return malloc(size);
}

void *dsri_calloc(size_t n, size_t size)
{
    if (n == 0 || size == 0 || n > SIZE_MAX / size || should_fail())
        return NULL;
    return calloc(n, size);
}

void *dsri_realloc(void *p, size_t size)
{
    if (size == 0 || should_fail())
        return NULL;
    return realloc(p, size);
}

void dsri_free(void *p)
{
    free(p);
}

char *dsri_strndup(const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *r = dsri_malloc(n + 1);
    if (!r)
        return NULL;
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}
