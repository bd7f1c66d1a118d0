/*
 * libdsr1 - grammars: the GBNF parser, the matcher, the token masks and
 * the JSON-schema converter.
 *
 *   test_grammar DATA_DIR   (DATA_DIR/grammar/NAME.gbnf, DATA_DIR/vocab/ggml-vocab-qwen2.gguf)
 *
 * - llama.cpp's example grammars parse and accept / refuse sample texts;
 * - repetition bounds, classes, escapes, '.', UTF-8 split anywhere;
 * - damaged grammars (every prefix of the examples too) are refused with
 *   DSR1_ERR_FORMAT and a message, never a crash; left recursion refused;
 * - the trie masks equal a brute-force check of every token of a 151k
 *   vocabulary at several states of the JSON grammar;
 * - JSON schemas: the grammar accepts documents that follow the schema and
 *   refuses those that do not; unsupported keywords are refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"
#include "grammar/grammar.h"
#include "grammar/json.h"
#include "grammar/json_schema.h"

#include "check.h"

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = 0;
        *len = (size_t)n;
    }
    return p;
}

static dsri_gbnf *parse(const char *text)
{
    dsri_gbnf *g = NULL;
    dsr1_status st = dsri_gbnf_parse(text, strlen(text), NULL, 0, &g);
    CHECK(st == DSR1_OK, "parse failed: %s\n--- grammar:\n%s", dsr1_last_error(), text);
    return g;
}

/* Does g accept text as a complete sentence (fed in pieces of split bytes)? */
static int matches(const dsri_gbnf *g, const char *text, size_t split)
{
    dsri_gmatch *m;
    if (dsri_gmatch_new(g, 0, &m))
        return -1;
    size_t n = strlen(text);
    int ok = 1;
    for (size_t i = 0; ok && i < n; i += split) {
        size_t k = n - i < split ? n - i : split;
        ok = dsri_gmatch_accept(m, text + i, k) == DSR1_OK;
    }
    ok = ok && dsri_gmatch_complete(m);
    dsri_gmatch_free(m);
    return ok;
}

static void expect(const dsri_gbnf *g, const char *text, int want)
{
    for (size_t split = 1; split <= 7; split += 3) {
        int got = matches(g, text, split);
        CHECK(got == want, "'%s' (pieces of %zu bytes): matched %d, expected %d", text, split, got, want);
    }
}

