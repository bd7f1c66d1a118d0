/*
 * Tokenizing: special-token recognition, pre-tokenizing, and byte-level BPE
 * on each pre-token.
 *
 * BPE on a pre-token of n bytes starts from one symbol per byte (its mapped
 * token) and repeatedly applies the best-ranked merge of two adjacent
 * symbols, leftmost first among equal ranks. Symbols form a linked list and
 * candidate pairs sit in a binary min-heap ordered by (rank, position);
 * entries made stale by an earlier merge are recognised when popped (the
 * ids they were made for have changed) and skipped. That is O(n log n) per
 * pre-token, so no input is quadratic. Merges are looked up by token-id
 * pair in a hash map, so no strings are built.
 */
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

typedef struct heap_entry {
    uint32_t rank;
    uint32_t pos;   /* index of the left symbol */
    int32_t left;   /* the ids the entry was made for */
    int32_t right;
} heap_entry;

typedef struct tok_state {
    const dsri_vocab *v;
    dsri_tok_sink *sink;
    const char *text; /* the fragment being pre-tokenized */
    int32_t *id, *prev, *next;
    size_t sym_cap;
    heap_entry *heap;
    size_t heap_n, heap_cap;
    char *buf; /* the byte-mapped pre-token (ignore_merges lookups) */
    size_t buf_cap;
    dsri_pretok_scratch pre;
} tok_state;

static int heap_less(const heap_entry *a, const heap_entry *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static dsr1_status heap_push(tok_state *s, heap_entry e)
{
    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
        heap_entry *h = dsri_realloc(s->heap, cap * sizeof *h);
        if (!h)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "tokenizer: out of memory for the merge queue");
        s->heap = h;
        s->heap_cap = cap;
    }
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
    return DSR1_OK;
}

static heap_entry heap_pop(tok_state *s)
{
    heap_entry top = s->heap[0];
    heap_entry last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!heap_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n)
        s->heap[i] = last;
    return top;
}

/* Queue the pair starting at symbol l, if it merges. */
static dsr1_status queue_pair(tok_state *s, int32_t l)
{
    if (l < 0)
        return DSR1_OK;
    int32_t r = s->next[l];
    if (r < 0 || s->id[l] < 0 || s->id[r] < 0)
        return DSR1_OK;
    uint32_t rank = dsri_merge_rank(s->v, s->id[l], s->id[r]);
    if (rank == UINT32_MAX)
        return DSR1_OK;
    return heap_push(s, (heap_entry){rank, (uint32_t)l, s->id[l], s->id[r]});
}

static void emit_byte(tok_state *s, uint8_t b)
{
    int32_t t = s->v->byte_token[b];
    if (t < 0)
        t = s->v->unk_id; /* a vocabulary without this byte: unknown, else dropped */
    if (t >= 0)
        dsri_tok_sink_push(s->sink, t);
}

static dsr1_status grow_symbols(tok_state *s, size_t n)
{
    if (n <= s->sym_cap)
        return DSR1_OK;
    size_t cap = s->sym_cap ? s->sym_cap : 64;
    while (cap < n)
        cap *= 2;
    int32_t *a = dsri_realloc(s->id, cap * sizeof *a);
    if (a)
        s->id = a;
    int32_t *b = a ? dsri_realloc(s->prev, cap * sizeof *b) : NULL;
    if (b)
        s->prev = b;
    int32_t *c = b ? dsri_realloc(s->next, cap * sizeof *c) : NULL;
    if (!c)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "tokenizer: out of memory for a %zu-byte word", n);
    s->next = c;
    s->sym_cap = cap;
    return DSR1_OK;
}

/* With ignore_merges: the token spelled exactly like the whole pre-token. */
static dsr1_status whole_word(tok_state *s, const uint8_t *w, size_t n, int32_t *id)
{
    *id = -1;
    if (n > SIZE_MAX / 2 - 1)
        return DSR1_OK;
    if (2 * n > s->buf_cap) {
        char *b = dsri_realloc(s->buf, 2 * n);
        if (!b)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "tokenizer: out of memory for a %zu-byte word", n);
        s->buf = b;
        s->buf_cap = 2 * n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += dsri_utf8_encode(dsri_byte_to_cp(w[i]), (uint8_t *)s->buf + k);
    *id = dsri_vocab_find(s->v, s->buf, k);
    return DSR1_OK;
}

