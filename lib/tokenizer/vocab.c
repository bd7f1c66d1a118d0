/*
 * Vocabulary loading: token texts, types, merges and special ids from the
 * GGUF tokenizer metadata, with the hash maps the tokenizer needs. See vocab.h.
 */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tokenizer/tokenizer_internal.h"
#include "tokenizer/unicode.h"

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_TYPES "tokenizer.ggml.token_type"
#define KEY_MERGES "tokenizer.ggml.merges"

/* Texts of end-of-turn tokens that end generation besides EOS. */
static const char *const eog_texts[] = {
    "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>", /* <｜end▁of▁sentence｜> */
    "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<|end_of_text|>",
    "<end_of_turn>", "<|EOT|>", "<EOT>",
};

/* Spellings of the role tokens, by dsr1_special (BOS/EOS/PAD come from ids). */
static const char *const role_texts[DSRI_VOCAB_N_SPECIAL] = {
    NULL, NULL, NULL,
    "<\357\275\234User\357\275\234>",      /* <｜User｜> */
    "<\357\275\234Assistant\357\275\234>", /* <｜Assistant｜> */
    "<think>", "</think>",
};

uint64_t dsri_hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

uint32_t dsri_byte_to_cp(uint8_t b)
{
    if (b <= 0x20)
        return 256u + b;
    if (b >= 0x7f && b <= 0xa0)
        return 256u + 33u + (uint32_t)(b - 0x7f);
    if (b == 0xad)
        return 256u + 67u;
    return b;
}

int dsri_cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return (cp <= 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) ? -1 : (int)cp;
    if (cp <= 256 + 32)
        return (int)(cp - 256);
    if (cp <= 256 + 66)
        return (int)(cp - 256 - 33 + 0x7f);
    if (cp == 256 + 67)
        return 0xad;
    return -1;
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

static int text_eq(const dsri_vocab *v, int32_t id, const char *s, size_t n)
{
    uint32_t a = v->text_off[id], b = v->text_off[id + 1];
    return b - a == n && memcmp(v->text + a, s, n) == 0;
}

static int32_t map_find(const dsri_vocab *v, const int32_t *tab, uint32_t mask, const char *s, size_t n)
{
    if (!tab)
        return -1;
    for (uint32_t h = (uint32_t)dsri_hash_bytes(s, n) & mask;; h = (h + 1) & mask) {
        int32_t id = tab[h];
        if (id < 0)
            return -1;
        if (text_eq(v, id, s, n))
            return id;
    }
}

/* Insert id unless a token with the same text is there (the lowest id wins). */
static void map_insert(const dsri_vocab *v, int32_t *tab, uint32_t mask, int32_t id)
{
    const char *s = v->text + v->text_off[id];
    size_t n = v->text_off[id + 1] - v->text_off[id];
    for (uint32_t h = (uint32_t)dsri_hash_bytes(s, n) & mask;; h = (h + 1) & mask) {
        if (tab[h] < 0) {
            tab[h] = id;
            return;
        }
        if (text_eq(v, tab[h], s, n))
            return;
    }
}

int32_t dsri_vocab_find(const dsri_vocab *v, const char *text, size_t len)
{
    return map_find(v, v->tok_hash, v->tok_mask, text, len);
}

int32_t dsri_vocab_find_special(const dsri_vocab *v, const char *text, size_t n)
{
    return map_find(v, v->spec_hash, v->spec_mask, text, n);
}

int32_t dsri_vocab_n_tokens(const dsri_vocab *v) { return v ? v->n_tokens : 0; }

void dsri_vocab_free(dsri_vocab *v)
{
    if (!v)
        return;
    dsri_free(v->text);
    dsri_free(v->text_off);
    dsri_free(v->piece);
    dsri_free(v->piece_off);
    dsri_free(v->attr);
    dsri_free(v->is_eog);
    dsri_free(v->tok_hash);
    dsri_free(v->merges);
    dsri_free(v->merge_hash);
    dsri_free(v->spec_hash);
    dsri_free(v->spec_lens);
    dsri_free(v);
}

static dsr1_status oom(const char *what)
{
    return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "vocabulary: out of memory for %s", what);
}

