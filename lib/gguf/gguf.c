/*
 * GGUF parser: every length, count, offset and size is checked against the
 * buffer before it is used, with overflow-safe arithmetic. See gguf.h.
 */
#include "gguf/gguf.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "quant/quant.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
/* Limits that no real file comes near; they keep hostile counts from
 * turning into huge allocations before the bytes run out. */
#define GGUF_MAX_KEY_LEN 65535u

struct dsri_gguf {
    uint32_t version;
    uint64_t alignment;
    uint64_t n_kv;
    dsri_gguf_kv *kv;
    uint64_t *kv_sorted;       /* kv indices sorted by key */
    dsri_str *arr_strings;     /* all string-array elements, in order */
    uint64_t *kv_str_base;     /* per kv: index of its first element in arr_strings */
    uint64_t n_tensors;
    dsri_gguf_tensor *tensors;
    uint64_t *tensor_sorted;   /* tensor indices sorted by name */
    uint64_t data_offset;
};

typedef struct cursor {
    const uint8_t *buf;
    size_t size;
    size_t pos;
} cursor;

static int cur_need(const cursor *c, uint64_t n)
{
    return n <= (uint64_t)(c->size - c->pos);
}

static int read_u32(cursor *c, uint32_t *v)
{
    if (!cur_need(c, 4))
        return 0;
    uint8_t b[4];
    memcpy(b, c->buf + c->pos, 4);
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    c->pos += 4;
    return 1;
}

static int read_u64(cursor *c, uint64_t *v)
{
    uint32_t lo = 0, hi = 0;
    if (!cur_need(c, 8))
        return 0;
    read_u32(c, &lo);
    read_u32(c, &hi);
    *v = (uint64_t)hi << 32 | lo;
    return 1;
}

static int read_str(cursor *c, dsri_str *s)
{
    uint64_t len;
    if (!read_u64(c, &len) || !cur_need(c, len))
        return 0;
    s->ptr = (const char *)c->buf + c->pos;
    s->len = len;
    c->pos += (size_t)len;
    return 1;
}

/* Size in bytes of one scalar of a fixed-size type; 0 for string/array/unknown. */
static size_t vtype_size(uint32_t t)
{
    switch (t) {
    case DSRI_GGUF_U8: case DSRI_GGUF_I8: case DSRI_GGUF_BOOL: return 1;
    case DSRI_GGUF_U16: case DSRI_GGUF_I16: return 2;
    case DSRI_GGUF_U32: case DSRI_GGUF_I32: case DSRI_GGUF_F32: return 4;
    case DSRI_GGUF_U64: case DSRI_GGUF_I64: case DSRI_GGUF_F64: return 8;
    default: return 0;
    }
}

static int str_cmp(dsri_str a, dsri_str b)
{
    uint64_t n = a.len < b.len ? a.len : b.len;
    int r = n ? memcmp(a.ptr, b.ptr, (size_t)n) : 0;
    if (r)
        return r;
    return (a.len > b.len) - (a.len < b.len);
}

int dsri_str_eq(dsri_str s, const char *cstr)
{
    size_t n = strlen(cstr);
    return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

/* Sorting index arrays by name. qsort has no user pointer in C11, so sort
 * (name, index) pairs instead of indices. */
typedef struct named_index {
    dsri_str name;
    uint64_t index;
} named_index;

static int named_index_cmp(const void *a, const void *b)
{
    const named_index *x = a, *y = b;
    return str_cmp(x->name, y->name);
}

/* Sort names into out (indices); report the first duplicate name. */
static dsr1_status sort_names(const dsri_str *names, size_t stride, uint64_t n, uint64_t *out,
                              const char *what)
{
    if (n == 0)
        return DSR1_OK;
    named_index *tmp = dsri_calloc((size_t)n, sizeof *tmp);
    if (!tmp)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "gguf: out of memory sorting %s names", what);
    for (uint64_t i = 0; i < n; i++) {
        tmp[i].name = *(const dsri_str *)((const char *)names + i * stride);
        tmp[i].index = i;
    }
    qsort(tmp, (size_t)n, sizeof *tmp, named_index_cmp);
    for (uint64_t i = 0; i < n; i++) {
        if (i > 0 && str_cmp(tmp[i - 1].name, tmp[i].name) == 0) {
            dsr1_status st = dsri_error(DSR1_ERR_FORMAT, "gguf: duplicate %s name '%.*s'", what,
                                        (int)(tmp[i].name.len > 200 ? 200 : tmp[i].name.len),
                                        tmp[i].name.ptr);
            dsri_free(tmp);
            return st;
        }
        out[i] = tmp[i].index;
    }
    dsri_free(tmp);
    return DSR1_OK;
}

