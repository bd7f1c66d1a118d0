/*
 * The grammar matcher: the set of parses alive after the input so far.
 *
 * A parse is a stack of element positions. Stacks are persistent linked
 * lists in an arena (a frame is {pos, parent}), so the many parses that
 * share their lower part share its frames, and trying a byte costs only
 * the frames it creates: the token-mask search (gbnf_mask.c) creates
 * frames while it descends the vocabulary trie and drops them when it
 * backs up. Every stack in a set is normalised: its top is a character
 * class (rule references are expanded into their alternatives; a finished
 * alternative pops to its parent; a reference that ends an alternative
 * replaces its frame instead of pushing, so x* runs in constant stack).
 * The empty stack, written -1, means the input is a complete sentence.
 *
 * Input is UTF-8; a character split over tokens is held as a partial
 * code point, and a partial one stays alive while some stack's top class
 * contains a character that starts with those bytes.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "grammar/gmatch_internal.h"

#define MAX_EXPAND_WORK (1 << 16) /* expansion steps for one character */

static int reserve(void **arr, int32_t *cap, int64_t need, size_t sz)
{
    if (need <= *cap)
        return 1;
    if (need > INT32_MAX / 4)
        return 0;
    int64_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *n = dsri_realloc(*arr, (size_t)c * sz);
    if (!n)
        return 0;
    *arr = n;
    *cap = (int32_t)c;
    return 1;
}

static dsr1_status nomem(void) { return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "grammar matcher: out of memory"); }

static int32_t new_frame(dsri_gmatch *m, int32_t pos, int32_t parent)
{
    if (!reserve((void **)&m->fr, &m->cap_fr, (int64_t)m->n_fr + 1, sizeof *m->fr))
        return -2;
    m->fr[m->n_fr].pos = pos;
    m->fr[m->n_fr].parent = parent;
    return m->n_fr++;
}

static int pool_push(dsri_gmatch *m, int32_t v)
{
    if (!reserve((void **)&m->pool, &m->cap_pool, (int64_t)m->n_pool + 1, sizeof *m->pool))
        return 0;
    m->pool[m->n_pool++] = v;
    return 1;
}

/* Add the normalised stacks of "match pos next, then parent" to the set
 * that starts at pool[out]. */
static dsr1_status expand(dsri_gmatch *m, int32_t pos, int32_t parent, int32_t out)
{
    const dsri_gbnf *g = m->g;
    int32_t n_work = 0, steps = 0;
    if (!reserve((void **)&m->work, &m->cap_work, 2, sizeof *m->work))
        return nomem();
    m->work[n_work++] = pos;
    m->work[n_work++] = parent;
    while (n_work > 0) {
        parent = m->work[--n_work];
        pos = m->work[--n_work];
        if (++steps > MAX_EXPAND_WORK)
            return dsri_error(DSR1_ERR_UNSUPPORTED, "grammar: too ambiguous (a character opens more than %d "
                              "expansion steps)", MAX_EXPAND_WORK);
        const dsri_gelem *e = &g->elems[pos];
        if (e->type == DSRI_GE_END) {
            if (parent < 0) { /* the whole sentence is complete */
                int dup = 0;
                for (int32_t i = out; i < m->n_pool && !dup; i++)
                    dup = m->pool[i] == -1;
                if (!dup && !pool_push(m, -1))
                    return nomem();
            } else {
                if (!reserve((void **)&m->work, &m->cap_work, (int64_t)n_work + 2, sizeof *m->work))
                    return nomem();
                m->work[n_work++] = m->fr[parent].pos;
                m->work[n_work++] = m->fr[parent].parent;
            }
        } else if (e->type == DSRI_GE_CHAR) {
            int dup = 0;
            for (int32_t i = out; i < m->n_pool && !dup; i++) {
                int32_t s = m->pool[i];
                dup = s >= 0 && m->fr[s].pos == pos && m->fr[s].parent == parent;
            }
            if (dup)
                continue;
            if (m->n_pool - out >= DSRI_GBNF_MAX_PARSES)
                return dsri_error(DSR1_ERR_UNSUPPORTED, "grammar: too ambiguous (more than %d parses at once)",
                                  DSRI_GBNF_MAX_PARSES);
            int32_t f = new_frame(m, pos, parent);
            if (f < 0 || !pool_push(m, f))
                return nomem();
        } else {
            const dsri_grule *r = &g->rules[e->value];
            int32_t cont = parent;
            if (g->elems[pos + 1].type != DSRI_GE_END) {
                /* share a frame made for the same continuation just before */
                cont = -2;
                for (int32_t i = m->n_fr - 1; i >= 0 && i >= m->n_fr - 8; i--)
                    if (m->fr[i].pos == pos + 1 && m->fr[i].parent == parent)
                        cont = i;
                if (cont == -2 && (cont = new_frame(m, pos + 1, parent)) < 0)
                    return nomem();
            }
            if (!reserve((void **)&m->work, &m->cap_work, (int64_t)n_work + 2 * (int64_t)r->n_alts, sizeof *m->work))
                return nomem();
            for (int32_t a = r->n_alts - 1; a >= 0; a--) { /* first alternative on top */
                m->work[n_work++] = g->alts[r->first_alt + a];
                m->work[n_work++] = cont;
            }
        }
    }
    return DSR1_OK;
}

