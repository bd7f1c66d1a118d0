/*
 * libdsr1 - tests for the reasoning / answer splitter (lib/generate/think_split)
 * on scripted token streams; no model needed.
 *
 *   test_think_split [DATA_DIR]
 *
 * Markers as special tokens and as text split across tokens, a prompt that
 * opened <think>, missing </think>, text after EOS, the budget's injected
 * tokens, stop strings spanning tokens, whole UTF-8 characters, hidden
 * reasoning, token coverage of events, cancellation, and a randomized check
 * of the verbatim invariant. Exits non-zero on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate/think_split.h"

#include "utf8_check.h"
#include "check.h"


enum { SPECIAL_BEGIN = 1000, SPECIAL_END = 1001, EOS = 1002 };

/* ---- recording ---- */

typedef struct rec {
    char types[512]; /* one letter per event: B R E A D */
    int n_events;
    char reasoning[4096];
    size_t r_len;
    char answer[4096];
    size_t a_len;
    dsr1_token tokens[1024]; /* all event tokens in order */
    int n_tokens;
    dsr1_stop_reason reason;
    int n_done;
    int bad_utf8;
    int bad_nul;
    int cancel_at_answer; /* return 1 on the first ANSWER_TEXT */
    int empty_text_events;
} rec;

static int on_event(const dsr1_event *ev, void *user_data)
{
    rec *r = user_data;
    static const char letters[] = "BREAD";
    if (r->n_events < (int)sizeof r->types - 1)
        r->types[r->n_events++] = letters[ev->type];
    r->types[r->n_events] = '\0';
    for (int32_t i = 0; i < ev->n_tokens && r->n_tokens < 1024; i++)
        r->tokens[r->n_tokens++] = ev->tokens[i];
    if (ev->text[ev->text_len] != '\0')
        r->bad_nul++;
    if (!valid_utf8((const unsigned char *)ev->text, ev->text_len))
        r->bad_utf8++;
    if (ev->type == DSR1_EVENT_REASONING_TEXT || ev->type == DSR1_EVENT_ANSWER_TEXT) {
        if (ev->text_len == 0)
            r->empty_text_events++;
        char *dst = ev->type == DSR1_EVENT_REASONING_TEXT ? r->reasoning : r->answer;
        size_t *len = ev->type == DSR1_EVENT_REASONING_TEXT ? &r->r_len : &r->a_len;
        if (*len + ev->text_len < 4096) {
            memcpy(dst + *len, ev->text, ev->text_len);
            *len += ev->text_len;
            dst[*len] = '\0';
        }
        if (ev->type == DSR1_EVENT_ANSWER_TEXT && r->cancel_at_answer)
            return 1;
    }
    if (ev->type == DSR1_EVENT_DONE) {
        r->reason = ev->stop_reason;
        r->n_done++;
    }
    return 0;
}

static dsri_split *make(rec *r, int starts, int hide, const char *const *stops, int n_stops)
{
    memset(r, 0, sizeof *r);
    dsri_split_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.starts_in_reasoning = starts;
    cfg.hide_reasoning = hide;
    cfg.stop_strings = stops;
    cfg.n_stop_strings = n_stops;
    cfg.on_event = on_event;
    cfg.user_data = r;
    dsri_split *s = NULL;
    if (dsri_split_new(&cfg, &s) != DSR1_OK) {
        fprintf(stderr, "dsri_split_new failed\n");
        exit(1);
    }
    return s;
}

static dsr1_token g_next_id;

static void text(dsri_split *s, const char *t)
{
    CHECK(dsri_split_push(s, g_next_id++, DSRI_SPLIT_TEXT, t, strlen(t), 0) == DSR1_OK, "push");
}

static void special(dsri_split *s, dsri_split_kind kind)
{
    dsr1_token id = kind == DSRI_SPLIT_THINK_BEGIN ? SPECIAL_BEGIN : SPECIAL_END;
    CHECK(dsri_split_push(s, id, kind, NULL, 0, 0) == DSR1_OK, "push special");
}

