/*
 * Pre-tokenizers: split text into the pieces BPE works on, exactly as the
 * tokenizer regexes of the supported models do (hand-written matchers, no
 * regex library).
 *
 * Qwen2 / Llama 3 (llama.cpp's spelling, contractions ASCII-only):
 *   (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])
 *   |[^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3} (Qwen2: \p{N})
 *   | ?[^\s\p{L}\p{N}]+[\r\n]* |\s*[\r\n]+ |\s+(?!\S) |\s+
 *
 * DeepSeek-V3 / R1: a sequence of three "isolated" splits, each applied to
 * every piece the previous one produced:
 *   1. \p{N}{1,3}
 *   2. [一-龥぀-ゟ゠-ヿ]+            (U+4E00..U+9FA5, U+3040..U+30FF)
 *   3. [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
 *      |[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ | ?[\p{P}\p{S}]+[\r\n]*
 *      |\s*[\r\n]+ |\s+(?!\S) |\s+
 * An isolated split keeps both the matches and the text between them (a
 * run of characters no alternative matches stays one piece).
 *
 * Every matcher works on [i, e) of the decoded characters and treats e as
 * the end of the text (the lookahead never sees past its piece).
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

typedef struct chars {
    const uint32_t *cp;
    const uint8_t *fl;
} chars;

typedef size_t (*matcher_fn)(const chars *c, size_t i, size_t e);

#define IS(c, i, f) (((c)->fl[i] & (f)) != 0)

static int is_crlf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

static uint32_t ascii_lower(uint32_t cp) { return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp; }

static size_t run_of(const chars *c, size_t i, size_t e, unsigned flags)
{
    size_t j = i;
    while (j < e && IS(c, j, flags))
        j++;
    return j;
}

/* \s*[\r\n]+ | \s+(?!\S) | \s+ at i, where c[i] is whitespace. */
static size_t match_space(const chars *c, size_t i, size_t e)
{
    size_t k = run_of(c, i, e, DSRI_UC_W);
    for (size_t j = k; j > i; j--) /* \s*[\r\n]+: up to the last CR/LF */
        if (is_crlf(c->cp[j - 1]))
            return j - i;
    if (k == e || k - i < 2) /* \s+(?!\S), else \s+ */
        return k - i;
    return k - i - 1;
}

