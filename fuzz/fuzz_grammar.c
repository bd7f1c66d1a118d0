/*
 * libFuzzer target: GBNF text and JSON schemas from arbitrary bytes. The
 * first byte picks what the rest is: a grammar (parsed; when it parses, a
 * matcher is fed the text after a NUL in the input and asked for its
 * completion state), or a JSON schema (converted; the GBNF produced must
 * parse). Hostile input must give a status, never a crash, hang or leak.
 *   build-fuzz/fuzz/fuzz_grammar CORPUS   (seeds: tests/data/grammar)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 1 << 16)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    if (data[0] & 1) {
        char *gbnf = NULL;
        size_t n = 0;
        if (dsri_json_schema_to_gbnf(text, len, &gbnf, &n) == DSR1_OK) {
            dsri_gbnf *g = NULL;
            if (dsri_gbnf_parse(gbnf, n, NULL, 2, &g) != DSR1_OK)
                abort(); /* the converter wrote a grammar its parser refuses */
            dsri_gbnf_free(g);
            dsri_free(gbnf);
        }
        return 0;
    }
    const char *nul = memchr(text, 0, len);
    size_t glen = nul ? (size_t)(nul - text) : len;
    dsri_gbnf *g = NULL;
    if (dsri_gbnf_parse(text, glen, NULL, data[0] & 2 ? 2 : 0, &g) != DSR1_OK)
        return 0;
    dsri_gmatch *m = NULL;
    if (dsri_gmatch_new(g, (data[0] & 2) != 0, &m) == DSR1_OK && nul) {
        const char *in = nul + 1;
        size_t in_len = len - glen - 1;
        for (size_t i = 0; i < in_len; i += 3) /* in pieces, as tokens come */
            if (dsri_gmatch_accept(m, in + i, in_len - i < 3 ? in_len - i : 3) != DSR1_OK)
                break;
        (void)dsri_gmatch_complete(m);
    }
    dsri_gmatch_free(m);
    dsri_gbnf_free(g);
    return 0;
}
