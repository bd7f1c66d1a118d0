/*
 * The reasoning / answer splitter: see think_split.h for the rules.
 *
 * Bytes of pushed tokens collect in `pend`. After each push, `process` takes
 * from its front what is decided: text before a marker or a stop string, or
 * text that can no longer become one (the longest suffix that is a proper
 * prefix of a pattern stays, and so does an incomplete UTF-8 character at the
 * end). Byte offsets of the input stream are counted so that every token can
 * be attached to the event that consumes its last byte.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "generate/think_split.h"

#define THINK_BEGIN "<think>"
#define THINK_END "</think>"

struct dsri_split {
    int hide_reasoning;
    dsr1_event_fn on_event;
    void *user_data;
    dsr1_event_fn tap; /* sees every event, hidden ones included */
    void *tap_data;
    char **stops;
    size_t *stop_len;
    int32_t n_stops;

    int in_reasoning;
    int block_opened;
    int begin_pending; /* the prompt opened the block: deliver BEGIN first */
    int stop_matched;
    int cancel;
    int finished;
    int32_t n_reasoning;

    char *pend;
    size_t pend_len, pend_cap;
    uint64_t total_in; /* bytes pushed */
    uint64_t consumed; /* bytes decided (delivered, markers, discarded) */

    /* tokens not yet delivered: id and the input offset past its last byte */
    dsr1_token *q_tok;
    uint64_t *q_end;
    size_t q_head, q_len, q_cap, q_cap_end;

    char *out; /* event text, NUL-terminated */
    size_t out_len, out_cap;
};

/* ---- buffers ---- */

static int grow(void **buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *p = dsri_realloc(*buf, n * elem);
    if (!p)
        return 0;
    *buf = p;
    *cap = n;
    return 1;
}

static dsr1_status oom(void) { return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "generation: out of memory"); }

/* ---- UTF-8 ---- */

/* Append whole characters of p[0..n) to s->out; bytes that can never form a
 * character become U+FFFD. Unless final, an incomplete (but so far valid)
 * character at the end is left. Returns the bytes consumed, or -1 (OOM). */
static long take_utf8(dsri_split *s, const unsigned char *p, size_t n, int final)
{
    if (!grow((void **)&s->out, &s->out_cap, s->out_len + 3 * n + 1, 1))
        return -1;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            s->out[s->out_len++] = (char)c;
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        } else {
            need = 0; /* never valid as a lead byte */
        }
        size_t j = 1;
        int bad = need == 0;
        while (!bad && j <= need) {
            if (i + j >= n) {
                if (!final)
                    return (long)i; /* may still complete */
                bad = 1;
                break;
            }
            unsigned b = p[i + j];
            if (b < lo || b > hi) {
                bad = 1;
                break;
            }
            lo = 0x80, hi = 0xBF;
            j++;
        }
        if (bad) { /* the maximal invalid subpart becomes one U+FFFD */
            memcpy(s->out + s->out_len, "\xEF\xBF\xBD", 3);
            s->out_len += 3;
            i += j;
        } else {
            memcpy(s->out + s->out_len, p + i, need + 1);
            s->out_len += need + 1;
            i += need + 1;
        }
    }
    return (long)i;
}

/* ---- events ---- */

static void deliver(dsri_split *s, dsr1_event_type type, const char *text, size_t len, int all_tokens,
                    int no_tokens, dsr1_stop_reason reason)
{
    size_t n = 0;
    if (!no_tokens)
        while (s->q_head + n < s->q_len && (all_tokens || s->q_end[s->q_head + n] <= s->consumed))
            n++;
    /* (q_tok is NULL until the first token is queued: no pointer arithmetic on it) */
    const dsr1_token *ids = n ? s->q_tok + s->q_head : NULL;
    s->q_head += n; /* the ids stay in place until the next enqueue */

    dsr1_event ev;
    memset(&ev, 0, sizeof ev);
    ev.size = sizeof ev;
    ev.type = type;
    ev.text = text ? text : "";
    ev.text_len = text ? len : 0;
    ev.tokens = ids;
    ev.n_tokens = (int32_t)n;
    ev.stop_reason = reason;
    if (s->tap)
        s->tap(&ev, s->tap_data);
    if (s->on_event) {
        dsri_error_saved saved;
        dsri_error_save(&saved);
        if (s->on_event(&ev, s->user_data) != 0)
            s->cancel = 1;
        dsri_error_restore(&saved);
    }
}