/* Contractions: '(s|t|re|ve|m|ll|d), ASCII case-insensitive. */
static size_t match_contraction(const chars *c, size_t i, size_t e)
{
    if (c->cp[i] != '\'' || i + 1 >= e)
        return 0;
    uint32_t a = ascii_lower(c->cp[i + 1]);
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (i + 2 >= e)
        return 0;
    uint32_t b = ascii_lower(c->cp[i + 2]);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

static size_t match_gpt(const chars *c, size_t i, size_t e, size_t max_digits)
{
    size_t m = match_contraction(c, i, e);
    if (m)
        return m;
    uint32_t cp = c->cp[i];
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (IS(c, i, DSRI_UC_L))
        return run_of(c, i, e, DSRI_UC_L) - i;
    if (!is_crlf(cp) && !IS(c, i, DSRI_UC_N) && i + 1 < e && IS(c, i + 1, DSRI_UC_L))
        return run_of(c, i + 1, e, DSRI_UC_L) - i;
    /* \p{N}{1,max} */
    if (IS(c, i, DSRI_UC_N)) {
        size_t j = i;
        while (j < e && j - i < max_digits && IS(c, j, DSRI_UC_N))
            j++;
        return j - i;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = i + (cp == ' ');
    const unsigned not_in = DSRI_UC_W | DSRI_UC_L | DSRI_UC_N;
    if (j < e && !IS(c, j, not_in)) {
        while (j < e && !IS(c, j, not_in))
            j++;
        while (j < e && is_crlf(c->cp[j]))
            j++;
        return j - i;
    }
    if (IS(c, i, DSRI_UC_W))
        return match_space(c, i, e);
    return 0;
}

static size_t match_llama3(const chars *c, size_t i, size_t e) { return match_gpt(c, i, e, 3); }
static size_t match_qwen2(const chars *c, size_t i, size_t e) { return match_gpt(c, i, e, 1); }

static int is_ascii_punct(uint32_t cp)
{
    return (cp >= 0x21 && cp <= 0x2f) || (cp >= 0x3a && cp <= 0x40) || (cp >= 0x5b && cp <= 0x60) ||
           (cp >= 0x7b && cp <= 0x7e);
}

static int is_ascii_alpha(uint32_t cp) { return (cp | 32u) >= 'a' && (cp | 32u) <= 'z'; }

/* The third DeepSeek-V3 regex. */
static size_t match_ds3(const chars *c, size_t i, size_t e)
{
    uint32_t cp = c->cp[i];
    /* [ASCII punctuation][A-Za-z]+ */
    if (is_ascii_punct(cp) && i + 1 < e && is_ascii_alpha(c->cp[i + 1])) {
        size_t j = i + 1;
        while (j < e && is_ascii_alpha(c->cp[j]))
            j++;
        return j - i;
    }
    /* [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ */
    const unsigned lm = DSRI_UC_L | DSRI_UC_M;
    if (!is_crlf(cp) && !IS(c, i, DSRI_UC_L | DSRI_UC_P | DSRI_UC_S) && i + 1 < e && IS(c, i + 1, lm))
        return run_of(c, i + 1, e, lm) - i;
    if (IS(c, i, lm))
        return run_of(c, i, e, lm) - i;
    /*  ?[\p{P}\p{S}]+[\r\n]* */
    const unsigned ps = DSRI_UC_P | DSRI_UC_S;
    size_t j = i + (cp == ' ');
    if (j < e && IS(c, j, ps)) {
        j = run_of(c, j, e, ps);
        while (j < e && is_crlf(c->cp[j]))
            j++;
        return j - i;
    }
    if (IS(c, i, DSRI_UC_W))
        return match_space(c, i, e);
    return 0;
}

typedef struct emitter {
    const size_t *off;
    dsri_pretok_fn fn;
    void *user;
} emitter;

static dsr1_status emit(const emitter *em, size_t a, size_t b)
{
    return em->fn(em->off[a], em->off[b], em->user);
}

/* An isolated regex split of [b, e). */
static dsr1_status split_regex(const chars *c, const emitter *em, matcher_fn match, size_t b, size_t e)
{
    size_t gap = b, i = b;
    while (i < e) {
        size_t m = match(c, i, e);
        if (!m) {
            i++;
            continue;
        }
        dsr1_status st;
        if (gap < i && (st = emit(em, gap, i)) != DSR1_OK)
            return st;
        if ((st = emit(em, i, i + m)) != DSR1_OK)
            return st;
        i += m;
        gap = i;
    }
    return gap < e ? emit(em, gap, e) : DSR1_OK;
}

static int is_cjk_kana(uint32_t cp)
{
    return (cp >= 0x4e00 && cp <= 0x9fa5) || (cp >= 0x3040 && cp <= 0x30ff);
}

/* DeepSeek-V3 step 2 (CJK/kana runs) on a piece without digits, then step 3. */
static dsr1_status split_ds3_cjk(const chars *c, const emitter *em, size_t b, size_t e)
{
    size_t gap = b, i = b;
    while (i < e) {
        if (!is_cjk_kana(c->cp[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < e && is_cjk_kana(c->cp[j]))
            j++;
        dsr1_status st;
        if (gap < i && (st = split_regex(c, em, match_ds3, gap, i)) != DSR1_OK)
            return st;
        if ((st = split_regex(c, em, match_ds3, i, j)) != DSR1_OK)
            return st;
        i = gap = j;
    }
    return gap < e ? split_regex(c, em, match_ds3, gap, e) : DSR1_OK;
}

/* DeepSeek-V3 step 1: \p{N}{1,3} isolated. Digit pieces pass steps 2 and 3
 * unchanged (no alternative of either matches a number). */
static dsr1_status split_ds3(const chars *c, const emitter *em, size_t n)
{
    size_t gap = 0, i = 0;
    while (i < n) {
        if (!IS(c, i, DSRI_UC_N)) {
            i++;
            continue;
        }
        dsr1_status st;
        if (gap < i && (st = split_ds3_cjk(c, em, gap, i)) != DSR1_OK)
            return st;
        size_t j = i;
        while (j < n && j - i < 3 && IS(c, j, DSRI_UC_N))
            j++;
        if ((st = emit(em, i, j)) != DSR1_OK)
            return st;
        i = gap = j;
    }
    return gap < n ? split_ds3_cjk(c, em, gap, n) : DSR1_OK;
}

static dsr1_status scratch_reserve(dsri_pretok_scratch *s, size_t n)
{
    if (n <= s->cap)
        return DSR1_OK;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < n)
        cap = cap > SIZE_MAX / 2 ? n : cap * 2;
    if (cap > SIZE_MAX / sizeof(size_t) - 1)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "tokenizer: text too long");
    uint32_t *cp = dsri_realloc(s->cp, cap * sizeof *cp);
    if (!cp)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "tokenizer: out of memory for %zu characters", n);
    s->cp = cp;
    uint8_t *fl = dsri_realloc(s->fl, cap);
    if (!fl)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "tokenizer: out of memory for %zu characters", n);
    s->fl = fl;
    size_t *off = dsri_realloc(s->off, (cap + 1) * sizeof *off);
    if (!off)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "tokenizer: out of memory for %zu characters", n);
    s->off = off;
    s->cap = cap;
    return DSR1_OK;
}

