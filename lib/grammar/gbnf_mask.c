/*
 * Which tokens may come next: the vocabulary as a byte trie, searched
 * depth first from the matcher's current set of parses.
 *
 * The trie is built once per grammar handle: token pieces sorted
 * bytewise, laid out in preorder (a node stores where its subtree ends),
 * so the search is one forward walk that skips a whole subtree as soon
 * as its prefix is dead. A prefix is fed to the matcher once, however
 * many tokens share it, and the frames it creates are dropped when the
 * walk backs up. Inside a JSON string most of the vocabulary is alive, so
 * the masks are also cached by matcher state (the stacks' contents and
 * the partial character): the states of a structured answer repeat, and
 * a repeated state costs a hash and a copy.
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "grammar/gmatch_internal.h"

#define MASK_CACHE_ENTRIES 32

typedef struct vnode {
    int32_t end;       /* index past this node's subtree */
    int32_t depth;     /* bytes from the root (>= 1) */
    int32_t tok_first; /* tokens whose piece ends here: sorted[tok_first .. + tok_n) */
    int32_t tok_n;
    int32_t sub_first; /* tokens of the subtree: sorted[sub_first .. next subtree's sub_first) */
    uint8_t byte;
    uint8_t plain; /* the subtree's bytes are all "plain" (see is_plain) */
} vnode;

struct dsri_vtrie {
    int32_t n_vocab;
    vnode *nodes;
    int32_t n_nodes;
    int32_t max_depth;
    int32_t *sorted;     /* token ids in piece order (= preorder of the nodes they end at) */
    int32_t n_sorted;
    int64_t *piece_off;  /* n_vocab + 1 offsets into bytes; -1: not in the trie */
    int32_t *piece_len;
    char *bytes;
};

struct mask_entry {
    const dsri_vtrie *trie;
    uint64_t hash;
    int32_t *key;
    int32_t key_len;
    uint64_t *mask;
    uint64_t used;
};

typedef struct piece_ref {
    const uint8_t *p;
    int32_t len;
    int32_t id;
} piece_ref;

static int cmp_piece(const void *a, const void *b)
{
    const piece_ref *x = a, *y = b;
    int32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, (size_t)n);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void dsri_vtrie_free(dsri_vtrie *t)
{
    if (!t)
        return;
    dsri_free(t->nodes);
    dsri_free(t->sorted);
    dsri_free(t->piece_off);
    dsri_free(t->piece_len);
    dsri_free(t->bytes);
    dsri_free(t);
}

int32_t dsri_vtrie_n_vocab(const dsri_vtrie *t) { return t->n_vocab; }

const char *dsri_vtrie_piece(const dsri_vtrie *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab || t->piece_off[id] < 0)
        return NULL;
    *len = (size_t)t->piece_len[id];
    return t->bytes + t->piece_off[id];
}

/* Collect the pieces of ordinary tokens into t->bytes. */
static dsr1_status collect_pieces(const dsr1_model *model, dsri_vtrie *t, int64_t *total)
{
    size_t cap = 1 << 16, used = 0;
    t->bytes = dsri_malloc(cap);
    if (!t->bytes)
        return DSR1_ERR_OUT_OF_MEMORY;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        t->piece_off[id] = -1;
        t->piece_len[id] = 0;
        dsr1_token_attr a = dsr1_token_get_attr(model, id);
        if (a == DSR1_TOKEN_CONTROL || a == DSR1_TOKEN_UNUSED || dsr1_token_is_eog(model, id))
            continue;
        size_t need = 0;
        dsr1_status st = dsr1_token_to_piece(model, id, t->bytes + used, cap - used, &need, 0);
        while (st == DSR1_ERR_BUFFER_TOO_SMALL) {
            while (cap - used <= need)
                cap *= 2;
            char *n = dsri_realloc(t->bytes, cap);
            if (!n)
                return DSR1_ERR_OUT_OF_MEMORY;
            t->bytes = n;
            st = dsr1_token_to_piece(model, id, t->bytes + used, cap - used, &need, 0);
        }
        if (st)
            return st;
        if (need == 0 || need > INT32_MAX / 2)
            continue;
        t->piece_off[id] = (int64_t)used;
        t->piece_len[id] = (int32_t)need;
        used += need;
    }
    *total = (int64_t)used;
    return DSR1_OK;
}

