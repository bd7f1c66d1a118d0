/*
 * Tokenizer tests: the three real R1-family vocabularies against their
 * expected ids, round trips, the stream decoder, special-token safety,
 * short buffers, bad arguments and vocabulary loading errors.
 *
 * Usage: test_tokenizer DATA_DIR   (DATA_DIR holds vocab/ggml-vocab-*.gguf)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"

static int failures;

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond,    \
                    dsr1_last_error());                                                     \
            failures++;                                                                     \
        }                                                                                   \
    } while (0)

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *b = realloc(buf, 2 * cap + 1);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static dsr1_model *load(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf", dir, name);
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.vocab_only = 1;
    dsr1_model *m = NULL;
    if (dsr1_model_load(path, &mp, &m) != DSR1_OK) {
        fprintf(stderr, "cannot load %s: %s\n", path, dsr1_last_error());
        failures++;
        return NULL;
    }
    return m;
}

/* Tokenize into a malloc'ed array (exact size, via the size query). */
static dsr1_token *tokenize(const dsr1_model *m, const char *s, size_t n, uint32_t flags, int32_t *count)
{
    int32_t need = 0;
    dsr1_status st = dsr1_tokenize(m, s, n, NULL, 0, &need, flags);
    CHECK(st == DSR1_OK || st == DSR1_ERR_BUFFER_TOO_SMALL);
    CHECK((st == DSR1_OK) == (need == 0));
    dsr1_token *t = malloc(((size_t)need + 1) * sizeof *t);
    int32_t got = -1;
    CHECK(dsr1_tokenize(m, s, n, t, need, &got, flags) == DSR1_OK);
    CHECK(got == need);
    *count = need;
    return t;
}

static char *detokenize(const dsr1_model *m, const dsr1_token *t, int32_t n, uint32_t flags, size_t *len)
{
    size_t need = 0;
    dsr1_status st = dsr1_detokenize(m, t, n, NULL, 0, &need, flags);
    CHECK(st == DSR1_OK || st == DSR1_ERR_BUFFER_TOO_SMALL);
    char *buf = malloc(need + 1);
    size_t got = 0;
    CHECK(dsr1_detokenize(m, t, n, buf, need + 1, &got, flags) == DSR1_OK);
    CHECK(got == need && buf[need] == '\0');
    *len = need;
    return buf;
}

/* Complete, well-formed UTF-8 (what the stream decoder promises). */
static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 3;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 4;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else {
            return 0;
        }
        if (i + k > n || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t j = 2; j < k; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xbf)
                return 0;
        i += k;
    }
    return 1;
}

/* Stream tokens through a decoder one at a time; returns the text. */
static char *stream_decode(const dsr1_model *m, const dsr1_token *t, int32_t n, uint32_t flags, size_t *len,
                           int *all_complete)
{
    dsr1_decoder *d = NULL;
    CHECK(dsr1_decoder_new(m, flags, &d) == DSR1_OK);
    size_t cap = 64, total = 0;
    char *out = malloc(cap);
    char chunk[1024];
    *all_complete = 1;
    for (int32_t i = 0; i <= n; i++) {
        size_t k = 0;
        dsr1_status st = i < n ? dsr1_decoder_push(d, t[i], chunk, sizeof chunk, &k)
                               : dsr1_decoder_flush(d, chunk, sizeof chunk, &k);
        CHECK(st == DSR1_OK);
        if (st != DSR1_OK)
            break;
        CHECK(chunk[k] == '\0');
        if (!valid_utf8((const unsigned char *)chunk, k))
            *all_complete = 0;
        while (total + k + 1 > cap)
            out = realloc(out, cap *= 2);
        memcpy(out + total, chunk, k);
        total += k;
    }
    out[total] = '\0';
    dsr1_decoder_free(d);
    *len = total;
    return out;
}

/* ---- the expected-ids files ---- */

static const char SEP[] = "\n__ggml_vocab_test__\n";