void dsri_pretok_scratch_free(dsri_pretok_scratch *s)
{
    dsri_free(s->cp);
    dsri_free(s->fl);
    dsri_free(s->off);
    memset(s, 0, sizeof *s);
}

dsr1_status dsri_pretokenize_scratch(dsri_pretok_scratch *s, dsri_pre_type pre, const char *text,
                                     size_t len, dsri_pretok_fn fn, void *user)
{
    if (len == 0)
        return DSR1_OK;
    /* At most one character per byte. */
    dsr1_status st = scratch_reserve(s, len);
    if (st != DSR1_OK)
        return st;
    const uint8_t *u = (const uint8_t *)text;
    size_t n = 0;
    for (size_t pos = 0; pos < len; n++) {
        uint32_t cp;
        size_t k;
        if (u[pos] < 0x80) {
            cp = u[pos];
            k = 1;
        } else {
            k = dsri_utf8_decode(u + pos, len - pos, &cp);
        }
        s->cp[n] = cp;
        s->fl[n] = (uint8_t)dsri_uc_flags(cp);
        s->off[n] = pos;
        pos += k;
    }
    s->off[n] = len;
    chars c = {s->cp, s->fl};
    emitter em = {s->off, fn, user};
    switch (pre) {
    case DSRI_PRE_QWEN2: return split_regex(&c, &em, match_qwen2, 0, n);
    case DSRI_PRE_DEEPSEEK3: return split_ds3(&c, &em, n);
    case DSRI_PRE_LLAMA3:
    default: return split_regex(&c, &em, match_llama3, 0, n);
    }
}

dsr1_status dsri_pretokenize(dsri_pre_type pre, const char *text, size_t len, dsri_pretok_fn fn,
                             void *user)
{
    dsri_pretok_scratch s;
    memset(&s, 0, sizeof s);
    dsr1_status st = dsri_pretokenize_scratch(&s, pre, text, len, fn, user);
    dsri_pretok_scratch_free(&s);
    return st;
}