dsr1_status dsri_gmatch_advance(dsri_gmatch *m, int32_t in, int32_t n_in, uint32_t cp, int32_t *out)
{
    *out = m->n_pool;
    for (int32_t i = 0; i < n_in; i++) {
        int32_t s = m->pool[in + i];
        if (s < 0)
            continue;
        const dsri_gelem *e = &m->g->elems[m->fr[s].pos];
        if (!dsri_gbnf_class_has(m->g, e->value, cp))
            continue;
        dsr1_status st = expand(m, m->fr[s].pos + 1, m->fr[s].parent, *out);
        if (st)
            return st;
    }
    return DSR1_OK;
}

/* Does class k contain a code point in [lo, hi]? */
static int class_meets(const dsri_gbnf *g, int32_t k, uint32_t lo, uint32_t hi)
{
    const dsri_cclass *c = &g->classes[k];
    const dsri_crange *r = c->n_ranges > 0 ? g->ranges + c->first_range : NULL;
    if (!c->negated) {
        for (int32_t i = 0; i < c->n_ranges; i++)
            if (r[i].lo <= hi && r[i].hi >= lo)
                return 1;
        return 0;
    }
    /* negated: is [lo, hi] not entirely covered by the ranges? */
    uint32_t cur = lo;
    for (;;) {
        int moved = 0;
        for (int32_t i = 0; i < c->n_ranges; i++) {
            if (r[i].lo <= cur && cur <= r[i].hi) {
                if (r[i].hi >= hi)
                    return 0;
                cur = r[i].hi + 1;
                moved = 1;
            }
        }
        if (!moved)
            return 1;
    }
}

int dsri_gmatch_partial_alive(const dsri_gmatch *m, int32_t in, int32_t n_in, dsri_utf8 u)
{
    uint32_t shift = 6u * (uint32_t)u.left;
    uint32_t lo = u.value << shift, hi = lo | ((1u << shift) - 1u);
    if (lo < u.min)
        lo = u.min;
    if (hi > 0x10FFFF)
        hi = 0x10FFFF;
    if (lo > hi)
        return 0;
    for (int32_t i = 0; i < n_in; i++) {
        int32_t s = m->pool[in + i];
        if (s >= 0 && class_meets(m->g, m->g->elems[m->fr[s].pos].value, lo, hi))
            return 1;
    }
    return 0;
}

int dsri_utf8_step(dsri_utf8 *u, uint8_t b, uint32_t *cp)
{
    if (u->left == 0) {
        if (b < 0x80) {
            *cp = b;
            return 1;
        }
        if (b >= 0xC2 && b <= 0xDF) {
            u->value = b & 0x1Fu;
            u->left = 1;
            u->min = 0x80;
        } else if (b >= 0xE0 && b <= 0xEF) {
            u->value = b & 0x0Fu;
            u->left = 2;
            u->min = 0x800;
        } else if (b >= 0xF0 && b <= 0xF4) {
            u->value = b & 0x07u;
            u->left = 3;
            u->min = 0x10000;
        } else {
            return -1;
        }
        return 0;
    }
    if ((b & 0xC0) != 0x80)
        return -1;
    u->value = (u->value << 6) | (b & 0x3Fu);
    u->left--;
    /* a prefix that can only end overlong, a surrogate or past U+10FFFF is not UTF-8 */
    uint32_t shift = 6u * (uint32_t)u->left;
    uint32_t lo = u->value << shift, hi = lo | ((1u << shift) - 1u);
    if (hi < u->min || lo > 0x10FFFF || (lo >= 0xD800 && hi <= 0xDFFF))
        return -1;
    if (u->left > 0)
        return 0;
    *cp = u->value;
    u->value = 0;
    u->min = 0;
    return 1;
}

/* Feed bytes to the set at pool[*set] (*n stacks); on success set, n and
 * u describe the new set (appended to the pool). Returns DSR1_ERR_STATE when
 * the set dies. */
dsr1_status dsri_gmatch_feed(dsri_gmatch *m, int32_t *set, int32_t *n, dsri_utf8 *u, const uint8_t *b, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint32_t cp = 0;
        int r = dsri_utf8_step(u, b[i], &cp);
        if (r < 0)
            return DSR1_ERR_STATE;
        if (r == 0) {
            if (!dsri_gmatch_partial_alive(m, *set, *n, *u))
                return DSR1_ERR_STATE;
            continue;
        }
        int32_t out;
        dsr1_status st = dsri_gmatch_advance(m, *set, *n, cp, &out);
        if (st)
            return st;
        if (m->n_pool == out)
            return DSR1_ERR_STATE;
        *set = out;
        *n = m->n_pool - out;
    }
    return DSR1_OK;
}