static void run_cases(const char *dir, const char *name, const dsr1_model *m)
{
    char path[4096];
    size_t inp_len, out_len;
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf.inp", dir, name);
    char *inp = read_file(path, &inp_len);
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-%s.gguf.out", dir, name);
    char *out = read_file(path, &out_len);
    CHECK(inp && out);
    if (!inp || !out) {
        free(inp);
        free(out);
        return;
    }
    int n_cases = 0, n_ids_ok = 0, n_rt_ok = 0, n_stream_ok = 0;
    char *p = inp, *line = out;
    for (;;) {
        char *sep = strstr(p, SEP);
        if (!sep)
            break;
        size_t len = (size_t)(sep - p);
        char *eol = strchr(line, '\n');
        if (!eol) {
            fprintf(stderr, "%s: .out has fewer lines than .inp has cases\n", name);
            failures++;
            break;
        }
        *eol = '\0';
        /* expected ids */
        dsr1_token expect[4096];
        int32_t n_expect = 0;
        for (char *q = line, *end; *q; q = end) {
            long v = strtol(q, &end, 10);
            if (end == q)
                break;
            expect[n_expect++] = (dsr1_token)v;
        }
        int32_t n_got;
        dsr1_token *got = tokenize(m, p, len, DSR1_TOKENIZE_PARSE_SPECIAL, &n_got);
        int ok = n_got == n_expect && memcmp(got, expect, (size_t)n_got * sizeof *got) == 0;
        if (ok) {
            n_ids_ok++;
        } else {
            fprintf(stderr, "%s case %d: '%.*s'\n  expected:", name, n_cases, (int)len, p);
            for (int32_t i = 0; i < n_expect; i++)
                fprintf(stderr, " %d", expect[i]);
            fprintf(stderr, "\n  got:     ");
            for (int32_t i = 0; i < n_got; i++)
                fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\n");
            failures++;
        }
        /* round trip (control tokens spelled in the text come back with RENDER_CONTROL) */
        size_t dlen;
        char *text = detokenize(m, got, n_got, DSR1_PIECE_RENDER_CONTROL, &dlen);
        if (dlen == len && memcmp(text, p, len) == 0)
            n_rt_ok++;
        else {
            fprintf(stderr, "%s case %d: round trip differs: '%s'\n", name, n_cases, text);
            failures++;
        }
        int complete;
        char *streamed = stream_decode(m, got, n_got, DSR1_PIECE_RENDER_CONTROL, &dlen, &complete);
        if (dlen == len && memcmp(streamed, p, len) == 0 && complete)
            n_stream_ok++;
        else {
            fprintf(stderr, "%s case %d: stream decoding differs or emitted a partial character\n", name,
                    n_cases);
            failures++;
        }
        free(streamed);
        free(text);
        free(got);
        n_cases++;
        p = sep + sizeof SEP - 1;
        line = eol + 1;
    }
    printf("%-12s %d cases: ids %d/%d, round trip %d/%d, stream decode %d/%d\n", name, n_cases, n_ids_ok,
           n_cases, n_rt_ok, n_cases, n_stream_ok, n_cases);
    CHECK(n_cases > 0);
    free(inp);
    free(out);
}

/* ---- special tokens ---- */

static int is_special_attr(dsr1_token_attr a) { return a == DSR1_TOKEN_CONTROL || a == DSR1_TOKEN_USER_DEFINED; }

/* Every special spelling, tokenized without special parsing, yields only
 * normal tokens and comes back unchanged. */