static void deliver_begin_if_pending(dsri_split *s)
{
    if (s->begin_pending) {
        s->begin_pending = 0;
        deliver(s, DSR1_EVENT_REASONING_BEGIN, NULL, 0, 0, 1, DSR1_STOP_NONE);
    }
}

/* Remove k bytes from the front of pend. */
static void drop_front(dsri_split *s, size_t k)
{
    memmove(s->pend, s->pend + k, s->pend_len - k);
    s->pend_len -= k;
    s->consumed += k;
}

/* Deliver up to k bytes from the front of pend as text of the current
 * stream (whole characters only unless final). */
static dsr1_status emit_text(dsri_split *s, size_t k, int final)
{
    if (k == 0)
        return DSR1_OK;
    s->out_len = 0;
    long took = take_utf8(s, (const unsigned char *)s->pend, k, final);
    if (took < 0)
        return oom();
    drop_front(s, (size_t)took);
    s->out[s->out_len] = '\0';
    if (s->out_len == 0)
        return DSR1_OK;
    if (s->in_reasoning) {
        if (!s->hide_reasoning) {
            deliver(s, DSR1_EVENT_REASONING_TEXT, s->out, s->out_len, 0, 0, DSR1_STOP_NONE);
        } else if (s->tap) { /* hidden: only the tap sees it, the tokens stay queued */
            dsr1_event ev;
            memset(&ev, 0, sizeof ev);
            ev.size = sizeof ev;
            ev.type = DSR1_EVENT_REASONING_TEXT;
            ev.text = s->out;
            ev.text_len = s->out_len;
            s->tap(&ev, s->tap_data);
        }
    } else {
        deliver(s, DSR1_EVENT_ANSWER_TEXT, s->out, s->out_len, 0, 0, DSR1_STOP_NONE);
    }
    return DSR1_OK;
}

static long find(const char *h, size_t n, const char *pat, size_t m)
{
    if (m == 0 || m > n)
        return -1;
    for (size_t i = 0; i + m <= n; i++)
        if (h[i] == pat[0] && memcmp(h + i, pat, m) == 0)
            return (long)i;
    return -1;
}

/* Length of the longest suffix of h[0..n) that is a proper prefix of pat. */
static size_t partial(const char *h, size_t n, const char *pat, size_t m)
{
    size_t k = m - 1 < n ? m - 1 : n;
    for (; k > 0; k--)
        if (memcmp(h + n - k, pat, k) == 0)
            return k;
    return 0;
}

/* Whether a match at `at` of length len ends before the best so far (at
 * best, of best_len; best < 0: none), or ends with it and is longer. */
static int completes_first(long at, size_t len, long best, size_t best_len)
{
    if (best < 0)
        return 1;
    size_t end = (size_t)at + len, best_end = (size_t)best + best_len;
    return end < best_end || (end == best_end && at < best);
}

static void open_block(dsri_split *s)
{
    s->in_reasoning = 1;
    s->block_opened = 1;
    deliver(s, DSR1_EVENT_REASONING_BEGIN, NULL, 0, 0, 0, DSR1_STOP_NONE);
}

static void close_block(dsri_split *s)
{
    s->in_reasoning = 0;
    deliver(s, DSR1_EVENT_REASONING_END, NULL, 0, 0, 0, DSR1_STOP_NONE);
}

/* Take everything decided from pend. final: nothing more will follow
 * directly (end of stream, or a special token comes next). */
