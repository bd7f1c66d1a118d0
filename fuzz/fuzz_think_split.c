/*
 * libFuzzer target: the reasoning / answer splitter and stop strings
 * (lib/generate/think_split) on arbitrary byte streams in arbitrary
 * chunkings, checked against a naive reference that sees the whole text at
 * once: what the events deliver must be exactly the input minus what the
 * contract removes (the markers that open and close the block, a stop
 * string and everything after it), with bytes that can never form UTF-8
 * replaced by U+FFFD. Also: every pushed token is covered by exactly one
 * event, in order, the events come in a valid order, and hidden reasoning
 * sends no text.
 *
 * Input: byte 0: bit 0 the prompt opened <think>, bit 1 hide the reasoning,
 * bits 2-3 the number of stop strings; then the stop strings, each ended by
 * a NUL; then tokens: a length byte L and L & 15 bytes of text, or L = 0xFF
 * for the <think> special token, 0xFE for </think>.
 *   build-fuzz/fuzz/fuzz_think_split CORPUS   (seeds: fuzz/corpus/think_split)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "generate/think_split.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STOPS 3
#define MAX_INPUT 4096
#define CAP (4 * MAX_INPUT + 64) /* U+FFFD triples a byte at most */

typedef struct text {
    char b[CAP];
    size_t n;
} text;

static void append(text *t, const void *p, size_t n)
{
    if (t->n + n > CAP)
        abort();
    memcpy(t->b + t->n, p, n);
    t->n += n;
}

/* ---- the reference ---- */

/* Unicode's well-formed sequences (Table 3-7); each maximal subpart of an
 * ill-formed one becomes one U+FFFD. */
static void append_sanitized(text *t, const uint8_t *p, size_t n)
{
    static const struct {
        uint8_t lead_lo, lead_hi, len, second_lo, second_hi;
    } forms[] = {
        {0xC2, 0xDF, 2, 0x80, 0xBF}, {0xE0, 0xE0, 3, 0xA0, 0xBF}, {0xE1, 0xEC, 3, 0x80, 0xBF},
        {0xED, 0xED, 3, 0x80, 0x9F}, {0xEE, 0xEF, 3, 0x80, 0xBF}, {0xF0, 0xF0, 4, 0x90, 0xBF},
        {0xF1, 0xF3, 4, 0x80, 0xBF}, {0xF4, 0xF4, 4, 0x80, 0x8F},
    };
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            append(t, p + i++, 1);
            continue;
        }
        size_t len = 0, ok = 1; /* bytes of the sequence that fit its form */
        for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++)
            if (p[i] >= forms[f].lead_lo && p[i] <= forms[f].lead_hi) {
                len = forms[f].len;
                if (i + 1 < n && p[i + 1] >= forms[f].second_lo && p[i + 1] <= forms[f].second_hi)
                    for (ok = 2; ok < len && i + ok < n && p[i + ok] >= 0x80 && p[i + ok] <= 0xBF; ok++)
                        ;
                break;
            }
        if (len && ok == len)
            append(t, p + i, len);
        else
            append(t, "\xEF\xBF\xBD", 3);
        i += ok;
    }
}

/* First occurrence of pat in h, or -1. */
static long first_at(const char *h, size_t n, const char *pat, size_t m)
{
    for (size_t i = 0; m && i + m <= n; i++)
        if (memcmp(h + i, pat, m) == 0)
            return (long)i;
    return -1;
}

typedef struct ref {
    const char *stops[MAX_STOPS];
    int n_stops;
    int in_reasoning, opened, closed, stopped;
    text cur;                  /* raw text since the last decision */
    text pre, reasoning, post; /* expected streams */
} ref;

static text *ref_stream(ref *r)
{
    return r->in_reasoning ? &r->reasoning : r->opened ? &r->post : &r->pre;
}

/* Act on the first pattern that is complete in cur: the one that ends
 * first (then the longest; a stop string before a marker); repeat. */