static void finish(dsri_split *s, dsr1_stop_reason why)
{
    dsr1_token eos = EOS;
    CHECK(dsri_split_finish(s, why, why == DSR1_STOP_EOS ? &eos : NULL, why == DSR1_STOP_EOS) == DSR1_OK, "finish");
}

static void common_checks(const rec *r, const char *name)
{
    CHECK(r->bad_utf8 == 0, "%s: %d events with invalid UTF-8", name, r->bad_utf8);
    CHECK(r->bad_nul == 0, "%s: text not NUL-terminated", name);
    CHECK(r->n_done == 1, "%s: %d DONE events", name, r->n_done);
    CHECK(r->empty_text_events == 0, "%s: empty text events", name);
}

/* ---- cases ---- */

static void test_special_markers(void)
{
    rec r;
    dsri_split *s = make(&r, 0, 0, NULL, 0);
    g_next_id = 1;
    special(s, DSRI_SPLIT_THINK_BEGIN);
    CHECK(dsri_split_in_reasoning(s), "in reasoning after <think>");
    text(s, "Hello");
    text(s, " world");
    special(s, DSRI_SPLIT_THINK_END);
    CHECK(!dsri_split_in_reasoning(s), "out of reasoning after </think>");
    text(s, "\n\n");
    text(s, "Answer");
    finish(s, DSR1_STOP_EOS);
    CHECK(strcmp(r.reasoning, "Hello world") == 0, "reasoning '%s'", r.reasoning);
    CHECK(strcmp(r.answer, "\n\nAnswer") == 0, "answer '%s'", r.answer);
    CHECK(r.types[0] == 'B' && strchr(r.types, 'E') && r.types[r.n_events - 1] == 'D', "events %s", r.types);
    CHECK(r.reason == DSR1_STOP_EOS, "reason %d", r.reason);
    static const dsr1_token want[] = {SPECIAL_BEGIN, 1, 2, SPECIAL_END, 3, 4, EOS};
    CHECK(r.n_tokens == 7 && memcmp(r.tokens, want, sizeof want) == 0, "token coverage (%d tokens)", r.n_tokens);
    CHECK(dsri_split_n_reasoning(s) == 3, "reasoning tokens %d (the two texts and </think>)", dsri_split_n_reasoning(s));
    common_checks(&r, "special");
    dsri_split_free(s);
}

static void test_text_markers_split(void)
{
    rec r;
    dsri_split *s = make(&r, 0, 0, NULL, 0);
    g_next_id = 1;
    const char *pieces[] = {"<th", "ink", ">\nab", "c</", "thi", "nk>\n", "\nX", "<", "/think> <", "think>"};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
        text(s, pieces[i]);
    finish(s, DSR1_STOP_LENGTH);
    CHECK(strcmp(r.reasoning, "\nabc") == 0, "reasoning '%s'", r.reasoning);
    CHECK(strcmp(r.answer, "\n\nX</think> <think>") == 0, "answer '%s' (markers after the block are text)", r.answer);
    CHECK(strchr(r.types, 'B') && strchr(r.types, 'E'), "events %s", r.types);
    CHECK(r.reason == DSR1_STOP_LENGTH, "reason");
    /* every token exactly once, in order */
    int ok = r.n_tokens == 10;
    for (int i = 0; ok && i < 10; i++)
        ok = r.tokens[i] == i + 1;
    CHECK(ok, "token coverage: %d tokens", r.n_tokens);
    /* the BEGIN event carries the tokens that completed "<think>" */
    common_checks(&r, "split markers");
    dsri_split_free(s);

    /* a piece holding both markers and text around them */
    s = make(&r, 0, 0, NULL, 0);
    text(s, "pre<think>mid</think>post");
    finish(s, DSR1_STOP_EOS);
    CHECK(strcmp(r.reasoning, "mid") == 0 && strcmp(r.answer, "prepost") == 0, "one piece: '%s' '%s'", r.reasoning,
          r.answer);
    CHECK(strcmp(r.types, "ABREAD") == 0, "events %s", r.types);
    common_checks(&r, "one piece");
    dsri_split_free(s);

    /* a near-marker that is not one is released intact */
    s = make(&r, 1, 0, NULL, 0);
    text(s, "a</thin");
    text(s, "g>b</");
    text(s, "/think>");
    finish(s, DSR1_STOP_EOS);
    CHECK(strcmp(r.reasoning, "a</thing>b<//think>") == 0 && strcmp(r.answer, "") == 0, "near marker: '%s' '%s'",
          r.reasoning, r.answer);
    common_checks(&r, "near marker");
    dsri_split_free(s);
}