static void test_basics(void)
{
    dsri_gbnf *g = parse("root ::= \"a\"{2,3} [x-z]? tail\ntail ::= \"!\" | \"?\" .\n");
    if (g) {
        expect(g, "aa!", 1);
        expect(g, "aaay!", 1);
        expect(g, "aaa?\xc3\xa9", 1); /* '.' is one character: é in two bytes */
        expect(g, "a!", 0);
        expect(g, "aaaa!", 0);
        expect(g, "aaw!", 0);
        expect(g, "aa?", 0);
        dsri_gbnf_free(g);
    }
    g = parse("root ::= [^a-c\\n] \"\\x41\\u00e9\\U0001F600\" [\\]\\-]\n");
    if (g) {
        expect(g, "dA\xc3\xa9\xf0\x9f\x98\x80]", 1);
        expect(g, "zA\xc3\xa9\xf0\x9f\x98\x80-", 1);
        expect(g, "bA\xc3\xa9\xf0\x9f\x98\x80]", 0);
        expect(g, "\nA\xc3\xa9\xf0\x9f\x98\x80]", 0);
        dsri_gbnf_free(g);
    }
    /* x* is right recursion without growth: a long input stays cheap */
    g = parse("root ::= (\"ab\")* \"c\"\n");
    if (g) {
        char *s = malloc(200002);
        for (int i = 0; i < 100000; i++)
            memcpy(s + 2 * i, "ab", 2);
        strcpy(s + 200000, "c");
        expect(g, s, 1);
        free(s);
        dsri_gbnf_free(g);
    }
    /* a character split over inputs: a partial one must still fit */
    g = parse("root ::= \"\\u00e9\" | \"x\"\n");
    if (g) {
        dsri_gmatch *m;
        CHECK(dsri_gmatch_new(g, 0, &m) == DSR1_OK, "matcher");
        CHECK(dsri_gmatch_would_accept(m, "\xc3", 1), "the first byte of e-acute");
        CHECK(!dsri_gmatch_would_accept(m, "\xc4", 1), "a first byte no character of the grammar has");
        CHECK(!dsri_gmatch_would_accept(m, "\xff", 1), "not UTF-8");
        CHECK(!dsri_gmatch_would_accept(m, "\xe0", 1), "a three-byte lead cannot encode U+00E9 (overlong)");
        CHECK(!dsri_gmatch_would_accept(m, "\xf0\x80", 2), "overlong four-byte form");
        CHECK(!dsri_gmatch_would_accept(m, "\xc1\xb8", 2), "overlong 'x'");
        CHECK(dsri_gmatch_accept(m, "\xc3", 1) == DSR1_OK, "accept half");
        CHECK(!dsri_gmatch_complete(m), "half a character is not complete");
        CHECK(dsri_gmatch_accept(m, "\xa8", 1) == DSR1_ERR_STATE, "e-grave refused");
        CHECK(dsri_gmatch_accept(m, "\xa9", 1) == DSR1_OK && dsri_gmatch_complete(m), "e-acute completes");
        CHECK(dsri_gmatch_reset(m) == DSR1_OK && dsri_gmatch_accept(m, "x", 1) == DSR1_OK, "reset");
        dsri_gmatch_free(m);
        dsri_gbnf_free(g);
    }
    /* lead whitespace: up to two before the root when asked */
    dsri_gbnf *lw = NULL;
    CHECK(dsri_gbnf_parse("root ::= \"x\"\n", 13, NULL, 2, &lw) == DSR1_OK, "lead ws");
    if (lw) {
        dsri_gmatch *m;
        CHECK(dsri_gmatch_new(lw, 1, &m) == DSR1_OK, "matcher");
        CHECK(dsri_gmatch_accept(m, "\n\nx", 3) == DSR1_OK && dsri_gmatch_complete(m), "\\n\\n then x");
        CHECK(dsri_gmatch_reset(m) == DSR1_OK && dsri_gmatch_accept(m, "\n\n\nx", 4) == DSR1_ERR_STATE, "three");
        dsri_gmatch_free(m);
        CHECK(dsri_gmatch_new(lw, 0, &m) == DSR1_OK && dsri_gmatch_accept(m, "\nx", 2) == DSR1_ERR_STATE,
              "without lead ws the root is strict");
        dsri_gmatch_free(m);
        dsri_gbnf_free(lw);
    }
}