/* Printable ASCII other than '"' and '\\': the bytes of ordinary string
 * content, after which a JSON-string state returns to itself. */
static int is_plain(uint8_t b) { return b >= 0x20 && b < 0x7F && b != '"' && b != '\\'; }

/* sub_first (running token counts in preorder) and plain (bottom-up). */
static void mark_subtrees(dsri_vtrie *t)
{
    int32_t count = 0;
    for (int32_t i = 0; i < t->n_nodes; i++) {
        t->nodes[i].sub_first = count;
        count += t->nodes[i].tok_n;
    }
    for (int32_t i = t->n_nodes - 1; i >= 0; i--) {
        vnode *v = &t->nodes[i];
        v->plain = (uint8_t)is_plain(v->byte);
        for (int32_t c = i + 1; v->plain && c < v->end; c = t->nodes[c].end)
            v->plain = t->nodes[c].plain;
    }
}

/* The first token of the subtree that starts at node i (i may be n_nodes). */
static int32_t subtree_first(const dsri_vtrie *t, int32_t i)
{
    return i < t->n_nodes ? t->nodes[i].sub_first : t->n_sorted;
}

dsr1_status dsri_vtrie_new(const dsr1_model *model, dsri_vtrie **out)
{
    *out = NULL;
    int32_t n_vocab = dsr1_model_n_vocab(model);
    if (n_vocab <= 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "grammar: the model has no vocabulary");
    dsri_vtrie *t = dsri_calloc(1, sizeof *t);
    piece_ref *refs = NULL;
    int32_t *path = NULL;
    dsr1_status st = DSR1_ERR_OUT_OF_MEMORY;
    if (!t)
        goto fail;
    t->n_vocab = n_vocab;
    t->piece_off = dsri_malloc((size_t)n_vocab * sizeof *t->piece_off);
    t->piece_len = dsri_malloc((size_t)n_vocab * sizeof *t->piece_len);
    t->sorted = dsri_malloc((size_t)n_vocab * sizeof *t->sorted);
    refs = dsri_malloc((size_t)n_vocab * sizeof *refs);
    if (!t->piece_off || !t->piece_len || !t->sorted || !refs)
        goto fail;
    int64_t total = 0;
    if ((st = collect_pieces(model, t, &total)))
        goto fail;
    st = DSR1_ERR_OUT_OF_MEMORY;
    int32_t n = 0, max_len = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        if (t->piece_off[id] < 0)
            continue;
        refs[n].p = (const uint8_t *)t->bytes + t->piece_off[id];
        refs[n].len = t->piece_len[id];
        refs[n].id = id;
        if (refs[n].len > max_len)
            max_len = refs[n].len;
        n++;
    }
    qsort(refs, (size_t)n, sizeof *refs, cmp_piece);
    t->max_depth = max_len;
    /* preorder layout: a node per distinct prefix, at most one per byte */
    t->nodes = dsri_malloc(((size_t)total + 1) * sizeof *t->nodes);
    path = dsri_malloc(((size_t)max_len + 1) * sizeof *path);
    if (!t->nodes || !path)
        goto fail;
    int32_t depth = 0; /* nodes open on the path: path[0 .. depth) */
    for (int32_t i = 0; i < n; i++) {
        int32_t lcp = 0;
        if (i > 0) {
            int32_t m = refs[i].len < refs[i - 1].len ? refs[i].len : refs[i - 1].len;
            while (lcp < m && refs[i].p[lcp] == refs[i - 1].p[lcp])
                lcp++;
        }
        while (depth > lcp) /* close the nodes the new piece leaves */
            t->nodes[path[--depth]].end = t->n_nodes;
        for (; depth < refs[i].len; depth++) {
            vnode *v = &t->nodes[t->n_nodes];
            v->depth = depth + 1;
            v->byte = refs[i].p[depth];
            v->tok_first = 0;
            v->tok_n = 0;
            v->end = -1;
            path[depth] = t->n_nodes++;
        }
        vnode *leaf = &t->nodes[path[refs[i].len - 1]];
        if (leaf->tok_n == 0)
            leaf->tok_first = i;
        leaf->tok_n++;
        t->sorted[i] = refs[i].id;
    }
    while (depth > 0)
        t->nodes[path[--depth]].end = t->n_nodes;
    t->n_sorted = n;
    mark_subtrees(t);
    dsri_free(refs);
    dsri_free(path);
    *out = t;
    return DSR1_OK;