static dsr1_status load_texts(dsri_vocab *v, const dsri_gguf *g)
{
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, KEY_TOKENS);
    if (!kv)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: missing key %s", KEY_TOKENS);
    if (kv->type != DSRI_GGUF_ARRAY || kv->arr_type != DSRI_GGUF_STRING)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s is not an array of strings", KEY_TOKENS);
    if (kv->arr_n == 0 || kv->arr_n > (uint64_t)INT32_MAX / 2)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s has %llu entries (expected 1 to %d)",
                          KEY_TOKENS, (unsigned long long)kv->arr_n, INT32_MAX / 2);
    int32_t n = (int32_t)kv->arr_n;
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        dsri_str s;
        if (dsri_gguf_arr_str(g, kv, (uint64_t)i, &s) != 0)
            return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s[%d] cannot be read", KEY_TOKENS, i);
        total += s.len;
        if (total >= UINT32_MAX)
            return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s texts exceed 4 GiB at [%d]", KEY_TOKENS, i);
    }
    v->n_tokens = n;
    v->text = dsri_malloc(total + 1);
    v->piece = dsri_malloc(total + 1);
    v->text_off = dsri_malloc(((size_t)n + 1) * sizeof *v->text_off);
    v->piece_off = dsri_malloc(((size_t)n + 1) * sizeof *v->piece_off);
    v->attr = dsri_calloc((size_t)n, 1);
    v->is_eog = dsri_calloc((size_t)n, 1);
    if (!v->text || !v->piece || !v->text_off || !v->piece_off || !v->attr || !v->is_eog)
        return oom("the token texts");
    uint32_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        dsri_str s;
        dsri_gguf_arr_str(g, kv, (uint64_t)i, &s);
        v->text_off[i] = pos;
        if (s.len)
            memcpy(v->text + pos, s.ptr, (size_t)s.len);
        pos += (uint32_t)s.len;
    }
    v->text_off[n] = pos;
    v->text[pos] = '\0';
    return DSR1_OK;
}

static dsr1_status load_types(dsri_vocab *v, const dsri_gguf *g)
{
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, KEY_TYPES);
    if (!kv) { /* no types: every token is normal */
        memset(v->attr, DSR1_TOKEN_NORMAL, (size_t)v->n_tokens);
        return DSR1_OK;
    }
    if (kv->type != DSRI_GGUF_ARRAY || kv->arr_type == DSRI_GGUF_STRING || kv->arr_type == DSRI_GGUF_ARRAY ||
        kv->arr_type == DSRI_GGUF_F32 || kv->arr_type == DSRI_GGUF_F64)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s is not an array of integers", KEY_TYPES);
    if (kv->arr_n != (uint64_t)v->n_tokens)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s has %llu entries but %s has %d", KEY_TYPES,
                          (unsigned long long)kv->arr_n, KEY_TOKENS, v->n_tokens);
    for (int32_t i = 0; i < v->n_tokens; i++) {
        int64_t t = dsri_gguf_arr_int(kv, (uint64_t)i);
        if (t < DSR1_TOKEN_UNDEFINED || t > DSR1_TOKEN_BYTE)
            return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s[%d] = %lld is not a token type (0..6)", KEY_TYPES,
                              i, (long long)t);
        v->attr[i] = (uint8_t)t;
    }
    return DSR1_OK;
}

/* The bytes each token renders as. */
static void build_pieces(dsri_vocab *v)
{
    uint32_t pos = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        const uint8_t *s = (const uint8_t *)v->text + v->text_off[i];
        size_t n = v->text_off[i + 1] - v->text_off[i];
        v->piece_off[i] = pos;
        switch (v->attr[i]) {
        case DSR1_TOKEN_NORMAL:
            for (size_t k = 0; k < n;) {
                uint32_t cp;
                size_t len = dsri_utf8_decode(s + k, n - k, &cp);
                int b = dsri_cp_to_byte(cp);
                if (b >= 0) {
                    v->piece[pos++] = (char)b;
                } else { /* not a mapped byte: keep it as it is */
                    memcpy(v->piece + pos, s + k, len);
                    pos += (uint32_t)len;
                }
                k += len;
            }
            break;
        case DSR1_TOKEN_CONTROL:
        case DSR1_TOKEN_USER_DEFINED:
        case DSR1_TOKEN_UNKNOWN:
            memcpy(v->piece + pos, s, n);
            pos += (uint32_t)n;
            break;
        default: /* unused, byte, undefined: render as nothing */
            break;
        }
    }
    v->piece_off[v->n_tokens] = pos;
}

