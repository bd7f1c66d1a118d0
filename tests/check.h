/*
 * What the C tests share: a failure counter, CHECK (a printf-style message
 * on failure; the test goes on, so one run reports every broken case) and
 * small helpers. Header-only: each test is one program.
 */
#ifndef DSR1_TEST_CHECK_H
#define DSR1_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

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

/* Exactly n little-endian f32 values from a file (the fixtures' reference
 * logits), malloc'ed; NULL when the file is missing or has another size. */
static inline float *read_f32_file(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *v = malloc(n * sizeof *v);
    size_t got = v ? fread(v, sizeof *v, n, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra) {
        free(v);
        return NULL;
    }
    return v;
}

#endif