static void check_no_injection(const dsr1_model *m, const char *name)
{
    int32_t n_vocab = dsr1_model_n_vocab(m);
    int checked = 0, bad = 0;
    for (dsr1_token id = 0; id < n_vocab; id++) {
        if (!is_special_attr(dsr1_token_get_attr(m, id)))
            continue;
        char text[512];
        size_t n;
        if (dsr1_token_to_piece(m, id, text, sizeof text - 64, &n, DSR1_PIECE_RENDER_CONTROL) != DSR1_OK || !n)
            continue;
        memmove(text + 3, text, n);
        memcpy(text, "a b", 3); /* also inside other text */
        memcpy(text + 3 + n, "c d", 3);
        n += 6;
        for (int pass = 0; pass < 2; pass++) {
            const char *s = pass ? text : text + 3;
            size_t len = pass ? n : n - 6;
            int32_t cnt;
            dsr1_token *t = tokenize(m, s, len, 0, &cnt);
            for (int32_t i = 0; i < cnt; i++)
                if (dsr1_token_get_attr(m, t[i]) != DSR1_TOKEN_NORMAL)
                    bad++;
            size_t dlen;
            char *back = detokenize(m, t, cnt, 0, &dlen);
            if (dlen != len || memcmp(back, s, len) != 0)
                bad++;
            free(back);
            free(t);
            /* and with parsing on, the bare spelling is exactly that token */
            if (!pass) {
                t = tokenize(m, s, len, DSR1_TOKENIZE_PARSE_SPECIAL, &cnt);
                if (cnt != 1 || t[0] != id)
                    bad++;
                free(t);
            }
        }
        checked++;
    }
    printf("%-12s %d special spellings: parse_special off never yields a special id (%d problems)\n", name,
           checked, bad);
    CHECK(checked > 0 && bad == 0);
}

static void check_r1_specials(const dsr1_model *m)
{
    CHECK(dsr1_token_special(m, DSR1_SPECIAL_BOS) == 0);
    CHECK(dsr1_token_special(m, DSR1_SPECIAL_EOS) == 1);
    CHECK(dsr1_token_special(m, DSR1_SPECIAL_USER) == 128803);
    CHECK(dsr1_token_special(m, DSR1_SPECIAL_ASSISTANT) == 128804);
    CHECK(dsr1_token_special(m, DSR1_SPECIAL_THINK_BEGIN) == 128798);
    CHECK(dsr1_token_special(m, DSR1_SPECIAL_THINK_END) == 128799);
    CHECK(dsr1_token_special(m, (dsr1_special)99) == -1);
    CHECK(dsr1_token_special(NULL, DSR1_SPECIAL_BOS) == -1);
    CHECK(dsr1_token_get_attr(m, 0) == DSR1_TOKEN_CONTROL);
    CHECK(dsr1_token_get_attr(m, 128798) == DSR1_TOKEN_USER_DEFINED);
    CHECK(dsr1_token_get_attr(m, 100) == DSR1_TOKEN_NORMAL);
    CHECK(dsr1_token_get_attr(m, -1) == DSR1_TOKEN_UNDEFINED);
    CHECK(dsr1_token_get_attr(m, 1 << 30) == DSR1_TOKEN_UNDEFINED);
    CHECK(dsr1_token_is_eog(m, 1) == 1);
    CHECK(dsr1_token_is_eog(m, 0) == 0);
    CHECK(dsr1_token_is_eog(m, 100) == 0);
    CHECK(dsr1_token_is_eog(m, -5) == 0);

    char buf[64];
    size_t n = 99;
    /* control tokens render as nothing unless asked; user-defined always */
    CHECK(dsr1_token_to_piece(m, 0, buf, sizeof buf, &n, 0) == DSR1_OK && n == 0 && buf[0] == '\0');
    CHECK(dsr1_token_to_piece(m, 0, buf, sizeof buf, &n, DSR1_PIECE_RENDER_CONTROL) == DSR1_OK &&
          n == strlen("<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>") &&
          strcmp(buf, "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>") == 0);
    CHECK(dsr1_token_to_piece(m, 128798, buf, sizeof buf, &n, 0) == DSR1_OK && n == 7 &&
          strcmp(buf, "<think>") == 0);
    /* ADD_BOS */
    dsr1_token t[8];
    int32_t cnt;
    CHECK(dsr1_tokenize(m, "Hi", 2, t, 8, &cnt, DSR1_TOKENIZE_ADD_BOS) == DSR1_OK && cnt == 2 && t[0] == 0);
    CHECK(dsr1_tokenize(m, "", 0, t, 8, &cnt, DSR1_TOKENIZE_ADD_BOS) == DSR1_OK && cnt == 1 && t[0] == 0);
    CHECK(dsr1_tokenize(m, NULL, 0, t, 8, &cnt, 0) == DSR1_OK && cnt == 0);
}

/* ---- buffers and arguments ---- */