static void test_starts_in_reasoning(void)
{
    rec r;
    dsri_split *s = make(&r, 1, 0, NULL, 0);
    g_next_id = 1;
    text(s, "abc");
    text(s, "</think>");
    text(s, "\n\nans");
    finish(s, DSR1_STOP_EOS);
    CHECK(r.types[0] == 'B', "BEGIN first: %s", r.types);
    CHECK(strcmp(r.reasoning, "abc") == 0 && strcmp(r.answer, "\n\nans") == 0, "'%s' '%s'", r.reasoning, r.answer);
    CHECK(r.tokens[0] == 1, "BEGIN from the prompt carries no token");
    common_checks(&r, "starts in reasoning");
    dsri_split_free(s);

    /* "<think>" text inside an open block is reasoning text */
    s = make(&r, 1, 0, NULL, 0);
    text(s, "x<think>y");
    finish(s, DSR1_STOP_EOS);
    CHECK(strcmp(r.reasoning, "x<think>y") == 0, "'%s'", r.reasoning);
    dsri_split_free(s);
}

static void test_missing_end(void)
{
    rec r;
    dsri_split *s = make(&r, 1, 0, NULL, 0);
    g_next_id = 1;
    text(s, "abc");
    text(s, "de");
    text(s, "x</thi"); /* held back, released at the end */
    CHECK(strcmp(r.reasoning, "abcdex") == 0, "held: '%s'", r.reasoning);
    finish(s, DSR1_STOP_LENGTH);
    CHECK(strcmp(r.reasoning, "abcdex</thi") == 0, "reasoning '%s'", r.reasoning);
    CHECK(strchr(r.types, 'E') == NULL, "no END without </think>: %s", r.types);
    CHECK(r.a_len == 0, "no answer");
    CHECK(r.reason == DSR1_STOP_LENGTH, "reason");
    CHECK(dsri_split_in_reasoning(s), "still in reasoning");
    common_checks(&r, "missing end");
    dsri_split_free(s);
}

static void test_after_eos(void)
{
    rec r;
    dsri_split *s = make(&r, 0, 0, NULL, 0);
    g_next_id = 1;
    text(s, "hi");
    finish(s, DSR1_STOP_EOS);
    int n = r.n_events;
    text(s, " more");
    special(s, DSRI_SPLIT_THINK_BEGIN);
    finish(s, DSR1_STOP_LENGTH);
    CHECK(r.n_events == n, "events after the end");
    CHECK(strcmp(r.answer, "hi") == 0, "answer '%s'", r.answer);
    CHECK(r.reason == DSR1_STOP_EOS && dsri_split_finished(s), "reason");
    common_checks(&r, "after eos");
    dsri_split_free(s);
}

/* What the generation does when the thinking budget runs out: push the
 * tokens of "\n</think>\n\n" as forced tokens. */