static dsr1_status build_token_map(dsri_vocab *v)
{
    v->tok_mask = pow2_at_least(2 * (uint64_t)v->n_tokens) - 1;
    v->tok_hash = dsri_malloc(((size_t)v->tok_mask + 1) * sizeof *v->tok_hash);
    if (!v->tok_hash)
        return oom("the token map");
    memset(v->tok_hash, 0xff, ((size_t)v->tok_mask + 1) * sizeof *v->tok_hash);
    for (int32_t i = 0; i < v->n_tokens; i++)
        map_insert(v, v->tok_hash, v->tok_mask, i);
    for (int b = 0; b < 256; b++) {
        uint8_t u[4];
        size_t k = dsri_utf8_encode(dsri_byte_to_cp((uint8_t)b), u);
        int32_t id = dsri_vocab_find(v, (const char *)u, k);
        v->byte_token[b] = (id >= 0 && v->attr[id] == DSR1_TOKEN_NORMAL) ? id : -1;
    }
    return DSR1_OK;
}

static dsr1_status load_merges(dsri_vocab *v, const dsri_gguf *g)
{
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, KEY_MERGES);
    if (!kv)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: missing key %s (required by the gpt2 tokenizer)", KEY_MERGES);
    if (kv->type != DSRI_GGUF_ARRAY || kv->arr_type != DSRI_GGUF_STRING)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s is not an array of strings", KEY_MERGES);
    if (kv->arr_n >= (uint64_t)INT32_MAX)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s has too many entries (%llu)", KEY_MERGES,
                          (unsigned long long)kv->arr_n);
    uint32_t n = (uint32_t)kv->arr_n;
    v->merges = dsri_malloc(((size_t)n + 1) * sizeof *v->merges);
    v->merge_mask = pow2_at_least(2 * (uint64_t)n) - 1;
    v->merge_hash = dsri_malloc(((size_t)v->merge_mask + 1) * sizeof *v->merge_hash);
    if (!v->merges || !v->merge_hash)
        return oom("the merges");
    memset(v->merge_hash, 0xff, ((size_t)v->merge_mask + 1) * sizeof *v->merge_hash);
    char *cat = NULL;
    size_t cat_cap = 0;
    dsr1_status st = DSR1_OK;
    for (uint32_t i = 0; i < n && st == DSR1_OK; i++) {
        dsri_str s;
        if (dsri_gguf_arr_str(g, kv, i, &s) != 0) {
            st = dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s[%u] cannot be read", KEY_MERGES, i);
            break;
        }
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', (size_t)s.len - 1) : NULL;
        if (!sp || sp + 1 == s.ptr + s.len) {
            st = dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s[%u] = '%.*s' is not two tokens separated by a space",
                            KEY_MERGES, i, (int)(s.len > 200 ? 200 : s.len), s.ptr);
            break;
        }
        size_t ln = (size_t)(sp - s.ptr), rn = (size_t)s.len - ln - 1;
        int32_t a = dsri_vocab_find(v, s.ptr, ln), b = dsri_vocab_find(v, sp + 1, rn);
        if (ln + rn > cat_cap) {
            dsri_free(cat);
            cat_cap = 2 * (ln + rn);
            if (!(cat = dsri_malloc(cat_cap))) {
                st = oom("the merges");
                break;
            }
        }
        memcpy(cat, s.ptr, ln);
        memcpy(cat + ln, sp + 1, rn);
        int32_t r = dsri_vocab_find(v, cat, ln + rn);
        if (a < 0 || b < 0 || r < 0) {
            const char *what = a < 0 ? s.ptr : b < 0 ? sp + 1 : cat;
            size_t wn = a < 0 ? ln : b < 0 ? rn : ln + rn;
            st = dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s[%u] = '%.*s': '%.*s' is not a token", KEY_MERGES, i,
                            (int)(s.len > 200 ? 200 : s.len), s.ptr, (int)(wn > 200 ? 200 : wn), what);
            break;
        }
        uint32_t h = (uint32_t)dsri_hash_pair(a, b) & v->merge_mask;
        while (v->merge_hash[h] != UINT32_MAX) {
            const dsri_merge *m = &v->merges[v->merge_hash[h]];
            if (m->left == a && m->right == b)
                break;
            h = (h + 1) & v->merge_mask;
        }
        if (v->merge_hash[h] == UINT32_MAX) { /* a repeated pair keeps its first (best) rank */
            v->merges[v->n_merges] = (dsri_merge){a, b, r};
            v->merge_hash[h] = v->n_merges++;
        }
    }
    dsri_free(cat);
    return st;
}