/* Count string-array elements first so one allocation holds them all. */
static dsr1_status parse_kv(dsri_gguf *g, cursor *c, uint64_t i, uint64_t *n_strings)
{
    dsri_gguf_kv *kv = &g->kv[i];
    size_t at = c->pos;
    uint32_t type;
    if (!read_str(c, &kv->key))
        return dsri_error(DSR1_ERR_FORMAT, "gguf: key %llu at byte %zu runs past the end of the file",
                          (unsigned long long)i, at);
    if (kv->key.len == 0 || kv->key.len > GGUF_MAX_KEY_LEN)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: key %llu at byte %zu has invalid length %llu",
                          (unsigned long long)i, at, (unsigned long long)kv->key.len);
    int kl = (int)(kv->key.len > 200 ? 200 : kv->key.len);
    if (!read_u32(c, &type))
        return dsri_error(DSR1_ERR_FORMAT, "gguf: key '%.*s': type runs past the end of the file", kl,
                          kv->key.ptr);
    kv->type = (dsri_gguf_vtype)type;
    kv->arr_n = 0;
    kv->arr_type = DSRI_GGUF_U8;
    if (type == DSRI_GGUF_STRING) {
        dsri_str s;
        kv->data = c->buf + c->pos;
        if (!read_str(c, &s))
            return dsri_error(DSR1_ERR_FORMAT, "gguf: key '%.*s': string value at byte %zu runs past the end of the file",
                              kl, kv->key.ptr, c->pos);
        return DSR1_OK;
    }
    if (type == DSRI_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (!read_u32(c, &et) || !read_u64(c, &n))
            return dsri_error(DSR1_ERR_FORMAT, "gguf: key '%.*s': array header runs past the end of the file",
                              kl, kv->key.ptr);
        kv->arr_type = (dsri_gguf_vtype)et;
        kv->arr_n = n;
        kv->data = c->buf + c->pos;
        if (et == DSRI_GGUF_STRING) {
            /* each element needs at least its 8-byte length */
            if (n > (c->size - c->pos) / 8)
                return dsri_error(DSR1_ERR_FORMAT, "gguf: key '%.*s': string array of %llu elements does not fit in the file",
                                  kl, kv->key.ptr, (unsigned long long)n);
            for (uint64_t k = 0; k < n; k++) {
                dsri_str s;
                if (!read_str(c, &s))
                    return dsri_error(DSR1_ERR_FORMAT, "gguf: key '%.*s': string element %llu at byte %zu runs past the end of the file",
                                      kl, kv->key.ptr, (unsigned long long)k, c->pos);
            }
            *n_strings += n;
            return DSR1_OK;
        }
        size_t es = vtype_size(et);
        if (es == 0)
            return dsri_error(DSR1_ERR_FORMAT, "gguf: key '%.*s': unsupported array element type %u",
                              kl, kv->key.ptr, et);
        if (n > (c->size - c->pos) / es)
            return dsri_error(DSR1_ERR_FORMAT, "gguf: key '%.*s': array of %llu elements runs past the end of the file",
                              kl, kv->key.ptr, (unsigned long long)n);
        c->pos += (size_t)(n * es);
        return DSR1_OK;
    }
    size_t vs = vtype_size(type);
    if (vs == 0)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: key '%.*s': unknown value type %u", kl, kv->key.ptr, type);
    if (!cur_need(c, vs))
        return dsri_error(DSR1_ERR_FORMAT, "gguf: key '%.*s': value runs past the end of the file", kl,
                          kv->key.ptr);
    kv->data = c->buf + c->pos;
    c->pos += vs;
    return DSR1_OK;
}

