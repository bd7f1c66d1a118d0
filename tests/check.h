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

/* One line of a models/MANIFEST ("NAME N_VOCAB TOKEN TOKEN ..."): the name
 * (at most 255 bytes), the vocabulary size and up to max tokens (*n_tok).
 * 0 for a line that is not an entry. */
static inline int manifest_entry(const char *line, char name[256], int *n_vocab, int *tok, int max, int *n_tok)
{
    int off, used;
    if (sscanf(line, "%255s %d%n", name, n_vocab, &off) != 2)
        return 0;
    const char *p = line + off;
    *n_tok = 0;
    while (*n_tok < max && sscanf(p, "%d%n", &tok[*n_tok], &used) == 1) {
        p += used;
        (*n_tok)++;
    }
    return 1;
}

#endif