static void check_buffers(const dsr1_model *m)
{
    const char *s = "Hello, world! 你好";
    size_t len = strlen(s);
    dsr1_token t[64];
    int32_t n = -1, need;
    CHECK(dsr1_tokenize(m, s, len, t, 64, &need, 0) == DSR1_OK && need > 2);
    CHECK(dsr1_tokenize(m, s, len, t, need - 1, &n, 0) == DSR1_ERR_BUFFER_TOO_SMALL && n == need);
    CHECK(dsr1_tokenize(m, s, len, NULL, 0, &n, 0) == DSR1_ERR_BUFFER_TOO_SMALL && n == need);
    CHECK(dsr1_tokenize(m, s, len, t, need, &n, 0) == DSR1_OK && n == need);

    char buf[64];
    size_t nb = 0;
    CHECK(dsr1_detokenize(m, t, need, buf, 5, &nb, 0) == DSR1_ERR_BUFFER_TOO_SMALL && nb == len);
    /* the NUL always needs room: exactly len bytes is one short */
    CHECK(dsr1_detokenize(m, t, need, buf, len, &nb, 0) == DSR1_ERR_BUFFER_TOO_SMALL && nb == len);
    CHECK(dsr1_detokenize(m, t, need, buf, len + 1, &nb, 0) == DSR1_OK && nb == len && strcmp(buf, s) == 0);
    CHECK(dsr1_detokenize(m, t, 0, NULL, 0, &nb, 0) == DSR1_ERR_BUFFER_TOO_SMALL && nb == 0);
    CHECK(dsr1_detokenize(m, t, 0, buf, 1, &nb, 0) == DSR1_OK && nb == 0 && buf[0] == '\0');

    dsr1_token hello = t[0];
    char one[2];
    CHECK(dsr1_token_to_piece(m, hello, one, 2, &nb, 0) == DSR1_ERR_BUFFER_TOO_SMALL && nb == 5);
    CHECK(dsr1_token_to_piece(m, hello, NULL, 0, &nb, 0) == DSR1_ERR_BUFFER_TOO_SMALL && nb == 5);

    /* stream decoder: a short buffer consumes nothing */
    dsr1_decoder *d;
    CHECK(dsr1_decoder_new(m, 0, &d) == DSR1_OK);
    CHECK(dsr1_decoder_push(d, hello, one, 2, &nb) == DSR1_ERR_BUFFER_TOO_SMALL && nb == 5);
    CHECK(dsr1_decoder_push(d, hello, buf, 5, &nb) == DSR1_ERR_BUFFER_TOO_SMALL && nb == 5);
    CHECK(dsr1_decoder_push(d, hello, buf, 6, &nb) == DSR1_OK && nb == 5 && strcmp(buf, "Hello") == 0);
    /* "你" split over byte tokens: E4 BD A0 */
    dsr1_token bytes3[3];
    const char *ni = "\xe4\xbd\xa0";
    for (int i = 0; i < 3; i++) {
        int32_t k;
        CHECK(dsr1_tokenize(m, ni + i, 1, &bytes3[i], 1, &k, 0) == DSR1_OK && k == 1);
    }
    CHECK(dsr1_decoder_push(d, bytes3[0], buf, sizeof buf, &nb) == DSR1_OK && nb == 0);
    CHECK(dsr1_decoder_push(d, bytes3[1], buf, sizeof buf, &nb) == DSR1_OK && nb == 0);
    CHECK(dsr1_decoder_push(d, bytes3[2], buf, 3, &nb) == DSR1_ERR_BUFFER_TOO_SMALL && nb == 3);
    CHECK(dsr1_decoder_push(d, bytes3[2], buf, 4, &nb) == DSR1_OK && nb == 3 && strcmp(buf, ni) == 0);
    /* an incomplete character followed by ASCII: U+FFFD then the ASCII */
    CHECK(dsr1_decoder_push(d, bytes3[0], buf, sizeof buf, &nb) == DSR1_OK && nb == 0);
    CHECK(dsr1_decoder_push(d, hello, buf, sizeof buf, &nb) == DSR1_OK && nb == 8 &&
          strcmp(buf, "\xef\xbf\xbdHello") == 0);
    /* flushing held bytes: one U+FFFD */
    CHECK(dsr1_decoder_push(d, bytes3[0], buf, sizeof buf, &nb) == DSR1_OK && nb == 0);
    CHECK(dsr1_decoder_push(d, bytes3[1], buf, sizeof buf, &nb) == DSR1_OK && nb == 0);
    CHECK(dsr1_decoder_flush(d, buf, 3, &nb) == DSR1_ERR_BUFFER_TOO_SMALL && nb == 3);
    CHECK(dsr1_decoder_flush(d, buf, sizeof buf, &nb) == DSR1_OK && nb == 3 && strcmp(buf, "\xef\xbf\xbd") == 0);
    CHECK(dsr1_decoder_flush(d, buf, sizeof buf, &nb) == DSR1_OK && nb == 0);
    dsr1_decoder_free(d);
    dsr1_decoder_free(NULL);
}