/* Second pass over string arrays: index every element for O(1) access. */
static void index_strings(dsri_gguf *g)
{
    uint64_t next = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        dsri_gguf_kv *kv = &g->kv[i];
        g->kv_str_base[i] = next;
        if (kv->type != DSRI_GGUF_ARRAY || kv->arr_type != DSRI_GGUF_STRING)
            continue;
        /* bounds were checked during the first pass */
        cursor c = {kv->data, (size_t)-1, 0};
        for (uint64_t k = 0; k < kv->arr_n; k++) {
            uint64_t len = 0;
            read_u64(&c, &len);
            g->arr_strings[next].ptr = (const char *)kv->data + c.pos;
            g->arr_strings[next].len = len;
            c.pos += (size_t)len;
            next++;
        }
    }
}

static dsr1_status parse_tensor(dsri_gguf *g, cursor *c, uint64_t i)
{
    dsri_gguf_tensor *t = &g->tensors[i];
    size_t at = c->pos;
    if (!read_str(c, &t->name))
        return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor %llu at byte %zu: name runs past the end of the file",
                          (unsigned long long)i, at);
    int nl = (int)(t->name.len > 200 ? 200 : t->name.len);
    if (t->name.len == 0)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor %llu at byte %zu has an empty name",
                          (unsigned long long)i, at);
    if (!read_u32(c, &t->n_dims))
        return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor '%.*s': dimension count runs past the end of the file",
                          nl, t->name.ptr);
    if (t->n_dims == 0 || t->n_dims > DSRI_GGUF_MAX_DIMS)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor '%.*s': %u dimensions (1 to %d allowed)", nl,
                          t->name.ptr, t->n_dims, DSRI_GGUF_MAX_DIMS);
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < DSRI_GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims && !read_u64(c, &ne))
            return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor '%.*s': dimensions run past the end of the file",
                              nl, t->name.ptr);
        if (ne == 0 || ne > (uint64_t)INT64_MAX / n_elem)
            return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor '%.*s': dimension %u is %llu (zero or overflowing)",
                              nl, t->name.ptr, d, (unsigned long long)ne);
        n_elem *= ne;
        t->ne[d] = (int64_t)ne;
    }
    if (!read_u32(c, &t->type) || !read_u64(c, &t->offset))
        return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor '%.*s': type/offset run past the end of the file",
                          nl, t->name.ptr);
    const dsri_type_traits *tr = dsri_type_traits_get(t->type);
    if (!tr)
        return dsri_error(DSR1_ERR_UNSUPPORTED, "gguf: tensor '%.*s': unsupported weight type %u", nl,
                          t->name.ptr, t->type);
    if (t->ne[0] % tr->block_size != 0)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor '%.*s': row length %lld is not a multiple of the %s block size %u",
                          nl, t->name.ptr, (long long)t->ne[0], tr->name, tr->block_size);
    /* every product checked: ne0 = 2^62 + 1 f32 values would wrap the row
     * size to 4 bytes and pass the bounds check below */
    uint64_t blocks = (uint64_t)t->ne[0] / tr->block_size;
    uint64_t rows = n_elem / (uint64_t)t->ne[0];
    if (blocks > UINT64_MAX / tr->type_size)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor '%.*s': row size overflows (%llu values)", nl, t->name.ptr,
                          (unsigned long long)t->ne[0]);
    uint64_t row = blocks * tr->type_size;
    if (row > UINT64_MAX / rows)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor '%.*s': byte size overflows", nl, t->name.ptr);
    t->n_bytes = row * rows;
    if (t->offset % g->alignment != 0)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor '%.*s': data offset %llu is not aligned to %llu",
                          nl, t->name.ptr, (unsigned long long)t->offset, (unsigned long long)g->alignment);
    return DSR1_OK;
}

static dsr1_status parse_header(dsri_gguf *g, cursor *c)
{
    if (c->size < 4 || memcmp(c->buf, GGUF_MAGIC, 4) != 0)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: bad magic (not a GGUF file)");
    c->pos = 4;
    if (!read_u32(c, &g->version))
        return dsri_error(DSR1_ERR_FORMAT, "gguf: file ends inside the header (byte 4)");
    if (g->version == 1)
        return dsri_error(DSR1_ERR_UNSUPPORTED, "gguf: version 1 files are not supported (re-convert the model)");
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xFFFFu) == 0)
            return dsri_error(DSR1_ERR_UNSUPPORTED, "gguf: big-endian GGUF files are not supported");
        return dsri_error(DSR1_ERR_UNSUPPORTED, "gguf: unknown version %u", g->version);
    }
    if (!read_u64(c, &g->n_tensors) || !read_u64(c, &g->n_kv))
        return dsri_error(DSR1_ERR_FORMAT, "gguf: file ends inside the header");
    /* a key/value pair takes at least 13 bytes, a tensor info at least 32 */
    if (g->n_kv > (c->size - c->pos) / 13)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: key/value count %llu cannot fit in a %zu-byte file",
                          (unsigned long long)g->n_kv, c->size);
    if (g->n_tensors > (c->size - c->pos) / 32)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: tensor count %llu cannot fit in a %zu-byte file",
                          (unsigned long long)g->n_tensors, c->size);
    return DSR1_OK;
}