static void ref_decide(ref *r)
{
    while (!r->stopped) {
        long best = -1, best_end = 0;
        size_t best_len = 0;
        int best_stop = 0;
        const char *pats[MAX_STOPS + 1];
        int n_pats = 0;
        if (r->in_reasoning) {
            pats[n_pats++] = "</think>";
        } else {
            for (int i = 0; i < r->n_stops; i++)
                pats[n_pats++] = r->stops[i];
            if (!r->opened)
                pats[n_pats++] = "<think>";
        }
        for (int i = 0; i < n_pats; i++) {
            size_t m = strlen(pats[i]);
            long at = first_at(r->cur.b, r->cur.n, pats[i], m);
            if (at >= 0 && (best < 0 || at + (long)m < best_end || (at + (long)m == best_end && at < best))) {
                best = at;
                best_end = at + (long)m;
                best_len = m;
                best_stop = !r->in_reasoning && i < r->n_stops;
            }
        }
        if (best < 0)
            return;
        append_sanitized(ref_stream(r), (const uint8_t *)r->cur.b, (size_t)best);
        size_t rest = r->cur.n - (size_t)best - best_len;
        memmove(r->cur.b, r->cur.b + best + best_len, rest);
        r->cur.n = rest;
        if (best_stop) {
            r->stopped = 1;
            return;
        }
        if (r->in_reasoning) {
            r->in_reasoning = 0;
            r->closed = 1;
        } else {
            r->in_reasoning = r->opened = 1;
        }
    }
}

/* The text before a marker, or at the end. */
static void ref_flush(ref *r)
{
    if (!r->stopped)
        append_sanitized(ref_stream(r), (const uint8_t *)r->cur.b, r->cur.n);
    r->cur.n = 0;
}

/* ---- what the splitter delivers ---- */

typedef struct got {
    int hide;
    int phase; /* 0 before BEGIN, 1 inside, 2 after END */
    int n_begin, n_end, n_done;
    dsr1_stop_reason reason;
    text pre, reasoning, post;
    dsr1_token ids[MAX_INPUT + 8];
    int n_ids;
} got;

/* Every event, hidden reasoning included. */
static int on_tap(const dsr1_event *ev, void *user_data)
{
    got *g = user_data;
    if (g->n_done)
        abort(); /* an event after DONE */
    if (ev->text[ev->text_len] != '\0')
        abort();
    switch (ev->type) {
    case DSR1_EVENT_REASONING_BEGIN:
        if (g->phase != 0 || g->n_begin++)
            abort();
        g->phase = 1;
        break;
    case DSR1_EVENT_REASONING_END:
        if (g->phase != 1 || g->n_end++)
            abort();
        g->phase = 2;
        break;
    case DSR1_EVENT_REASONING_TEXT:
    case DSR1_EVENT_ANSWER_TEXT:
        if (ev->text_len == 0 || (ev->type == DSR1_EVENT_REASONING_TEXT) != (g->phase == 1))
            abort();
        append(g->phase == 0 ? &g->pre : g->phase == 1 ? &g->reasoning : &g->post, ev->text, ev->text_len);
        break;
    case DSR1_EVENT_DONE:
        g->n_done++;
        g->reason = ev->stop_reason;
        break;
    default:
        abort();
    }
    return 0;
}

/* The events the host sees: the tokens they cover. */
static int on_event(const dsr1_event *ev, void *user_data)
{
    got *g = user_data;
    if (g->hide && ev->type == DSR1_EVENT_REASONING_TEXT)
        abort();
    if (ev->n_tokens < 0 || (ev->n_tokens > 0 && !ev->tokens) || g->n_ids + ev->n_tokens > MAX_INPUT + 8)
        abort();
    for (int32_t i = 0; i < ev->n_tokens; i++)
        g->ids[g->n_ids++] = ev->tokens[i];
    return 0;
}

