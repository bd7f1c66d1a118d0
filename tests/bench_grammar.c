/*
 * What a grammar costs per sampled token on a real vocabulary.
 *
 *   bench_grammar VOCAB.gguf GRAMMAR.gbnf [PREFIX...]
 *
 * Prints the trie build time, then for the start state and after each
 * PREFIX (text already generated) the time to compute the allowed-token
 * mask the first time (a state never seen: the trie search; the mean of 5
 * fresh matchers) and again (the per-state cache), with the number of
 * tokens allowed. Compare with
 * a token's evaluation time (dsr1 bench) to see the fraction it adds.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsr1.h"
#include "grammar/grammar.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_grammar VOCAB.gguf GRAMMAR.gbnf [PREFIX...]\n");
        return 2;
    }
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.vocab_only = 1;
    dsr1_model *model;
    if (dsr1_model_load(argv[1], &mp, &model)) {
        fprintf(stderr, "%s\n", dsr1_last_error());
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        return 1;
    }
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    double t0 = now();
    dsr1_grammar *g;
    if (dsr1_grammar_new(model, text, len, NULL, &g)) {
        fprintf(stderr, "%s\n", dsr1_last_error());
        return 1;
    }
    double t1 = now();
    const dsri_vtrie *trie = dsri_grammar_trie(g);
    int32_t nv = dsri_vtrie_n_vocab(trie);
    printf("vocabulary %d tokens; grammar + trie built in %.1f ms\n", nv, (t1 - t0) * 1e3);
    uint64_t *mask = calloc(((size_t)nv + 63) / 64, 8);
    for (int a = 2; a < argc; a++) {
        const char *prefix = a == 2 ? "" : argv[a];
        /* the first time, in fresh matchers (no cache) */
        dsri_gmatch *m = NULL;
        const int fresh = 5;
        double first = 0;
        for (int r = 0; r < fresh; r++) {
            dsri_gmatch_free(m);
            if (dsri_gmatch_new(dsri_grammar_rules(g), 0, &m) || dsri_gmatch_accept(m, prefix, strlen(prefix))) {
                fprintf(stderr, "prefix '%s': %s\n", prefix, dsr1_last_error());
                return 1;
            }
            double s0 = now();
            if (dsri_gmatch_mask(m, trie, mask))
                return 1;
            first += now() - s0;
        }
        double s1 = now();
        int reps = 100;
        for (int r = 0; r < reps; r++)
            dsri_gmatch_mask(m, trie, mask);
        double s2 = now();
        int32_t allowed = 0;
        for (int32_t i = 0; i < nv; i++)
            allowed += (int)((mask[i >> 6] >> (i & 63)) & 1);
        printf("after %-24s first %8.3f ms   cached %8.4f ms   %6d allowed\n", a == 2 ? "(start)" : prefix,
               first * 1e3 / fresh, (s2 - s1) * 1e3 / reps, allowed);
        dsri_gmatch_free(m);
        if (a == 2 && argc == 3)
            break;
    }
    free(mask);
    dsr1_grammar_free(g);
    dsr1_model_free(model);
    return 0;
}