static dsr1_status read_alignment(dsri_gguf *g)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, "general.alignment");
    if (!kv)
        return DSR1_OK;
    uint64_t a;
    if (kv->type != DSRI_GGUF_U32 || dsri_gguf_get_u64(g, "general.alignment", &a) != 0)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: key 'general.alignment' must be a uint32");
    if (a == 0 || (a & (a - 1)) != 0)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: general.alignment %llu is not a power of two",
                          (unsigned long long)a);
    g->alignment = a;
    return DSR1_OK;
}

/* Tensors must not share bytes. llama.cpp writes (and requires) them one
 * after another; a file whose tensors overlap would report more weight
 * bytes than it holds (fuzz_model found one through a patched offset). */
typedef struct span {
    uint64_t offset, n_bytes, index;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset > y->offset ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index); /* a stable message */
}

static dsr1_status check_disjoint(const dsri_gguf *g)
{
    if (g->n_tensors < 2)
        return DSR1_OK;
    span *s = dsri_calloc((size_t)g->n_tensors, sizeof *s);
    if (!s)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "gguf: out of memory for %llu tensors",
                          (unsigned long long)g->n_tensors);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        s[i] = (span){g->tensors[i].offset, g->tensors[i].n_bytes, i};
    qsort(s, (size_t)g->n_tensors, sizeof *s, span_cmp);
    dsr1_status st = DSR1_OK;
    uint64_t end = 0, owner = 0; /* the furthest end so far (offsets + sizes are checked against the file) */
    for (uint64_t i = 0; i < g->n_tensors && !st; i++) {
        if (s[i].n_bytes && s[i].offset < end) {
            const dsri_str a = g->tensors[owner].name, b = g->tensors[s[i].index].name;
            st = dsri_error(DSR1_ERR_FORMAT, "gguf: the data of tensors '%.*s' and '%.*s' overlap",
                            (int)(a.len > 200 ? 200 : a.len), a.ptr, (int)(b.len > 200 ? 200 : b.len), b.ptr);
        }
        if (s[i].offset + s[i].n_bytes > end) {
            end = s[i].offset + s[i].n_bytes;
            owner = s[i].index;
        }
    }
    dsri_free(s);
    return st;
}

static dsr1_status parse_all(dsri_gguf *g, cursor *c)
{
    dsr1_status st = parse_header(g, c);
    if (st)
        return st;
    if (g->n_kv) {
        g->kv = dsri_calloc((size_t)g->n_kv, sizeof *g->kv);
        g->kv_sorted = dsri_calloc((size_t)g->n_kv, sizeof *g->kv_sorted);
        g->kv_str_base = dsri_calloc((size_t)g->n_kv, sizeof *g->kv_str_base);
        if (!g->kv || !g->kv_sorted || !g->kv_str_base)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "gguf: out of memory for %llu keys",
                              (unsigned long long)g->n_kv);
    }
    uint64_t n_strings = 0;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if ((st = parse_kv(g, c, i, &n_strings)) != DSR1_OK)
            return st;
    if (g->n_kv && (st = sort_names(&g->kv[0].key, sizeof(dsri_gguf_kv), g->n_kv, g->kv_sorted, "key")))
        return st;
    if (n_strings) {
        g->arr_strings = dsri_calloc((size_t)n_strings, sizeof *g->arr_strings);
        if (!g->arr_strings)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "gguf: out of memory for %llu strings",
                              (unsigned long long)n_strings);
    }
    index_strings(g);
    if ((st = read_alignment(g)))
        return st;

    if (g->n_tensors) {
        g->tensors = dsri_calloc((size_t)g->n_tensors, sizeof *g->tensors);
        g->tensor_sorted = dsri_calloc((size_t)g->n_tensors, sizeof *g->tensor_sorted);
        if (!g->tensors || !g->tensor_sorted)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "gguf: out of memory for %llu tensors",
                              (unsigned long long)g->n_tensors);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((st = parse_tensor(g, c, i)) != DSR1_OK)
            return st;
    if (g->n_tensors && (st = sort_names(&g->tensors[0].name, sizeof(dsri_gguf_tensor), g->n_tensors,
                                         g->tensor_sorted, "tensor")))
        return st;

    uint64_t data = ((uint64_t)c->pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && data > c->size)
        return dsri_error(DSR1_ERR_FORMAT, "gguf: file ends before the tensor data section (byte %llu)",
                          (unsigned long long)data);
    g->data_offset = data;
    uint64_t avail = data <= c->size ? c->size - data : 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        dsri_gguf_tensor *t = &g->tensors[i];
        if (t->offset > avail || t->n_bytes > avail - t->offset)
            return dsri_error(DSR1_ERR_FORMAT,
                              "gguf: tensor '%.*s': data [%llu, +%llu) lies outside the file (data section holds %llu bytes)",
                              (int)(t->name.len > 200 ? 200 : t->name.len), t->name.ptr,
                              (unsigned long long)t->offset, (unsigned long long)t->n_bytes,
                              (unsigned long long)avail);
        t->data = c->buf + data + t->offset;
    }
    return check_disjoint(g);
}

