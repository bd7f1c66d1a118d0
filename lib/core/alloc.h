/*
 * The one place memory is allocated (internal).
 *
 * Every allocation in the library goes through these functions so that a
 * failure-injection build (-Ddsr1_alloc_failure_injection=true, used by the
 * tests and fuzzers) can make the N-th allocation of a thread fail and check
 * that the failure propagates as DSR1_ERR_OUT_OF_MEMORY without leaks.
 */
#ifndef DSRI_ALLOC_H
#define DSRI_ALLOC_H

#include <stddef.h>

void *dsri_malloc(size_t size);             /* NULL on failure or size 0 */
void *dsri_calloc(size_t n, size_t size);   /* zeroed; NULL on overflow/failure */
void *dsri_realloc(void *p, size_t size);
void dsri_free(void *p);
char *dsri_strndup(const char *s, size_t n); /* copy of n bytes + NUL */

/* Failure injection (only active in builds with DSR1_ALLOC_FAILURE_INJECTION):
 * the countdown-th allocation from now on this thread fails (1 = the next);
 * 0 disables. Returns the number of allocations made since the last call. */
long dsri_alloc_fail_after(long countdown);

#endif