static void test_budget_injection(void)
{
    rec r;
    dsri_split *s = make(&r, 1, 0, NULL, 0);
    g_next_id = 1;
    text(s, "a");
    text(s, " b");
    text(s, " c");
    CHECK(dsri_split_n_reasoning(s) == 3, "counted %d", dsri_split_n_reasoning(s));
    CHECK(dsri_split_push(s, 50, DSRI_SPLIT_TEXT, "\n", 1, 1) == DSR1_OK, "inject");
    CHECK(dsri_split_push(s, SPECIAL_END, DSRI_SPLIT_THINK_END, NULL, 0, 1) == DSR1_OK, "inject");
    CHECK(dsri_split_push(s, 51, DSRI_SPLIT_TEXT, "\n\n", 2, 1) == DSR1_OK, "inject");
    CHECK(dsri_split_n_reasoning(s) == 3, "forced tokens are not counted: %d", dsri_split_n_reasoning(s));
    CHECK(!dsri_split_in_reasoning(s), "closed");
    text(s, "ok");
    finish(s, DSR1_STOP_EOS);
    CHECK(strcmp(r.reasoning, "a b c\n") == 0 && strcmp(r.answer, "\n\nok") == 0, "'%s' '%s'", r.reasoning, r.answer);
    common_checks(&r, "budget");
    dsri_split_free(s);

    /* the same when </think> is not a special token: spelled in text */
    s = make(&r, 1, 0, NULL, 0);
    text(s, "thinking</th");
    CHECK(dsri_split_push(s, 50, DSRI_SPLIT_TEXT, "\n</", 3, 1) == DSR1_OK, "inject");
    CHECK(dsri_split_push(s, 51, DSRI_SPLIT_TEXT, "think>", 6, 1) == DSR1_OK, "inject");
    CHECK(dsri_split_push(s, 52, DSRI_SPLIT_TEXT, "\n\n", 2, 1) == DSR1_OK, "inject");
    finish(s, DSR1_STOP_EOS);
    CHECK(strcmp(r.reasoning, "thinking</th\n") == 0 && strcmp(r.answer, "\n\n") == 0, "'%s' '%s'", r.reasoning,
          r.answer);
    dsri_split_free(s);
}