static void same(const text *a, const text *b)
{
    if (a->n != b->n || memcmp(a->b, b->b, a->n) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > MAX_INPUT)
        return 0;
    static ref r; /* large: kept off the stack */
    static got g;
    memset(&r, 0, sizeof r);
    memset(&g, 0, sizeof g);

    size_t pos = 1;
    char stop_buf[MAX_INPUT + 1];
    size_t stop_used = 0;
    const char *stops[MAX_STOPS];
    int n_stops = (data[0] >> 2) & 3;
    for (int i = 0; i < n_stops; i++) {
        const uint8_t *end = memchr(data + pos, 0, size - pos);
        size_t len = end ? (size_t)(end - (data + pos)) : size - pos;
        memcpy(stop_buf + stop_used, data + pos, len);
        stop_buf[stop_used + len] = '\0';
        stops[i] = stop_buf + stop_used;
        if (len) /* empty stop strings are ignored */
            r.stops[r.n_stops++] = stops[i];
        stop_used += len + 1;
        pos += len + (end != NULL);
    }

    dsri_split_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.starts_in_reasoning = data[0] & 1;
    cfg.hide_reasoning = (data[0] >> 1) & 1;
    cfg.stop_strings = stops;
    cfg.n_stop_strings = n_stops;
    cfg.on_event = on_event;
    cfg.user_data = &g;
    dsri_split *s = NULL;
    if (dsri_split_new(&cfg, &s) != DSR1_OK)
        abort();
    dsri_split_set_tap(s, on_tap, &g);
    g.hide = cfg.hide_reasoning;
    r.in_reasoning = r.opened = cfg.starts_in_reasoning;

    dsr1_token want[MAX_INPUT + 8];
    int n_want = 0;
    for (dsr1_token id = 0; pos < size; id++) {
        uint8_t l = data[pos++];
        dsri_split_kind kind = l == 0xFF ? DSRI_SPLIT_THINK_BEGIN : l == 0xFE ? DSRI_SPLIT_THINK_END : DSRI_SPLIT_TEXT;
        size_t len = kind == DSRI_SPLIT_TEXT ? l & 15u : 0;
        if (len > size - pos)
            len = size - pos;
        const char *piece = (const char *)data + pos;
        pos += len;
        if (!r.stopped) {
            want[n_want++] = id;
            int opens = kind == DSRI_SPLIT_THINK_BEGIN && !r.in_reasoning && !r.opened;
            int closes = kind == DSRI_SPLIT_THINK_END && r.in_reasoning;
            if (opens || closes) {
                ref_flush(&r);
                r.in_reasoning = opens;
                r.opened = 1;
                r.closed |= closes;
            } else {
                if (kind != DSRI_SPLIT_TEXT) { /* not a marker where it stands: its spelling */
                    piece = kind == DSRI_SPLIT_THINK_BEGIN ? "<think>" : "</think>";
                    len = strlen(piece);
                }
                append(&r.cur, piece, len);
                ref_decide(&r);
            }
        }
        if (dsri_split_push(s, id, kind, piece, len, 0) != DSR1_OK)
            abort();
        if (dsri_split_stop_matched(s) != r.stopped || dsri_split_in_reasoning(s) != r.in_reasoning)
            abort();
    }
    ref_flush(&r);
    dsr1_token eos = 1 << 30;
    want[n_want++] = eos;
    if (dsri_split_finish(s, DSR1_STOP_EOS, &eos, 1) != DSR1_OK)
        abort();
    dsri_split_free(s);

    same(&g.pre, &r.pre);
    same(&g.reasoning, &r.reasoning);
    same(&g.post, &r.post);
    if (g.n_done != 1 || g.reason != DSR1_STOP_EOS || g.n_begin != (r.opened ? 1 : 0) ||
        g.n_end != (r.closed ? 1 : 0))
        abort();
    if (g.n_ids != n_want || memcmp(g.ids, want, (size_t)n_want * sizeof *want) != 0)
        abort(); /* every token in exactly one event, in order */
    return 0;
}