fail:
    dsri_free(refs);
    dsri_free(path);
    dsri_vtrie_free(t);
    if (st == DSR1_ERR_OUT_OF_MEMORY)
        return dsri_error(st, "grammar: out of memory building the vocabulary trie");
    return st;
}

/* ---- states as numbers ---- */

static int ints_push(int32_t **v, int32_t *n, int32_t *cap, int32_t x)
{
    if (*n == *cap) {
        int32_t c = *cap ? *cap * 2 : 256;
        int32_t *p = dsri_realloc(*v, (size_t)c * sizeof *p);
        if (!p)
            return 0;
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return 1;
}

/* A state (a set of stacks and a partial character) as numbers appended
 * to v: the partial character, then each stack from the top down ended by
 * -1 (the empty stack: -2). Equal states give equal keys when their sets
 * list the stacks in the same order (the matcher's order is
 * deterministic, so this is the usual case; otherwise a state is merely
 * stored twice). */
static int serialize(const dsri_gmatch *m, int32_t set, int32_t n, dsri_utf8 u, int32_t **v, int32_t *len,
                     int32_t *cap)
{
    if (!ints_push(v, len, cap, (int32_t)u.value) || !ints_push(v, len, cap, u.left) ||
        !ints_push(v, len, cap, (int32_t)u.min))
        return 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t s = m->pool[set + i];
        if (s < 0) {
            if (!ints_push(v, len, cap, -2))
                return 0;
            continue;
        }
        for (int32_t f = s; f >= 0; f = m->fr[f].parent)
            if (!ints_push(v, len, cap, m->fr[f].pos))
                return 0;
        if (!ints_push(v, len, cap, -1))
            return 0;
    }
    return 1;
}

static uint64_t hash_ints(const int32_t *p, int32_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (int32_t i = 0; i < n; i++)
        h = (h ^ (uint32_t)p[i]) * 1099511628211ull;
    return h;
}

/* ---- the search: a byte automaton built as the trie walk needs it ----
 *
 * Matcher states reached during one search get numbers, and each number
 * a 256-entry table of where each byte leads (filled on first use). In a
 * JSON string almost every byte leads back to the same state, so most of
 * the walk is one table lookup per trie node; the matcher itself runs
 * only for transitions not seen before. */

#define DFA_MAX_TABLES 4096 /* states beyond this compute their transitions each time */
#define T_UNKNOWN (-2)
#define T_DEAD (-1)

typedef struct dstate {
    int32_t set, n; /* stacks in the pool */
    dsri_utf8 u;
    uint64_t hash;
    int32_t key, key_len; /* into dfa.keys */
    int32_t *next;        /* 256 transitions, or NULL */
    int32_t loops;        /* every plain byte leads back here: 1, 0, or -1 not known yet */
} dstate;

typedef struct dfa {
    dstate *st;
    int32_t n, cap;
    int32_t *index; /* open addressing by hash: state number + 1, or 0 */
    int32_t index_cap;
    int32_t *keys;
    int32_t n_keys, cap_keys;
} dfa;

static void dfa_free(dfa *d)
{
    for (int32_t i = 0; i < d->n; i++)
        dsri_free(d->st[i].next);
    dsri_free(d->st);
    dsri_free(d->keys);
    dsri_free(d->index);
}

static int dfa_reindex(dfa *d)
{
    int32_t cap = d->index_cap ? d->index_cap * 2 : 256;
    int32_t *ix = dsri_calloc((size_t)cap, sizeof *ix);
    if (!ix)
        return 0;
    for (int32_t i = 0; i < d->n; i++) {
        uint32_t j = (uint32_t)d->st[i].hash & (uint32_t)(cap - 1);
        while (ix[j])
            j = (j + 1) & (uint32_t)(cap - 1);
        ix[j] = i + 1;
    }
    dsri_free(d->index);
    d->index = ix;
    d->index_cap = cap;
    return 1;
}