static void test_stop_strings(void)
{
    const char *stops[] = {"STOP", "", "\n\nUser"};
    rec r;
    dsri_split *s = make(&r, 0, 0, stops, 3);
    g_next_id = 1;
    text(s, "hello S");
    CHECK(strcmp(r.answer, "hello ") == 0, "held back: '%s'", r.answer);
    text(s, "TO");
    text(s, "P more");
    CHECK(dsri_split_stop_matched(s), "matched");
    text(s, "ignored");
    finish(s, DSR1_STOP_STRING);
    CHECK(strcmp(r.answer, "hello ") == 0, "answer '%s'", r.answer);
    CHECK(r.reason == DSR1_STOP_STRING, "reason");
    CHECK(r.n_tokens == 3, "tokens of the discarded text go with DONE: %d", r.n_tokens);
    common_checks(&r, "stop");
    dsri_split_free(s);

    /* a prefix that does not complete is released */
    s = make(&r, 0, 0, stops, 3);
    text(s, "ST");
    text(s, "AY\n");
    text(s, "\nUse");
    text(s, "d");
    finish(s, DSR1_STOP_EOS);
    CHECK(strcmp(r.answer, "STAY\n\nUsed") == 0 && !dsri_split_stop_matched(s), "answer '%s'", r.answer);
    common_checks(&r, "near stop");
    dsri_split_free(s);

    /* reasoning is not searched; the answer is */
    s = make(&r, 1, 0, stops, 3);
    text(s, "xSTOPy</think>z\n\nUs");
    text(s, "er: hi");
    finish(s, DSR1_STOP_STRING);
    CHECK(strcmp(r.reasoning, "xSTOPy") == 0 && strcmp(r.answer, "z") == 0, "'%s' '%s'", r.reasoning, r.answer);
    dsri_split_free(s);

    /* the earliest match wins; a stop string before a marker */
    const char *s2[] = {"<th", "zz"};
    s = make(&r, 0, 0, s2, 2);
    text(s, "a<think>b");
    finish(s, DSR1_STOP_STRING);
    CHECK(strcmp(r.answer, "a") == 0 && r.r_len == 0, "'%s'", r.answer);
    dsri_split_free(s);

    /* fuzz_think_split: a stop string inside a text <think> completes before
     * the marker does, in one token as in many (the one that started first
     * used to win when both arrived in the same token) */
    const char *s5[] = {"hi"};
    for (int split = 0; split < 2; split++) {
        s = make(&r, 0, 0, s5, 1);
        if (split) {
            text(s, "a<th");
            text(s, "ink>b");
        } else {
            text(s, "a<think>b");
        }
        finish(s, DSR1_STOP_STRING);
        CHECK(strcmp(r.answer, "a<t") == 0 && r.r_len == 0 && strchr(r.types, 'B') == NULL &&
                  dsri_split_stop_matched(s),
              "split %d: '%s' events %s", split, r.answer, r.types);
        common_checks(&r, "stop inside a text marker");
        dsri_split_free(s);
    }
    /* of two stop strings that complete in the same token, the one that
     * ends first, whatever starts first */
    const char *s6[] = {"abcd", "bc"};
    s = make(&r, 0, 0, s6, 2);
    text(s, "xabcd");
    finish(s, DSR1_STOP_STRING);
    CHECK(strcmp(r.answer, "xa") == 0, "overlapping stop strings: '%s'", r.answer);
    dsri_split_free(s);

    /* Issue 17: a stop string across a spelled-out </think> (the special
     * token after the block closed is its spelling, plain text) */
    const char *s4[] = {"x</think>y", "<think>Q"};
    s = make(&r, 1, 0, s4, 2);
    text(s, "why");
    special(s, DSRI_SPLIT_THINK_END); /* closes the block */
    text(s, "ax");
    special(s, DSRI_SPLIT_THINK_END); /* spelled: "ax</think>" */
    CHECK(strcmp(r.answer, "a") == 0, "held back across the spelled marker: '%s'", r.answer);
    text(s, "yz");
    CHECK(dsri_split_stop_matched(s), "stop string across a spelled </think> not matched");
    finish(s, DSR1_STOP_STRING);
    CHECK(strcmp(r.reasoning, "why") == 0 && strcmp(r.answer, "a") == 0, "'%s' '%s'", r.reasoning, r.answer);
    common_checks(&r, "stop across spelled marker");
    dsri_split_free(s);
    /* ... and across a spelled <think> once the block was used */
    s = make(&r, 1, 0, s4, 2);
    special(s, DSRI_SPLIT_THINK_END);
    text(s, "b");
    special(s, DSRI_SPLIT_THINK_BEGIN);
    text(s, "Q!");
    finish(s, DSR1_STOP_STRING);
    CHECK(strcmp(r.answer, "b") == 0 && dsri_split_stop_matched(s), "'%s'", r.answer);
    dsri_split_free(s);

    /* multi-byte stop string split inside a character */
    const char *s3[] = {"\xE4\xBD\xA0\xE5\xA5\xBD"}; /* 你好 */
    s = make(&r, 0, 0, s3, 1);
    text(s, "ok \xE4\xBD");
    text(s, "\xA0\xE5");
    text(s, "\xA5\xBD!");
    finish(s, DSR1_STOP_STRING);
    CHECK(strcmp(r.answer, "ok ") == 0 && dsri_split_stop_matched(s), "'%s'", r.answer);
    common_checks(&r, "utf8 stop");
    dsri_split_free(s);
}