static dsr1_status read_id(const dsri_vocab *v, const dsri_gguf *g, const char *key, int32_t *out)
{
    int64_t x;
    *out = -1;
    int r = dsri_gguf_get_i64(g, key, &x);
    if (r == -1)
        return DSR1_OK;
    if (r != 0)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s is not an integer token id", key);
    if (x == -1 || x == (int64_t)UINT32_MAX) /* "none", as some converters write it */
        return DSR1_OK;
    if (x < 0 || x >= v->n_tokens)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s = %lld is outside the vocabulary [0, %d)", key,
                          (long long)x, v->n_tokens);
    *out = (int32_t)x;
    return DSR1_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Special tokens matched in text with DSR1_TOKENIZE_PARSE_SPECIAL. */
static dsr1_status build_specials(dsri_vocab *v)
{
    size_t n_spec = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if ((v->attr[i] == DSR1_TOKEN_CONTROL || v->attr[i] == DSR1_TOKEN_USER_DEFINED) &&
            v->text_off[i + 1] > v->text_off[i])
            n_spec++;
    v->spec_mask = pow2_at_least(2 * (uint64_t)n_spec) - 1;
    v->spec_hash = dsri_malloc(((size_t)v->spec_mask + 1) * sizeof *v->spec_hash);
    uint64_t *keys = dsri_malloc((n_spec + 1) * sizeof *keys);
    v->spec_lens = dsri_malloc((n_spec + 1) * sizeof *v->spec_lens);
    if (!v->spec_hash || !keys || !v->spec_lens) {
        dsri_free(keys);
        return oom("the special tokens");
    }
    memset(v->spec_hash, 0xff, ((size_t)v->spec_mask + 1) * sizeof *v->spec_hash);
    size_t k = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        uint32_t len = v->text_off[i + 1] - v->text_off[i];
        if ((v->attr[i] != DSR1_TOKEN_CONTROL && v->attr[i] != DSR1_TOKEN_USER_DEFINED) || len == 0)
            continue;
        map_insert(v, v->spec_hash, v->spec_mask, i);
        /* sort key: first byte ascending, then length descending */
        keys[k++] = ((uint64_t)(uint8_t)v->text[v->text_off[i]] << 32) | (uint32_t)(UINT32_MAX - len);
    }
    qsort(keys, k, sizeof *keys, cmp_u64);
    size_t m = 0;
    for (size_t j = 0; j < k; j++)
        if (j == 0 || keys[j] != keys[j - 1])
            keys[m++] = keys[j];
    size_t j = 0;
    for (int b = 0; b < 256; b++) {
        v->spec_len_start[b] = (uint32_t)j;
        while (j < m && (keys[j] >> 32) == (uint64_t)b) {
            v->spec_lens[j] = UINT32_MAX - (uint32_t)keys[j];
            j++;
        }
    }
    v->spec_len_start[256] = (uint32_t)j;
    dsri_free(keys);
    return DSR1_OK;
}

static dsr1_status load_pre(dsri_vocab *v, const dsri_gguf *g)
{
    dsri_str pre;
    int r = dsri_gguf_get_str(g, KEY_PRE, &pre);
    if (r == -1) {
        v->pre = DSRI_PRE_LLAMA3;
        v->pre_defaulted = 1;
        return DSR1_OK;
    }
    if (r != 0)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s is not a string", KEY_PRE);
    if (dsri_str_eq(pre, "qwen2") || dsri_str_eq(pre, "deepseek-r1-qwen")) {
        v->pre = DSRI_PRE_QWEN2;
    } else if (dsri_str_eq(pre, "llama3") || dsri_str_eq(pre, "llama-v3") || dsri_str_eq(pre, "llama-bpe")) {
        v->pre = DSRI_PRE_LLAMA3;
        v->ignore_merges = 1;
    } else if (dsri_str_eq(pre, "deepseek-v3") || dsri_str_eq(pre, "deepseek-r1")) {
        v->pre = DSRI_PRE_DEEPSEEK3;
    } else {
        return dsri_error(DSR1_ERR_UNSUPPORTED,
                          "vocabulary: %s = '%.*s' is not supported (supported: qwen2, deepseek-r1-qwen, "
                          "llama3, llama-v3, llama-bpe, deepseek-v3, deepseek-r1)",
                          KEY_PRE, (int)(pre.len > 100 ? 100 : pre.len), pre.ptr);
    }
    return DSR1_OK;
}

