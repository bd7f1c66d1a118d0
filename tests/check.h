/*
 * What the C tests share: a failure counter, CHECK (a printf-style message
 * on failure; the test goes on, so one run reports every broken case) and
 * small helpers. Header-only: each test is one program.
 */
#ifndef DSR1_TEST_CHECK_H
#define DSR1_TEST_CHECK_H

#include <stdio.h>

static int failures, checks;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        checks++;                                                                                            \
        if (!(cond)) {                                                                                       \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                           \
            printf(__VA_ARGS__);                                                                             \
            printf("\n");                                                                                    \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

/* "NAME: N checks, M failures"; the exit status for main. */
static inline int check_summary(const char *name)
{
    printf("%s: %d checks, %d failures\n", name, checks, failures);
    return failures ? 1 : 0;
}

/* The index of the largest value (the first of equal ones). */
static inline int argmax(const float *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return b;
}

#endif