/* Keep only the frames the current set uses: copy them to the front of
 * the arena (parents before children, so a frame's parent is always at a
 * lower index and one backward pass suffices), and the set to the front
 * of the pool. */
static dsr1_status compact(dsri_gmatch *m, int32_t set, int32_t n)
{
    int32_t *map = dsri_malloc(((size_t)m->n_fr + 1) * sizeof *map);
    int32_t *live = dsri_malloc(((size_t)n + 1) * sizeof *live);
    if (!map || !live) {
        dsri_free(map);
        dsri_free(live);
        return nomem();
    }
    memcpy(live, m->pool + set, (size_t)n * sizeof *live);
    for (int32_t i = 0; i < m->n_fr; i++)
        map[i] = 0;
    for (int32_t i = 0; i < n; i++)
        for (int32_t f = live[i]; f >= 0 && !map[f]; f = m->fr[f].parent)
            map[f] = 1;
    int32_t k = 0;
    for (int32_t i = 0; i < m->n_fr; i++) { /* a parent was made before its child: lower index */
        if (!map[i])
            continue;
        frame fr = m->fr[i];
        fr.parent = fr.parent >= 0 ? map[fr.parent] : fr.parent;
        m->fr[k] = fr;
        map[i] = k++;
    }
    m->n_fr = k;
    for (int32_t i = 0; i < n; i++)
        m->pool[i] = live[i] >= 0 ? map[live[i]] : -1;
    m->n_pool = n;
    m->cur = 0;
    m->n_cur = n;
    dsri_free(map);
    dsri_free(live);
    return DSR1_OK;
}

dsr1_status dsri_gmatch_new(const dsri_gbnf *g, int lead_ws, dsri_gmatch **out)
{
    *out = NULL;
    dsri_gmatch *m = dsri_calloc(1, sizeof *m);
    if (!m)
        return nomem();
    m->g = g;
    m->start = lead_ws ? g->start : g->root;
    dsr1_status st = dsri_gmatch_reset(m);
    if (st) {
        dsri_gmatch_free(m);
        return st;
    }
    *out = m;
    return DSR1_OK;
}

void dsri_gmatch_free(dsri_gmatch *m)
{
    if (!m)
        return;
    dsri_gmask_cache_free(m);
    dsri_free(m->fr);
    dsri_free(m->pool);
    dsri_free(m->work);
    dsri_free(m);
}

dsr1_status dsri_gmatch_reset(dsri_gmatch *m)
{
    m->n_fr = 0;
    m->n_pool = 0;
    memset(&m->u, 0, sizeof m->u);
    const dsri_grule *r = &m->g->rules[m->start];
    for (int32_t a = 0; a < r->n_alts; a++) {
        dsr1_status st = expand(m, m->g->alts[r->first_alt + a], -1, 0);
        if (st)
            return st;
    }
    m->cur = 0;
    m->n_cur = m->n_pool;
    return DSR1_OK;
}

dsr1_status dsri_gmatch_accept(dsri_gmatch *m, const char *bytes, size_t len)
{
    int32_t set = m->cur, n = m->n_cur, fr_mark = m->n_fr, pool_mark = m->n_pool;
    dsri_utf8 u = m->u;
    dsr1_status st = dsri_gmatch_feed(m, &set, &n, &u, (const uint8_t *)bytes, len);
    if (st) {
        m->n_fr = fr_mark;
        m->n_pool = pool_mark;
        if (st == DSR1_ERR_STATE)
            return dsri_error(DSR1_ERR_STATE, "grammar: the text does not follow the grammar");
        return st;
    }
    m->u = u;
    return compact(m, set, n);
}

int dsri_gmatch_would_accept(dsri_gmatch *m, const char *bytes, size_t len)
{
    int32_t set = m->cur, n = m->n_cur, fr_mark = m->n_fr, pool_mark = m->n_pool;
    dsri_utf8 u = m->u;
    dsr1_status st = dsri_gmatch_feed(m, &set, &n, &u, (const uint8_t *)bytes, len);
    m->n_fr = fr_mark;
    m->n_pool = pool_mark;
    return st == DSR1_OK;
}

int dsri_gmatch_complete(const dsri_gmatch *m)
{
    if (m->u.left)
        return 0;
    for (int32_t i = 0; i < m->n_cur; i++)
        if (m->pool[m->cur + i] == -1)
            return 1;
    return 0;
}

int dsri_gmatch_alive(const dsri_gmatch *m) { return m->n_cur > 0; }