dsr1_status dsri_gguf_parse(const void *buf, size_t size, dsri_gguf **out)
{
    if (!out || (!buf && size))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "gguf: NULL argument");
    *out = NULL;
    dsri_gguf *g = dsri_calloc(1, sizeof *g);
    if (!g)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "gguf: out of memory");
    cursor c = {buf, size, 0};
    dsr1_status st = parse_all(g, &c);
    if (st) {
        dsri_gguf_free(g);
        return st;
    }
    *out = g;
    return DSR1_OK;
}

void dsri_gguf_free(dsri_gguf *g)
{
    if (!g)
        return;
    dsri_free(g->kv);
    dsri_free(g->kv_sorted);
    dsri_free(g->kv_str_base);
    dsri_free(g->arr_strings);
    dsri_free(g->tensors);
    dsri_free(g->tensor_sorted);
    dsri_free(g);
}

uint32_t dsri_gguf_version(const dsri_gguf *g) { return g->version; }
uint64_t dsri_gguf_alignment(const dsri_gguf *g) { return g->alignment; }
uint64_t dsri_gguf_kv_count(const dsri_gguf *g) { return g->n_kv; }
uint64_t dsri_gguf_tensor_count(const dsri_gguf *g) { return g->n_tensors; }

const dsri_gguf_kv *dsri_gguf_kv_at(const dsri_gguf *g, uint64_t i)
{
    return i < g->n_kv ? &g->kv[i] : NULL;
}