/* The number of state (set, u), made when new; -3 when out of memory. */
static int32_t dfa_intern(dsri_gmatch *m, dfa *d, int32_t set, int32_t n, dsri_utf8 u)
{
    int32_t key = d->n_keys;
    if (!serialize(m, set, n, u, &d->keys, &d->n_keys, &d->cap_keys))
        return -3;
    int32_t len = d->n_keys - key;
    uint64_t h = hash_ints(d->keys + key, len);
    if ((d->n + 1) * 2 > d->index_cap && !dfa_reindex(d))
        return -3;
    uint32_t j = (uint32_t)h & (uint32_t)(d->index_cap - 1);
    for (; d->index[j]; j = (j + 1) & (uint32_t)(d->index_cap - 1)) {
        const dstate *s = &d->st[d->index[j] - 1];
        if (s->hash == h && s->key_len == len && memcmp(d->keys + s->key, d->keys + key, (size_t)len * 4) == 0) {
            d->n_keys = key; /* known: drop the new key */
            return d->index[j] - 1;
        }
    }
    if (d->n == d->cap) {
        int32_t c = d->cap ? d->cap * 2 : 64;
        dstate *p = dsri_realloc(d->st, (size_t)c * sizeof *p);
        if (!p)
            return -3;
        d->st = p;
        d->cap = c;
    }
    dstate *s = &d->st[d->n];
    s->set = set;
    s->n = n;
    s->u = u;
    s->hash = h;
    s->key = key;
    s->key_len = len;
    s->next = NULL;
    s->loops = -1;
    if (d->n < DFA_MAX_TABLES && (s->next = dsri_malloc(256 * sizeof *s->next)) != NULL)
        for (int b = 0; b < 256; b++)
            s->next[b] = T_UNKNOWN;
    d->index[j] = d->n + 1;
    return d->n++;
}

/* Where byte b leads from state i: a state number, T_DEAD, or -3 with
 * *st set on an error. */
static int32_t dfa_step(dsri_gmatch *m, dfa *d, int32_t i, uint8_t b, dsr1_status *st)
{
    if (d->st[i].next && d->st[i].next[b] != T_UNKNOWN)
        return d->st[i].next[b];
    dstate s = d->st[i];
    uint32_t cp = 0;
    int r = dsri_utf8_step(&s.u, b, &cp);
    int32_t to = T_DEAD;
    if (r == 0) {
        if (dsri_gmatch_partial_alive(m, s.set, s.n, s.u))
            to = dfa_intern(m, d, s.set, s.n, s.u);
    } else if (r == 1) {
        int32_t out;
        if ((*st = dsri_gmatch_advance(m, s.set, s.n, cp, &out)))
            return -3;
        if (m->n_pool > out)
            to = dfa_intern(m, d, out, m->n_pool - out, s.u);
    }
    if (to == -3) {
        *st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "grammar: out of memory");
        return -3;
    }
    if (d->st[i].next) /* (d->st may have moved: index again) */
        d->st[i].next[b] = to;
    return to;
}

/* Does every plain byte lead from state i back to it? Then a subtree of
 * plain bytes is allowed whole, without walking it. */
static int dfa_loops(dsri_gmatch *m, dfa *d, int32_t i, dsr1_status *st)
{
    if (d->st[i].loops < 0) {
        int loops = d->st[i].u.left == 0;
        for (int b = 0x20; loops && b < 0x7F; b++)
            if (is_plain((uint8_t)b))
                loops = dfa_step(m, d, i, (uint8_t)b, st) == i;
        d->st[i].loops = loops;
    }
    return d->st[i].loops;
}