static void check_bad_arguments(const dsr1_model *m)
{
    dsr1_token t[8];
    int32_t n;
    char buf[16];
    size_t nb;
    CHECK(dsr1_tokenize(NULL, "a", 1, t, 8, &n, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(strstr(dsr1_last_error(), "dsr1_tokenize") != NULL);
    CHECK(dsr1_tokenize(m, NULL, 1, t, 8, &n, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_tokenize(m, "a", 1, t, -1, &n, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_tokenize(m, "a", 1, NULL, 8, &n, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_tokenize(m, "a", 1, t, 8, NULL, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_tokenize(m, "a", 1, t, 8, &n, 0x100) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_tokenize(m, "a", (size_t)1 << 40, t, 8, &n, 0) == DSR1_ERR_INVALID_ARGUMENT);

    int32_t nv = dsr1_model_n_vocab(m);
    CHECK(dsr1_token_to_piece(NULL, 5, buf, sizeof buf, &nb, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_token_to_piece(m, -1, buf, sizeof buf, &nb, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_token_to_piece(m, nv, buf, sizeof buf, &nb, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(strstr(dsr1_last_error(), "outside the vocabulary") != NULL);
    CHECK(dsr1_token_to_piece(m, 5, NULL, 4, &nb, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_token_to_piece(m, 5, buf, sizeof buf, NULL, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_token_to_piece(m, 5, buf, sizeof buf, &nb, 8) == DSR1_ERR_INVALID_ARGUMENT);

    dsr1_token bad[3] = {5, nv + 3, 6};
    CHECK(dsr1_detokenize(m, bad, 3, buf, sizeof buf, &nb, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(strstr(dsr1_last_error(), "tokens[1]") != NULL);
    CHECK(dsr1_detokenize(m, bad, -1, buf, sizeof buf, &nb, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_detokenize(m, NULL, 2, buf, sizeof buf, &nb, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_detokenize(NULL, bad, 1, buf, sizeof buf, &nb, 0) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_detokenize(m, bad, 1, buf, sizeof buf, NULL, 0) == DSR1_ERR_INVALID_ARGUMENT);

    dsr1_decoder *d = (dsr1_decoder *)buf;
    CHECK(dsr1_decoder_new(NULL, 0, &d) == DSR1_ERR_INVALID_ARGUMENT && d == NULL);
    CHECK(dsr1_decoder_new(m, 0, NULL) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_decoder_new(m, 4, &d) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_decoder_push(NULL, 5, buf, sizeof buf, &nb) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_decoder_flush(NULL, buf, sizeof buf, &nb) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_decoder_new(m, 0, &d) == DSR1_OK);
    CHECK(dsr1_decoder_push(d, -3, buf, sizeof buf, &nb) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_decoder_push(d, 5, buf, sizeof buf, NULL) == DSR1_ERR_INVALID_ARGUMENT);
    CHECK(dsr1_decoder_push(d, 5, NULL, 3, &nb) == DSR1_ERR_INVALID_ARGUMENT);
    dsr1_decoder_free(d);
}

/* ---- round trips of arbitrary bytes ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void check_random_round_trips(const dsr1_model *m, const char *name)
{
    static const char *const pieces[] = {
        " ", "  ", "\n", "\r\n", "\t", "a", "Hello", " world", "'s", "'LL", "123", "4567", "\xc2\xbd", "\xe4\xbd\xa0",
        "\xe3\x81\x82", "\xe3\x82\xab", "\xf0\x9f\xa6\x99", "\xcc\x81", "!", "...", "<think>", "</think>",
        "<\xef\xbd\x9cUser\xef\xbd\x9c>", "\xff", "\xe4\xbd", "\x80", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80",
        "\x00", "\xe2\x80\x83", "\xd9\xa1", "\xe0\xb8\x81",
    };
    const size_t n_pieces = sizeof pieces / sizeof pieces[0];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int bad = 0, bad_stream = 0;
    for (int iter = 0; iter < 300; iter++) {
        char text[1024];
        size_t len = 0;
        int k = (int)(rng_next(&seed) % 40);
        for (int i = 0; i < k; i++) {
            const char *p = pieces[rng_next(&seed) % n_pieces];
            size_t pl = p[0] ? strlen(p) : 1;
            memcpy(text + len, p, pl);
            len += pl;
        }
        for (int flags = 0; flags <= 2; flags += 2) {
            int32_t cnt;
            dsr1_token *t = tokenize(m, text, len, (uint32_t)flags, &cnt);
            size_t dlen;
            char *back = detokenize(m, t, cnt, DSR1_PIECE_RENDER_CONTROL, &dlen);
            if (dlen != len || memcmp(back, text, len) != 0)
                bad++;
            free(back);
            int complete;
            back = stream_decode(m, t, cnt, DSR1_PIECE_RENDER_CONTROL, &dlen, &complete);
            if (!complete)
                bad_stream++;
            free(back);
            free(t);
        }
    }
    printf("%-12s random byte strings: %d round-trip failures, %d partial characters streamed\n", name, bad,
           bad_stream);
    CHECK(bad == 0 && bad_stream == 0);
}

/* A long single word is not quadratic (and tokenizes the same as pieces). */
static void check_long_word(const dsr1_model *m)
{
    size_t len = 200000;
    char *s = malloc(len);
    for (size_t i = 0; i < len; i++)
        s[i] = (char)('a' + (i * 7 + i / 13) % 26);
    int32_t cnt;
    dsr1_token *t = tokenize(m, s, len, 0, &cnt);
    size_t dlen;
    char *back = detokenize(m, t, cnt, 0, &dlen);
    CHECK(dlen == len && memcmp(back, s, len) == 0);
    free(back);
    free(t);
    free(s);
}

/* ---- loading errors, with vocabularies built in memory ---- */

typedef struct gbuf {
    unsigned char *p;
    size_t n, cap;
} gbuf;

static void put(gbuf *b, const void *src, size_t n)
{
    while (b->n + n > b->cap)
        b->p = realloc(b->p, b->cap = b->cap ? 2 * b->cap : 4096);
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u32(gbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(gbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(gbuf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_str(gbuf *b, const char *k, const char *v)
{
    put_str(b, k);
    put_u32(b, 8);
    put_str(b, v);
}
static void kv_u32(gbuf *b, const char *k, uint32_t v)
{
    put_str(b, k);
    put_u32(b, 4);
    put_u32(b, v);
}
static void kv_strs(gbuf *b, const char *k, const char *const *v, size_t n)
{
    put_str(b, k);
    put_u32(b, 9);
    put_u32(b, 8);
    put_u64(b, n);
    for (size_t i = 0; i < n; i++)
        put_str(b, v[i]);
}
static void kv_i32s(gbuf *b, const char *k, const int32_t *v, size_t n)
{
    put_str(b, k);
    put_u32(b, 9);
    put_u32(b, 5);
    put_u64(b, n);
    put(b, v, 4 * n);
}

/* A 260-token vocabulary: the 256 bytes, "ab", "abc", <s>, <x>. Variants
 * break one thing each. */
static dsr1_status load_variant(int variant, dsr1_model **out)
{
    static char byte_text[256][3];
    const char *toks[260];
    int32_t types[260];
    for (int b = 0; b < 256; b++) {
        unsigned cp = (unsigned)b;
        if (b <= 0x20)
            cp = 256u + (unsigned)b;
        else if (b >= 0x7f && b <= 0xa0)
            cp = 256u + 33u + (unsigned)(b - 0x7f);
        else if (b == 0xad)
            cp = 256u + 67u;
        if (cp < 0x80) {
            byte_text[b][0] = (char)cp;
            byte_text[b][1] = 0;
        } else {
            byte_text[b][0] = (char)(0xc0 | (cp >> 6));
            byte_text[b][1] = (char)(0x80 | (cp & 0x3f));
            byte_text[b][2] = 0;
        }
        toks[b] = byte_text[b];
        types[b] = 1;
    }
    toks[256] = "ab";
    toks[257] = "abc";
    toks[258] = "<s>";
    toks[259] = "<x>";
    types[256] = types[257] = 1;
    types[258] = 3;
    types[259] = variant == 6 ? 9 : 4;
    const char *merges[2] = {"a b", variant == 3 ? "ab zz" : "ab c"};
    gbuf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 7);
    kv_str(&b, "general.architecture", "llama");
    kv_str(&b, "tokenizer.ggml.model", variant == 1 ? "llama" : "gpt2");
    kv_str(&b, "tokenizer.ggml.pre", variant == 5 ? "gpt-17" : "qwen2");
    kv_strs(&b, "tokenizer.ggml.tokens", toks, 260);
    kv_i32s(&b, "tokenizer.ggml.token_type", types, variant == 2 ? 259 : 260);
    kv_strs(&b, "tokenizer.ggml.merges", merges, 2);
    kv_u32(&b, "tokenizer.ggml.bos_token_id", variant == 4 ? 260 : 258);
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.vocab_only = 1;
    *out = NULL;
    dsr1_status st = dsr1_model_load_from_memory(b.p, b.n, &mp, out);
    if (st == DSR1_OK) {
        int32_t n;
        dsr1_token t[8];
        CHECK(dsr1_tokenize(*out, "abc<s>ab", 8, t, 8, &n, DSR1_TOKENIZE_PARSE_SPECIAL) == DSR1_OK);
        CHECK(n == 3 && t[0] == 257 && t[1] == 258 && t[2] == 256);
        dsr1_model_free(*out);
        *out = NULL;
    }
    free(b.p);
    return st;
}

static void check_load_errors(void)
{
    dsr1_model *m;
    CHECK(load_variant(0, &m) == DSR1_OK);
    CHECK(load_variant(1, &m) == DSR1_ERR_UNSUPPORTED && strstr(dsr1_last_error(), "tokenizer.ggml.model"));
    CHECK(load_variant(2, &m) == DSR1_ERR_FORMAT && strstr(dsr1_last_error(), "tokenizer.ggml.token_type"));
    CHECK(load_variant(3, &m) == DSR1_ERR_FORMAT && strstr(dsr1_last_error(), "tokenizer.ggml.merges[1]"));
    CHECK(load_variant(4, &m) == DSR1_ERR_FORMAT && strstr(dsr1_last_error(), "bos_token_id"));
    CHECK(load_variant(5, &m) == DSR1_ERR_UNSUPPORTED && strstr(dsr1_last_error(), "gpt-17"));
    CHECK(load_variant(6, &m) == DSR1_ERR_FORMAT && strstr(dsr1_last_error(), "token_type[259]"));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    static const char *const names[] = {"qwen2", "llama-bpe", "deepseek-r1"};
    for (int i = 0; i < 3; i++) {
        dsr1_model *m = load(argv[1], names[i]);
        if (!m)
            continue;
        run_cases(argv[1], names[i], m);
        check_no_injection(m, names[i]);
        check_random_round_trips(m, names[i]);
        check_buffers(m);
        check_bad_arguments(m);
        check_long_word(m);
        if (i == 2)
            check_r1_specials(m);
        dsr1_model_free(m);
    }
    check_load_errors();
    if (failures) {
        printf("test_tokenizer: %d failures\n", failures);
        return 1;
    }
    printf("test_tokenizer: all passed\n");
    return 0;
}