static void test_utf8(void)
{
    rec r;
    dsri_split *s = make(&r, 0, 0, NULL, 0);
    g_next_id = 1;
    text(s, "\xC3");
    CHECK(r.n_events == 0, "half a character delivered");
    text(s, "\xA9");
    CHECK(strcmp(r.answer, "\xC3\xA9") == 0 && r.n_tokens == 2, "é with both tokens: '%s' %d", r.answer, r.n_tokens);
    text(s, "\xE4");
    text(s, "\xBD");
    text(s, "\xA0\xF0\x9F");
    text(s, "\x98\x80");
    CHECK(strcmp(r.answer, "\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80") == 0, "'%s'", r.answer);
    text(s, "\xFF"); /* never valid */
    text(s, "a\xE4\xBD"); /* incomplete at the end */
    finish(s, DSR1_STOP_EOS);
    CHECK(strcmp(r.answer, "\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80\xEF\xBF\xBD"
                           "a\xEF\xBF\xBD") == 0,
          "replacement characters: '%s'", r.answer);
    common_checks(&r, "utf8");
    dsri_split_free(s);

    /* an incomplete character right before a marker can never complete */
    s = make(&r, 1, 0, NULL, 0);
    text(s, "x\xE4\xBD</think>y");
    finish(s, DSR1_STOP_EOS);
    CHECK(strcmp(r.reasoning, "x\xEF\xBF\xBD") == 0 && strcmp(r.answer, "y") == 0, "'%s' '%s'", r.reasoning, r.answer);
    common_checks(&r, "utf8 marker");
    dsri_split_free(s);
}

static void test_hidden(void)
{
    rec r;
    dsri_split *s = make(&r, 1, 1, NULL, 0);
    g_next_id = 1;
    text(s, "secret");
    text(s, " thoughts");
    special(s, DSRI_SPLIT_THINK_END);
    text(s, "shown");
    finish(s, DSR1_STOP_EOS);
    CHECK(r.r_len == 0 && strcmp(r.answer, "shown") == 0, "'%s' '%s'", r.reasoning, r.answer);
    CHECK(strcmp(r.types, "BEAD") == 0, "events %s", r.types);
    static const dsr1_token want[] = {1, 2, SPECIAL_END, 3, EOS};
    CHECK(r.n_tokens == 5 && memcmp(r.tokens, want, sizeof want) == 0, "END carries the hidden tokens");
    CHECK(dsri_split_n_reasoning(s) == 3, "still counted");
    dsri_split_free(s);
}

static void test_stray_and_cancel(void)
{
    rec r;
    dsri_split *s = make(&r, 0, 0, NULL, 0);
    g_next_id = 1;
    text(s, "a");
    special(s, DSRI_SPLIT_THINK_END); /* not in a block: text */
    text(s, "b");
    special(s, DSRI_SPLIT_THINK_BEGIN); /* opens the block */
    text(s, "r");
    special(s, DSRI_SPLIT_THINK_BEGIN); /* inside it: text */
    special(s, DSRI_SPLIT_THINK_END);
    special(s, DSRI_SPLIT_THINK_BEGIN); /* after it: text */
    finish(s, DSR1_STOP_EOS);
    CHECK(strcmp(r.answer, "a</think>b<think>") == 0 && strcmp(r.reasoning, "r<think>") == 0, "'%s' '%s'", r.answer,
          r.reasoning);
    CHECK(strcmp(r.types, "AAABRREAD") == 0, "events %s", r.types);
    static const dsr1_token want[] = {1, SPECIAL_END, 2, SPECIAL_BEGIN, 3, SPECIAL_BEGIN, SPECIAL_END, SPECIAL_BEGIN, EOS};
    CHECK(r.n_tokens == 9 && memcmp(r.tokens, want, sizeof want) == 0, "tokens of stray markers");
    dsri_split_free(s);

    s = make(&r, 0, 0, NULL, 0);
    r.cancel_at_answer = 1;
    text(s, "a");
    CHECK(dsri_split_cancel_requested(s), "callback cancel seen");
    dsri_split_free(s);
}

/* Random strings A <think> R </think> B cut into random pieces, with
 * near-markers and multi-byte characters: REASONING == R, ANSWER == A B. */
static uint32_t g_rng = 1;
static uint32_t rnd(uint32_t n)
{
    g_rng = g_rng * 1103515245u + 12345u;
    return (g_rng >> 8) % n;
}