const dsri_gguf_tensor *dsri_gguf_tensor_at(const dsri_gguf *g, uint64_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

/* Binary search over a sorted index of names. */
static int64_t find_sorted(const uint64_t *sorted, uint64_t n, const void *base, size_t stride,
                           const char *name)
{
    dsri_str key = {name, strlen(name)};
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        dsri_str s = *(const dsri_str *)((const char *)base + sorted[mid] * stride);
        int r = str_cmp(s, key);
        if (r == 0)
            return (int64_t)sorted[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const dsri_gguf_kv *dsri_gguf_find_kv(const dsri_gguf *g, const char *key)
{
    if (g->n_kv == 0)
        return NULL;
    int64_t i = find_sorted(g->kv_sorted, g->n_kv, &g->kv[0].key, sizeof(dsri_gguf_kv), key);
    return i < 0 ? NULL : &g->kv[i];
}

const dsri_gguf_tensor *dsri_gguf_find_tensor(const dsri_gguf *g, const char *name)
{
    if (g->n_tensors == 0)
        return NULL;
    int64_t i = find_sorted(g->tensor_sorted, g->n_tensors, &g->tensors[0].name,
                            sizeof(dsri_gguf_tensor), name);
    return i < 0 ? NULL : &g->tensors[i];
}

/* Read a fixed-size little-endian scalar of type t at p. */
static int scalar_as_int(uint32_t t, const uint8_t *p, int64_t *s, uint64_t *u, int *is_signed)
{
    uint64_t raw = 0;
    size_t n = vtype_size(t);
    if (n == 0 || t == DSRI_GGUF_F32 || t == DSRI_GGUF_F64)
        return 0;
    for (size_t k = 0; k < n; k++)
        raw |= (uint64_t)p[k] << (8 * k);
    switch (t) {
    case DSRI_GGUF_I8: *s = (int8_t)raw; *is_signed = 1; break;
    case DSRI_GGUF_I16: *s = (int16_t)raw; *is_signed = 1; break;
    case DSRI_GGUF_I32: *s = (int32_t)raw; *is_signed = 1; break;
    case DSRI_GGUF_I64: *s = (int64_t)raw; *is_signed = 1; break;
    default: *u = raw; *is_signed = 0; break;
    }
    return 1;
}

int dsri_gguf_get_u64(const dsri_gguf *g, const char *key, uint64_t *out)
{
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, key);
    if (!kv)
        return -1;
    int64_t s = 0;
    uint64_t u = 0;
    int sg;
    if (!scalar_as_int(kv->type, kv->data, &s, &u, &sg))
        return -2;
    if (sg) {
        if (s < 0)
            return -2;
        u = (uint64_t)s;
    }
    *out = u;
    return 0;
}

int dsri_gguf_get_i64(const dsri_gguf *g, const char *key, int64_t *out)
{
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, key);
    if (!kv)
        return -1;
    int64_t s = 0;
    uint64_t u = 0;
    int sg;
    if (!scalar_as_int(kv->type, kv->data, &s, &u, &sg))
        return -2;
    if (!sg) {
        if (u > (uint64_t)INT64_MAX)
            return -2;
        s = (int64_t)u;
    }
    *out = s;
    return 0;
}

int dsri_gguf_get_f32(const dsri_gguf *g, const char *key, float *out)
{
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, key);
    if (!kv)
        return -1;
    if (kv->type == DSRI_GGUF_F32) {
        memcpy(out, kv->data, 4);
        return 0;
    }
    if (kv->type == DSRI_GGUF_F64) {
        double d;
        memcpy(&d, kv->data, 8);
        *out = (float)d;
        return 0;
    }
    return -2;
}

int dsri_gguf_get_bool(const dsri_gguf *g, const char *key, int *out)
{
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, key);
    if (!kv)
        return -1;
    if (kv->type != DSRI_GGUF_BOOL)
        return -2;
    *out = kv->data[0] != 0;
    return 0;
}

int dsri_gguf_get_str(const dsri_gguf *g, const char *key, dsri_str *out)
{
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, key);
    if (!kv)
        return -1;
    if (kv->type != DSRI_GGUF_STRING)
        return -2;
    cursor c = {kv->data, (size_t)-1, 0};
    uint64_t len;
    read_u64(&c, &len);
    out->ptr = (const char *)kv->data + 8;
    out->len = len;
    return 0;
}

int dsri_gguf_arr_str(const dsri_gguf *g, const dsri_gguf_kv *kv, uint64_t i, dsri_str *out)
{
    if (kv->type != DSRI_GGUF_ARRAY || kv->arr_type != DSRI_GGUF_STRING || i >= kv->arr_n)
        return -1;
    uint64_t idx = (uint64_t)(kv - g->kv);
    *out = g->arr_strings[g->kv_str_base[idx] + i];
    return 0;
}

int64_t dsri_gguf_arr_int(const dsri_gguf_kv *kv, uint64_t i)
{
    int64_t s = 0;
    uint64_t u = 0;
    int sg = 0;
    if (kv->type != DSRI_GGUF_ARRAY || i >= kv->arr_n)
        return 0;
    size_t es = vtype_size(kv->arr_type);
    if (!scalar_as_int(kv->arr_type, kv->data + i * es, &s, &u, &sg))
        return 0;
    return sg ? s : (int64_t)u;
}

double dsri_gguf_arr_float(const dsri_gguf_kv *kv, uint64_t i)
{
    if (kv->type != DSRI_GGUF_ARRAY || i >= kv->arr_n)
        return 0;
    if (kv->arr_type == DSRI_GGUF_F32) {
        float f;
        memcpy(&f, kv->data + i * 4, 4);
        return f;
    }
    if (kv->arr_type == DSRI_GGUF_F64) {
        double d;
        memcpy(&d, kv->data + i * 8, 8);
        return d;
    }
    return 0;
}