static dsr1_status process(dsri_split *s, int final)
{
    dsr1_status st;
    while (!s->stop_matched) {
        const char *h = s->pend;
        size_t n = s->pend_len;
        if (s->in_reasoning) {
            long at = find(h, n, THINK_END, sizeof THINK_END - 1);
            if (at >= 0) {
                if ((st = emit_text(s, (size_t)at, 1)))
                    return st;
                drop_front(s, sizeof THINK_END - 1);
                close_block(s);
                continue;
            }
            size_t hold = final ? 0 : partial(h, n, THINK_END, sizeof THINK_END - 1);
            return emit_text(s, n - hold, final);
        }
        /* answer: the stop string or opening marker that completes first
         * (then the longest; on a full tie a stop string). Not the one that
         * starts first: a token holding all of "<think>" must act as the
         * same text split over tokens would, where a stop string "hi" is
         * complete before the marker is. */
        long best = -1;
        int best_is_stop = 0;
        size_t best_len = 0;
        for (int32_t i = 0; i < s->n_stops; i++) {
            long at = find(h, n, s->stops[i], s->stop_len[i]);
            if (at >= 0 && completes_first(at, s->stop_len[i], best, best_len)) {
                best = at;
                best_is_stop = 1;
                best_len = s->stop_len[i];
            }
        }
        if (!s->block_opened) {
            long at = find(h, n, THINK_BEGIN, sizeof THINK_BEGIN - 1);
            if (at >= 0 && completes_first(at, sizeof THINK_BEGIN - 1, best, best_len)) {
                best = at;
                best_is_stop = 0;
                best_len = sizeof THINK_BEGIN - 1;
            }
        }
        if (best >= 0) {
            if ((st = emit_text(s, (size_t)best, 1)))
                return st;
            if (best_is_stop) {
                s->stop_matched = 1; /* the match and the rest are never delivered */
                s->consumed += s->pend_len;
                s->pend_len = 0;
                return DSR1_OK;
            }
            drop_front(s, best_len);
            open_block(s);
            continue;
        }
        size_t hold = 0;
        if (!final) {
            for (int32_t i = 0; i < s->n_stops; i++) {
                size_t k = partial(h, n, s->stops[i], s->stop_len[i]);
                hold = k > hold ? k : hold;
            }
            if (!s->block_opened) {
                size_t k = partial(h, n, THINK_BEGIN, sizeof THINK_BEGIN - 1);
                hold = k > hold ? k : hold;
            }
        }
        return emit_text(s, n - hold, final);
    }
    return DSR1_OK;
}

static dsr1_status enqueue(dsri_split *s, dsr1_token token)
{
    if (s->q_head > 0) { /* drop delivered ids */
        memmove(s->q_tok, s->q_tok + s->q_head, (s->q_len - s->q_head) * sizeof *s->q_tok);
        memmove(s->q_end, s->q_end + s->q_head, (s->q_len - s->q_head) * sizeof *s->q_end);
        s->q_len -= s->q_head;
        s->q_head = 0;
    }
    if (!grow((void **)&s->q_tok, &s->q_cap, s->q_len + 1, sizeof *s->q_tok) ||
        !grow((void **)&s->q_end, &s->q_cap_end, s->q_len + 1, sizeof *s->q_end))
        return oom();
    s->q_tok[s->q_len] = token;
    s->q_end[s->q_len] = s->total_in;
    s->q_len++;
    return DSR1_OK;
}

/* ---- public (internal) API ---- */

dsr1_status dsri_split_new(const dsri_split_config *cfg, dsri_split **out)
{
    *out = NULL;
    dsri_split *s = dsri_calloc(1, sizeof *s);
    if (!s)
        return oom();
    s->hide_reasoning = cfg->hide_reasoning != 0;
    s->on_event = cfg->on_event;
    s->user_data = cfg->user_data;
    s->in_reasoning = cfg->starts_in_reasoning != 0;
    s->block_opened = s->in_reasoning;
    s->begin_pending = s->in_reasoning;
    if (cfg->n_stop_strings > 0 && cfg->stop_strings) {
        s->stops = dsri_calloc((size_t)cfg->n_stop_strings, sizeof *s->stops);
        s->stop_len = dsri_calloc((size_t)cfg->n_stop_strings, sizeof *s->stop_len);
        if (!s->stops || !s->stop_len) {
            dsri_split_free(s);
            return oom();
        }
        for (int32_t i = 0; i < cfg->n_stop_strings; i++) {
            const char *str = cfg->stop_strings[i];
            if (!str || !*str)
                continue;
            size_t len = strlen(str);
            if (!(s->stops[s->n_stops] = dsri_strndup(str, len))) {
                dsri_split_free(s);
                return oom();
            }
            s->stop_len[s->n_stops++] = len;
        }
    }
    *out = s;
    return DSR1_OK;
}