static dsr1_status search(dsri_gmatch *m, const dsri_vtrie *t, uint64_t *mask)
{
    size_t words = ((size_t)t->n_vocab + 63) / 64;
    memset(mask, 0, words * sizeof *mask);
    size_t need = ((size_t)t->max_depth + 1) * sizeof(int32_t);
    if ((size_t)m->cap_levels < need) {
        void *l = dsri_realloc(m->levels, need);
        if (!l)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "grammar: out of memory");
        m->levels = l;
        m->cap_levels = (int32_t)need;
    }
    int32_t *level = m->levels; /* level[d]: the state after the first d bytes */
    const int32_t fr0 = m->n_fr, pool0 = m->n_pool;
    dfa d;
    memset(&d, 0, sizeof d);
    dsr1_status st = DSR1_OK;
    level[0] = dfa_intern(m, &d, m->cur, m->n_cur, m->u);
    if (level[0] < 0)
        st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "grammar: out of memory");
    for (int32_t i = 0; i < t->n_nodes && !st;) {
        const vnode *v = &t->nodes[i];
        if (v->plain && dfa_loops(m, &d, level[v->depth - 1], &st)) {
            for (int32_t k = v->sub_first, e = subtree_first(t, v->end); k < e; k++)
                mask[t->sorted[k] >> 6] |= 1ull << (t->sorted[k] & 63);
            i = v->end;
            continue;
        }
        int32_t to = dfa_step(m, &d, level[v->depth - 1], v->byte, &st);
        if (to < 0) {
            i = v->end; /* dead (or an error): skip the subtree */
            continue;
        }
        for (int32_t k = 0; k < v->tok_n; k++) {
            int32_t id = t->sorted[v->tok_first + k];
            mask[id >> 6] |= 1ull << (id & 63);
        }
        level[v->depth] = to;
        i++;
    }
    dfa_free(&d);
    m->n_fr = fr0;
    m->n_pool = pool0;
    return st;
}

/* ---- the mask cache ---- */

void dsri_gmask_cache_free(dsri_gmatch *m)
{
    for (int32_t i = 0; i < m->n_cache; i++) {
        dsri_free(m->cache[i].key);
        dsri_free(m->cache[i].mask);
    }
    dsri_free(m->cache);
    dsri_free(m->key);
    dsri_free(m->levels);
    m->cache = NULL;
    m->n_cache = 0;
}

dsr1_status dsri_gmatch_mask(dsri_gmatch *m, const dsri_vtrie *t, uint64_t *mask)
{
    size_t words = ((size_t)t->n_vocab + 63) / 64;
    int32_t n_key = 0;
    if (!serialize(m, m->cur, m->n_cur, m->u, &m->key, &n_key, &m->cap_key))
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "grammar: out of memory");
    uint64_t h = hash_ints(m->key, n_key);
    m->tick++;
    for (int32_t i = 0; i < m->n_cache; i++) {
        mask_entry *e = &m->cache[i];
        if (e->trie == t && e->hash == h && e->key_len == n_key &&
            memcmp(e->key, m->key, (size_t)n_key * sizeof *m->key) == 0) {
            e->used = m->tick;
            memcpy(mask, e->mask, words * sizeof *mask);
            return DSR1_OK;
        }
    }
    dsr1_status st = search(m, t, mask);
    if (st)
        return st;
    /* remember it (in a free slot, or instead of the least recently used) */
    if (!m->cache) {
        m->cache = dsri_calloc(MASK_CACHE_ENTRIES, sizeof *m->cache);
        if (!m->cache)
            return DSR1_OK; /* no cache: correct, only slower */
    }
    mask_entry *e = NULL;
    if (m->n_cache < MASK_CACHE_ENTRIES) {
        e = &m->cache[m->n_cache++];
    } else {
        e = &m->cache[0];
        for (int32_t i = 1; i < m->n_cache; i++)
            if (m->cache[i].used < e->used)
                e = &m->cache[i];
    }
    int32_t *key = dsri_malloc((size_t)n_key * sizeof *key);
    uint64_t *copy = e->trie == t && e->mask ? e->mask : dsri_malloc(words * sizeof *copy);
    if (!key || !copy) {
        dsri_free(key);
        if (copy != e->mask)
            dsri_free(copy);
        e->trie = NULL; /* unusable until filled again */
        return DSR1_OK;
    }
    if (copy != e->mask)
        dsri_free(e->mask);
    dsri_free(e->key);
    memcpy(key, m->key, (size_t)n_key * sizeof *key);
    memcpy(copy, mask, words * sizeof *copy);
    e->trie = t;
    e->hash = h;
    e->key = key;
    e->key_len = n_key;
    e->mask = copy;
    e->used = m->tick;
    return DSR1_OK;
}