static void test_examples(const char *dir)
{
    static const struct {
        const char *file;
        const char *good[4];
        const char *bad[4];
    } ex[] = {
        {"json.gbnf",
         {"{}", "{\"a\": [1, 2.5e3, \"x\\n\", true, null], \"b\": {\"c\": -0.5}}", "{\"k\":\"\\u00e9\"} ", NULL},
         {"[]", "{\"a\" 1}", "{\"a\": 01}", "{\"a\": \"\x01\"}"}},
        {"arithmetic.gbnf", {"1+2=3\n", "(a *b)=c\nx/2 = 7\n", NULL, NULL}, {"1+=3\n", "=3\n", "1+2=3", NULL}},
        {"list.gbnf", {"- one\n- two\n", NULL, NULL, NULL}, {"- \n", "one\n", "- a\xe2\x80\xa8\n", NULL}},
        {"chess.gbnf", {"1. e4 e5\n2. Nf3 Nc6\n", "1. e4 e5\n2. O-O-O Qxd8#\n", NULL, NULL},
         {"1. e4 e5\n", "1. e9 e5\n2. a3 a4\n", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/grammar/%s", dir, ex[i].file);
        size_t len;
        char *text = read_file(path, &len);
        CHECK(text != NULL, "cannot read %s", path);
        if (!text)
            continue;
        dsri_gbnf *g = parse(text);
        for (int k = 0; g && k < 4; k++) {
            if (ex[i].good[k])
                expect(g, ex[i].good[k], 1);
            if (ex[i].bad[k])
                expect(g, ex[i].bad[k], 0);
        }
        dsri_gbnf_free(g);
        /* every prefix of the file: accepted or refused cleanly */
        for (size_t n = 0; n < len; n++) {
            dsri_gbnf *p = NULL;
            dsr1_status st = dsri_gbnf_parse(text, n, NULL, 2, &p);
            CHECK(st == DSR1_OK || (st == DSR1_ERR_FORMAT && dsr1_last_error()[0]),
                  "%s cut at %zu: status %d", ex[i].file, n, st);
            dsri_gbnf_free(p);
        }
        free(text);
    }
}

static void test_damaged(void)
{
    static const char *const bad[] = {
        "",                                   /* no root */
        "root ::= foo\n",                     /* undefined */
        "root ::= \"abc\n",                   /* unterminated literal */
        "root ::= [abc\n",                    /* unterminated class */
        "root ::= (\"a\"\n",                  /* unterminated group */
        "root ::= \"a\" )\n",                 /* stray ) */
        "root ::= *\n",                       /* repetition of nothing */
        "root ::= \"a\"{3,2}\n",              /* max < min */
        "root ::= \"a\"{99999}\n",            /* too many */
        "root ::= \"a\"{2\n",                 /* unclosed */
        "root ::= \"\\q\"\n",                 /* unknown escape */
        "root ::= \"\\x4\"\n",                /* short hex */
        "root ::= \"\\U00110000\"\n",         /* beyond Unicode */
        "root ::= [z-a]\n",                   /* backwards range */
        "root ::= \"\xff\"\n",                /* not UTF-8 */
        "root ::= \"a\"\nroot ::= \"b\"\n",   /* defined twice */
        "root = \"a\"\n",                     /* no ::= */
        "::= \"a\"\n",                        /* no name */
        "root ::= root \"a\" | \"a\"\n",      /* left recursion */
        "root ::= x root \"a\" | \"a\"\nx ::= \"b\"?\n", /* through a nullable rule */
        "root ::= a\na ::= b \"x\"\nb ::= c\nc ::= a | \"y\"\n", /* through a chain */
        "root ::= (\"\")*\n",                 /* a repeated empty item */
        "root ::= \"a\"{10000}{10000}\n",     /* expansion too large */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsri_gbnf *g = (dsri_gbnf *)1;
        dsr1_status st = dsri_gbnf_parse(bad[i], strlen(bad[i]), NULL, 0, &g);
        CHECK(st == DSR1_ERR_FORMAT && g == NULL && dsr1_last_error()[0], "bad grammar %zu accepted (%d): %s", i,
              st, bad[i]);
    }
    /* deep nesting is refused, not recursed into */
    char deep[4096];
    size_t n = (size_t)snprintf(deep, sizeof deep, "root ::= ");
    for (int i = 0; i < 1000; i++)
        deep[n++] = '(';
    deep[n++] = '"';
    deep[n++] = 'a';
    deep[n++] = '"';
    for (int i = 0; i < 1000; i++)
        deep[n++] = ')';
    deep[n++] = '\n';
    dsri_gbnf *g = NULL;
    CHECK(dsri_gbnf_parse(deep, n, NULL, 0, &g) == DSR1_ERR_FORMAT, "1000 nested groups");
    /* a very ambiguous grammar fails while matching, not by exploding */
    g = parse("root ::= x x x x x x x x x x x x\nx ::= (\"a\" | \"a\" | \"a\" | \"a\")?\n");
    if (g) {
        dsri_gmatch *m = NULL;
        dsr1_status st = dsri_gmatch_new(g, 0, &m);
        if (!st)
            st = dsri_gmatch_accept(m, "aaaaaa", 6);
        CHECK(st == DSR1_OK || st == DSR1_ERR_UNSUPPORTED, "ambiguous grammar: status %d", st);
        dsri_gmatch_free(m);
        dsri_gbnf_free(g);
    }
}

/* Masks from the trie equal a per-token check. */
static void test_masks(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-qwen2.gguf", dir);
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    mp.vocab_only = 1;
    dsr1_model *model = NULL;
    if (dsr1_model_load(path, &mp, &model) != DSR1_OK) {
        CHECK(0, "cannot load %s: %s", path, dsr1_last_error());
        return;
    }
    snprintf(path, sizeof path, "%s/grammar/json.gbnf", dir);
    size_t len;
    char *text = read_file(path, &len);
    dsr1_grammar *gr = NULL;
    CHECK(text && dsr1_grammar_new(model, text, len, NULL, &gr) == DSR1_OK, "grammar: %s", dsr1_last_error());
    if (gr) {
        const dsri_vtrie *t = dsri_grammar_trie(gr);
        int32_t nv = dsri_vtrie_n_vocab(t);
        uint64_t *mask = calloc(((size_t)nv + 63) / 64, 8);
        dsri_gmatch *m;
        CHECK(dsri_gmatch_new(dsri_grammar_rules(gr), 0, &m) == DSR1_OK, "matcher");
        /* states: the start, after a key, inside a string, inside a
         * number, in the middle of a two-byte character */
        static const char *const prefixes[] = {"", "{\"a\": ", "{\"a\": \"xy", "{\"a\": [1, -2", "{\"a\": \"\xc3"};
        for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++) {
            CHECK(dsri_gmatch_reset(m) == DSR1_OK, "reset");
            CHECK(dsri_gmatch_accept(m, prefixes[k], strlen(prefixes[k])) == DSR1_OK, "prefix %zu", k);
            for (int rep = 0; rep < 2; rep++) { /* the second time from the cache */
                CHECK(dsri_gmatch_mask(m, t, mask) == DSR1_OK, "mask: %s", dsr1_last_error());
                int32_t n_allowed = 0, wrong = 0, first_wrong = -1;
                for (int32_t id = 0; id < nv; id++) {
                    size_t pl;
                    const char *piece = dsri_vtrie_piece(t, id, &pl);
                    int want = piece && dsri_gmatch_would_accept(m, piece, pl);
                    int got = (int)((mask[id >> 6] >> (id & 63)) & 1);
                    n_allowed += got;
                    if (got != want && !wrong++)
                        first_wrong = id;
                }
                CHECK(wrong == 0, "prefix '%s': %d tokens differ from the brute force (first %d)", prefixes[k],
                      wrong, first_wrong);
                CHECK(n_allowed > 0, "prefix '%s': something is allowed", prefixes[k]);
                if (rep == 0)
                    printf("state %zu: %d of %d tokens allowed\n", k, n_allowed, nv);
            }
        }
        dsri_gmatch_free(m);
        free(mask);
    }
    dsr1_grammar_free(gr);
    /* the public entry points' argument and content errors */
    CHECK(dsr1_grammar_new(model, "x ::= \"a\"\n", 10, "y", &gr) == DSR1_ERR_FORMAT, "no such start rule");
    CHECK(dsr1_grammar_new(model, "x ::= \"a\"\n", 10, "x", &gr) == DSR1_OK, "start rule by name");
    dsr1_grammar_free(gr);
    CHECK(dsr1_grammar_new(NULL, "x", 1, NULL, &gr) == DSR1_ERR_INVALID_ARGUMENT, "NULL model");
    free(text);
    dsr1_model_free(model);
}

/* ---- JSON schemas ---- */

static void schema_case(const char *schema, const char *const *good, const char *const *bad)
{
    char *text;
    size_t len;
    dsr1_status st = dsri_json_schema_to_gbnf(schema, strlen(schema), &text, &len);
    CHECK(st == DSR1_OK, "schema %s: %s", schema, dsr1_last_error());
    if (st)
        return;
    dsri_gbnf *g = parse(text);
    for (int i = 0; g && good[i]; i++)
        expect(g, good[i], 1);
    for (int i = 0; g && bad[i]; i++)
        expect(g, bad[i], 0);
    dsri_gbnf_free(g);
    free(text);
}

static void test_schema(void)
{
    {
        const char *s = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":5},"
                        "\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b c\",3]},"
                        "\"minItems\":1,\"maxItems\":2},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"ok\"]}";
        const char *good[] = {"{\"name\":\"bob\",\"ok\":true}",
                              "{ \"name\": \"\", \"age\": -12, \"tags\": [\"a\", 3], \"ok\": false }",
                              "{\"name\":\"x\",\"tags\":[\"b c\"],\"ok\":true}", NULL};
        const char *bad[] = {"{\"ok\":true}",                           /* name missing */
                             "{\"name\":\"bob\"}",                      /* ok missing */
                             "{\"name\":\"toolong\",\"ok\":true}",      /* maxLength */
                             "{\"name\":\"b\",\"age\":1.5,\"ok\":true}", /* not an integer */
                             "{\"name\":\"b\",\"tags\":[],\"ok\":true}", /* minItems */
                             "{\"name\":\"b\",\"tags\":[\"a\",\"a\",\"a\"],\"ok\":true}", /* maxItems */
                             "{\"name\":\"b\",\"tags\":[\"c\"],\"ok\":true}", /* enum */
                             "{\"name\":\"b\",\"ok\":true,\"x\":1}",     /* unknown key */
                             "{\"ok\":true,\"name\":\"b\"}",            /* order of properties */
                             NULL};
        schema_case(s, good, bad);
    }
    {
        const char *good[] = {"1.5", "\"s\"", "null", "-3e10", NULL};
        const char *bad[] = {"true", "[1]", "01", NULL};
        schema_case("{\"type\":[\"number\",\"string\",\"null\"]}", good, bad);
    }
    {
        const char *good[] = {"{\"a\":[{},[]]}", "\"x\"", "[1,{\"k\":null}]", NULL};
        const char *bad[] = {"{a:1}", "[1,]", NULL};
        schema_case("{}", good, bad);
    }
    {
        const char *good[] = {"{\"k\":\"v\\\"q\\n\"}", "7", NULL};
        const char *bad[] = {"{\"k\":\"v\"}", "8", NULL};
        schema_case("{\"anyOf\":[{\"const\":{\"k\":\"v\\\"q\\n\"}},{\"const\":7}]}", good, bad);
    }
    static const char *const unsupported[] = {"{\"$ref\":\"#/x\"}", "{\"type\":\"string\",\"pattern\":\"a+\"}",
                                               "{\"type\":\"integer\",\"minimum\":3}",
                                               "{\"type\":\"object\",\"additionalProperties\":true}"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        char *t = NULL;
        size_t l;
        CHECK(dsri_json_schema_to_gbnf(unsupported[i], strlen(unsupported[i]), &t, &l) == DSR1_ERR_UNSUPPORTED,
              "%s", unsupported[i]);
        free(t);
    }
    static const char *const broken[] = {"", "{", "{\"type\":\"thing\"}", ("{\"type\":\"object\",\"required\":[\"x\"],"
                                          "\"properties\":{}}"), "{\"enum\":[]}", "{\"type\":\"string\",\"maxLength\":-1}",
                                         "[1,2", "{\"a\":1}x", "\"\\ud800\"", "7"};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        char *t = NULL;
        size_t l;
        CHECK(dsri_json_schema_to_gbnf(broken[i], strlen(broken[i]), &t, &l) == DSR1_ERR_FORMAT, "%s", broken[i]);
        free(t);
    }
    /* the public text API: size query, then the text */
    size_t need = 0;
    const char *s = "{\"type\":\"boolean\"}";
    CHECK(dsr1_json_schema_to_grammar(s, strlen(s), NULL, 0, &need) == DSR1_ERR_BUFFER_TOO_SMALL && need > 0, "size");
    char *buf = malloc(need + 1);
    CHECK(dsr1_json_schema_to_grammar(s, strlen(s), buf, need + 1, &need) == DSR1_OK && strstr(buf, "root ::= boolean"),
          "text");
    free(buf);
}