static dsr1_status bpe_word(size_t begin, size_t end, void *user)
{
    tok_state *s = user;
    const uint8_t *w = (const uint8_t *)s->text + begin;
    size_t n = end - begin;
    dsr1_status st;
    if (n == 1) {
        emit_byte(s, w[0]);
        return DSR1_OK;
    }
    if (s->v->ignore_merges) {
        int32_t id;
        if ((st = whole_word(s, w, n, &id)) != DSR1_OK)
            return st;
        if (id >= 0) {
            dsri_tok_sink_push(s->sink, id);
            return DSR1_OK;
        }
    }
    if (n > (size_t)INT32_MAX)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "tokenizer: a %zu-byte word is too long", n);
    if ((st = grow_symbols(s, n)) != DSR1_OK)
        return st;
    for (size_t i = 0; i < n; i++) {
        s->id[i] = s->v->byte_token[w[i]];
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    s->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if ((st = queue_pair(s, (int32_t)i)) != DSR1_OK)
            return st;
    while (s->heap_n) {
        heap_entry e = heap_pop(s);
        int32_t l = (int32_t)e.pos, r = s->next[l];
        if (s->id[l] != e.left || r < 0 || s->id[r] != e.right)
            continue; /* stale */
        s->id[l] = s->v->merges[e.rank].result;
        s->next[l] = s->next[r];
        if (s->next[r] >= 0)
            s->prev[s->next[r]] = l;
        s->id[r] = -2; /* dead */
        if ((st = queue_pair(s, s->prev[l])) != DSR1_OK || (st = queue_pair(s, l)) != DSR1_OK)
            return st;
    }
    for (int32_t i = 0; i >= 0; i = s->next[i]) {
        if (s->id[i] >= 0)
            dsri_tok_sink_push(s->sink, s->id[i]);
        else
            emit_byte(s, w[i]); /* only a byte with no token stays at -1 */
    }
    return DSR1_OK;
}

static dsr1_status tokenize_fragment(tok_state *s, const char *text, size_t len)
{
    s->text = text;
    return dsri_pretokenize_scratch(&s->pre, s->v->pre, text, len, bpe_word, s);
}

/* The longest special token spelled at text[0..), or -1; *n gets its length. */
static int32_t match_special(const dsri_vocab *v, const char *text, size_t avail, size_t *n)
{
    uint8_t b = (uint8_t)text[0];
    for (uint32_t k = v->spec_len_start[b]; k < v->spec_len_start[b + 1]; k++) {
        size_t len = v->spec_lens[k];
        if (len > avail)
            continue;
        int32_t id = dsri_vocab_find_special(v, text, len);
        if (id >= 0) {
            *n = len;
            return id;
        }
    }
    return -1;
}

dsr1_status dsri_vocab_tokenize_sink(const dsri_vocab *v, const char *text, size_t len, uint32_t flags,
                                     dsri_tok_sink *sink)
{
    tok_state s;
    memset(&s, 0, sizeof s);
    s.v = v;
    s.sink = sink;
    dsr1_status st = DSR1_OK;
    if (flags & DSR1_TOKENIZE_PARSE_SPECIAL) {
        size_t frag = 0, pos = 0;
        while (pos < len && st == DSR1_OK) {
            size_t n;
            int32_t id = v->spec_len_start[(uint8_t)text[pos]] == v->spec_len_start[(uint8_t)text[pos] + 1]
                             ? -1
                             : match_special(v, text + pos, len - pos, &n);
            if (id < 0) {
                pos++;
                continue;
            }
            if (frag < pos)
                st = tokenize_fragment(&s, text + frag, pos - frag);
            dsri_tok_sink_push(sink, id);
            pos += n;
            frag = pos;
        }
        if (st == DSR1_OK && frag < len)
            st = tokenize_fragment(&s, text + frag, len - frag);
    } else {
        st = tokenize_fragment(&s, text, len);
    }
    dsri_free(s.id);
    dsri_free(s.prev);
    dsri_free(s.next);
    dsri_free(s.heap);
    dsri_free(s.buf);
    dsri_pretok_scratch_free(&s.pre);
    return st;
}

dsr1_status dsri_vocab_tokenize(const dsri_vocab *v, const char *text, size_t len, dsr1_token *tokens,
                                int32_t capacity, int32_t *n_tokens, uint32_t flags)
{
    dsri_tok_sink sink = {tokens, capacity, 0};
    if ((flags & DSR1_TOKENIZE_ADD_BOS) && v->special[DSR1_SPECIAL_BOS] >= 0)
        dsri_tok_sink_push(&sink, v->special[DSR1_SPECIAL_BOS]);
    dsr1_status st = dsri_vocab_tokenize_sink(v, text, len, flags, &sink);
    if (st != DSR1_OK)
        return st;
    if (sink.count > INT32_MAX)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_tokenize: the text makes more than %d tokens", INT32_MAX);
    *n_tokens = (int32_t)sink.count;
    if (sink.count > capacity)
        return dsri_error(DSR1_ERR_BUFFER_TOO_SMALL, "dsr1_tokenize: %lld tokens do not fit in a capacity of %d",
                          (long long)sink.count, capacity);
    return DSR1_OK;
}