static size_t random_text(char *out, int forbid_begin, int forbid_end)
{
    static const char *const atoms[] = {"a", "<", "/", "t", "h", "i", "n", "k", ">", "\n", " ", "<th", "</thi",
                                        "think", "\xC3\xA9", "\xE4\xBD\xA0", "\xF0\x9F\x98\x80", "</", "<think",
                                        "/think>"};
    size_t n = 0;
    int k = (int)rnd(12);
    for (int i = 0; i < k; i++) {
        const char *a = atoms[rnd(sizeof atoms / sizeof atoms[0])];
        memcpy(out + n, a, strlen(a));
        n += strlen(a);
        out[n] = '\0';
        /* keep the marker that would end this part out of it */
        if ((forbid_begin && strstr(out, "<think>")) || (forbid_end && strstr(out, "</think>"))) {
            n -= strlen(a);
            out[n] = '\0';
        }
    }
    out[n] = '\0';
    return n;
}

static void test_random(void)
{
    for (int iter = 0; iter < 3000; iter++) {
        char A[256], R[256], B[256], all[1024];
        random_text(A, 1, 0);
        random_text(R, 0, 1);
        random_text(B, 0, 0);
        int with_block = rnd(4) != 0;
        int special_markers = rnd(2);
        snprintf(all, sizeof all, "%s%s%s%s%s", A, with_block ? "<think>" : "", with_block ? R : "",
                 with_block ? "</think>" : "", with_block ? B : "");
        /* skip strings where the marker appears earlier than intended */
        char *first = strstr(all, "<think>");
        if (with_block && first != all + strlen(A))
            continue;
        if (!with_block && first)
            continue;
        if (with_block) {
            char *end = strstr(first + 7, "</think>");
            if (end != first + 7 + strlen(R))
                continue;
        }
        rec r;
        dsri_split *s = make(&r, 0, 0, NULL, 0);
        g_next_id = 1;
        /* feed: A pieces, marker, R pieces, marker, B pieces */
        const char *parts[5] = {A, "<think>", R, "</think>", B};
        int nparts = with_block ? 5 : 1;
        for (int pi = 0; pi < nparts; pi++) {
            if ((pi == 1 || pi == 3) && special_markers) {
                special(s, pi == 1 ? DSRI_SPLIT_THINK_BEGIN : DSRI_SPLIT_THINK_END);
                continue;
            }
            const char *p = parts[pi];
            size_t len = strlen(p);
            for (size_t off = 0; off < len;) {
                size_t take = 1 + rnd(4);
                if (take > len - off)
                    take = len - off;
                CHECK(dsri_split_push(s, g_next_id++, DSRI_SPLIT_TEXT, p + off, take, 0) == DSR1_OK, "push");
                off += take;
            }
        }
        finish(s, DSR1_STOP_EOS);
        char want_answer[600];
        snprintf(want_answer, sizeof want_answer, "%s%s", A, with_block ? B : "");
        const char *want_reasoning = with_block ? R : "";
        int ok = strcmp(r.reasoning, want_reasoning) == 0 && strcmp(r.answer, want_answer) == 0;
        CHECK(ok, "iteration %d: reasoning '%s' (want '%s'), answer '%s' (want '%s')", iter, r.reasoning,
              want_reasoning, r.answer, want_answer);
        int cover = r.n_tokens == g_next_id - 1 + (with_block && special_markers ? 2 : 0) + 1;
        CHECK(cover, "iteration %d: %d tokens delivered", iter, r.n_tokens);
        common_checks(&r, "random");
        dsri_split_free(s);
        if (failures > 20)
            return;
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    test_special_markers();
    test_text_markers_split();
    test_starts_in_reasoning();
    test_missing_end();
    test_after_eos();
    test_budget_injection();
    test_stop_strings();
    test_utf8();
    test_hidden();
    test_stray_and_cancel();
    test_random();
    return check_summary("test_think_split");
}