static void test_json(void)
{
    dsri_json *v = NULL;
    const char *doc = " {\"a\": [1, -2.5e3, \"\\u00e9\\ud83d\\ude00\", true, false, null], \"b\": {}} ";
    CHECK(dsri_json_parse(doc, strlen(doc), &v) == DSR1_OK, "parse: %s", dsr1_last_error());
    if (v) {
        const dsri_json *a = dsri_json_get(v, "a");
        CHECK(a && a->type == DSRI_JSON_ARRAY && a->n == 6, "array");
        CHECK(a && a->items[1]->number == -2500.0, "number");
        CHECK(a && strcmp(a->items[2]->text, "\xc3\xa9\xf0\x9f\x98\x80") == 0, "unicode escapes");
        CHECK(dsri_json_get(v, "b") && dsri_json_get(v, "b")->type == DSRI_JSON_OBJECT, "object");
        dsri_json_free(v);
    }
    char deep[300];
    memset(deep, '[', sizeof deep);
    CHECK(dsri_json_parse(deep, sizeof deep, &v) == DSR1_ERR_FORMAT, "deep nesting refused");
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data";
    test_basics();
    test_examples(dir);
    test_damaged();
    test_json();
    test_schema();
    test_masks(dir);
    return check_summary("test_grammar");
}