void dsri_split_free(dsri_split *s)
{
    if (!s)
        return;
    for (int32_t i = 0; i < s->n_stops; i++)
        dsri_free(s->stops[i]);
    dsri_free(s->stops);
    dsri_free(s->stop_len);
    dsri_free(s->pend);
    dsri_free(s->q_tok);
    dsri_free(s->q_end);
    dsri_free(s->out);
    dsri_free(s);
}

dsr1_status dsri_split_push(dsri_split *s, dsr1_token token, dsri_split_kind kind, const char *piece,
                            size_t len, int forced)
{
    if (s->finished || s->stop_matched)
        return DSR1_OK;
    deliver_begin_if_pending(s);
    if (s->in_reasoning && !forced)
        s->n_reasoning++;
    dsr1_status st;
    if (kind != DSRI_SPLIT_TEXT) {
        /* (what pend holds cannot change the state: complete markers in it
         * were taken by the previous push) */
        int opens = kind == DSRI_SPLIT_THINK_BEGIN && !s->in_reasoning && !s->block_opened;
        int closes = kind == DSRI_SPLIT_THINK_END && s->in_reasoning;
        if (opens || closes) {
            /* a marker: the text before it ends here */
            if ((st = process(s, 1)))
                return st;
            if ((st = enqueue(s, token)))
                return st;
            if (s->stop_matched)
                return DSR1_OK;
            if (opens)
                open_block(s);
            else
                close_block(s);
            return DSR1_OK;
        }
        /* not a marker where it stands: it is its spelling, plain text that
         * stop strings (and text markers) can run across like any other */
        piece = kind == DSRI_SPLIT_THINK_BEGIN ? THINK_BEGIN : THINK_END;
        len = strlen(piece);
    }
    if (len > 0) {
        if (!grow((void **)&s->pend, &s->pend_cap, s->pend_len + len, 1))
            return oom();
        memcpy(s->pend + s->pend_len, piece, len);
        s->pend_len += len;
        s->total_in += len;
    }
    if ((st = enqueue(s, token)))
        return st;
    return process(s, 0);
}

dsr1_status dsri_split_finish(dsri_split *s, dsr1_stop_reason reason, const dsr1_token *extra, int32_t n_extra)
{
    if (s->finished)
        return DSR1_OK;
    deliver_begin_if_pending(s);
    dsr1_status st = DSR1_OK;
    if (!s->stop_matched)
        st = process(s, 1);
    if (s->stop_matched) { /* text after a stop string is dropped */
        s->consumed += s->pend_len;
        s->pend_len = 0;
    }
    for (int32_t i = 0; i < n_extra && !st; i++)
        st = enqueue(s, extra[i]);
    s->finished = 1;
    deliver(s, DSR1_EVENT_DONE, NULL, 0, 1, 0, reason);
    return st;
}

void dsri_split_set_tap(dsri_split *s, dsr1_event_fn tap, void *user_data)
{
    s->tap = tap;
    s->tap_data = user_data;
}

int dsri_split_in_reasoning(const dsri_split *s) { return s->in_reasoning; }
int dsri_split_stop_matched(const dsri_split *s) { return s->stop_matched; }
int dsri_split_cancel_requested(const dsri_split *s) { return s->cancel; }
int dsri_split_finished(const dsri_split *s) { return s->finished; }
int32_t dsri_split_n_reasoning(const dsri_split *s) { return s->n_reasoning; }