static dsr1_status load_all(dsri_vocab *v, const dsri_gguf *g)
{
    dsri_str model;
    int r = dsri_gguf_get_str(g, KEY_MODEL, &model);
    if (r == -1)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: missing key %s", KEY_MODEL);
    if (r != 0)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: %s is not a string", KEY_MODEL);
    if (!dsri_str_eq(model, "gpt2"))
        return dsri_error(DSR1_ERR_UNSUPPORTED, "vocabulary: %s = '%.*s' is not supported (only gpt2 byte-level BPE)",
                          KEY_MODEL, (int)(model.len > 100 ? 100 : model.len), model.ptr);
    dsr1_status st;
    if ((st = load_pre(v, g)) || (st = load_texts(v, g)) || (st = load_types(v, g)) ||
        (st = build_token_map(v)) || (st = load_merges(v, g)) || (st = build_specials(v)))
        return st;
    build_pieces(v);

    if ((st = read_id(v, g, "tokenizer.ggml.bos_token_id", &v->special[DSR1_SPECIAL_BOS])) ||
        (st = read_id(v, g, "tokenizer.ggml.eos_token_id", &v->special[DSR1_SPECIAL_EOS])) ||
        (st = read_id(v, g, "tokenizer.ggml.padding_token_id", &v->special[DSR1_SPECIAL_PAD])) ||
        (st = read_id(v, g, "tokenizer.ggml.unknown_token_id", &v->unk_id)) ||
        (st = read_id(v, g, "tokenizer.ggml.eot_token_id", &v->eot_id)))
        return st;
    for (int k = DSR1_SPECIAL_USER; k < DSRI_VOCAB_N_SPECIAL; k++)
        v->special[k] = dsri_vocab_find(v, role_texts[k], strlen(role_texts[k]));

    int flag;
    v->add_bos = v->pre == DSRI_PRE_LLAMA3 && !v->pre_defaulted; /* llama.cpp's default for Llama 3 */
    if ((r = dsri_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &flag)) == 0)
        v->add_bos = flag != 0;
    else if (r == -2)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: tokenizer.ggml.add_bos_token is not a bool");
    if ((r = dsri_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &flag)) == 0)
        v->add_eos = flag != 0;
    else if (r == -2)
        return dsri_error(DSR1_ERR_FORMAT, "vocabulary: tokenizer.ggml.add_eos_token is not a bool");

    if (v->special[DSR1_SPECIAL_EOS] >= 0)
        v->is_eog[v->special[DSR1_SPECIAL_EOS]] = 1;
    if (v->eot_id >= 0)
        v->is_eog[v->eot_id] = 1;
    for (size_t k = 0; k < sizeof eog_texts / sizeof eog_texts[0]; k++) {
        int32_t id = dsri_vocab_find(v, eog_texts[k], strlen(eog_texts[k]));
        if (id >= 0 && (v->attr[id] == DSR1_TOKEN_CONTROL || v->attr[id] == DSR1_TOKEN_USER_DEFINED))
            v->is_eog[id] = 1;
    }
    return DSR1_OK;
}

dsr1_status dsri_vocab_load(const dsri_gguf *g, dsri_vocab **out)
{
    if (!g || !out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsri_vocab_load: NULL argument");
    *out = NULL;
    dsri_vocab *v = dsri_calloc(1, sizeof *v);
    if (!v)
        return oom("the vocabulary");
    v->unk_id = v->eot_id = -1;
    for (int k = 0; k < DSRI_VOCAB_N_SPECIAL; k++)
        v->special[k] = -1;
    dsr1_status st = load_all(v, g);
    if (st != DSR1_OK) {
        dsri_vocab_free(v);
        return st;
    }
    *out = v;
    return DSR1_OK;
}
