/*
 * libdsr1 - importance matrix files (see imatrix.h for the formats).
 *
 * Files are read whole into memory and every length, count and offset is
 * checked against what is left before it is used: a hostile file gets a
 * message, never a read past its end or an allocation it did not pay for
 * in bytes.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/error.h"
#include "gguf/gguf.h"
#include "gguf/gguf_write.h"
#include "quant/imatrix.h"

#define KEY_DATASETS "imatrix.datasets"
#define KEY_CHUNK_COUNT "imatrix.chunk_count"
#define KEY_CHUNK_SIZE "imatrix.chunk_size"

dsri_imatrix *dsri_imatrix_new(void) { return dsri_calloc(1, sizeof(dsri_imatrix)); }

static void entry_free(dsri_imatrix_entry *e)
{
    dsri_free(e->name);
    dsri_free(e->sums);
    dsri_free(e->counts);
}

void dsri_imatrix_free(dsri_imatrix *m)
{
    if (!m)
        return;
    for (int64_t i = 0; i < m->n_entries; i++) entry_free(&m->entries[i]);
    dsri_free(m->entries);
    dsri_free(m->dataset);
    dsri_free(m);
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const dsri_imatrix_entry *)a)->name, ((const dsri_imatrix_entry *)b)->name);
}

static void sort_entries(dsri_imatrix *m)
{
    if (m->n_entries > 1)
        qsort(m->entries, (size_t)m->n_entries, sizeof *m->entries, entry_cmp);
}

static dsri_imatrix_entry *find_mut(const dsri_imatrix *m, const char *name)
{
    for (int64_t i = 0; i < m->n_entries; i++)
        if (strcmp(m->entries[i].name, name) == 0)
            return &m->entries[i];
    return NULL;
}

const dsri_imatrix_entry *dsri_imatrix_find(const dsri_imatrix *m, const char *name) { return find_mut(m, name); }

/* a new zeroed entry (name copied); NULL when out of memory */
static dsri_imatrix_entry *add_entry(dsri_imatrix *m, const char *name, size_t name_len, int64_t n_values,
                                     int64_t n_counts)
{
    if (m->n_entries == m->cap) {
        int64_t cap = m->cap ? 2 * m->cap : 64;
        dsri_imatrix_entry *e = dsri_realloc(m->entries, (size_t)cap * sizeof *e);
        if (!e)
            return NULL;
        m->entries = e;
        m->cap = cap;
    }
    dsri_imatrix_entry *e = &m->entries[m->n_entries];
    memset(e, 0, sizeof *e);
    e->name = dsri_strndup(name, name_len);
    e->sums = dsri_calloc((size_t)n_values, sizeof *e->sums);
    e->counts = dsri_calloc((size_t)n_counts, sizeof *e->counts);
    if (!e->name || !e->sums || !e->counts) {
        entry_free(e);
        return NULL;
    }
    e->n_values = n_values;
    e->n_counts = n_counts;
    m->n_entries++;
    return e;
}

/* ------------------------------------------------------------- reading */

static dsr1_status read_file(const char *path, uint8_t **buf, size_t *size)
{
    *buf = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dsri_error(DSR1_ERR_IO, "imatrix '%s': cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size < 0 ||
        (unsigned long long)sb.st_size > (unsigned long long)SIZE_MAX / 2) {
        fclose(f);
        return dsri_error(DSR1_ERR_IO, "imatrix '%s': not a regular file", path);
    }
    const long long len = (long long)sb.st_size;
    uint8_t *b = dsri_malloc(len > 0 ? (size_t)len : 1);
    if (!b) {
        fclose(f);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix '%s': cannot hold %lld bytes", path, len);
    }
    size_t got = len > 0 ? fread(b, 1, (size_t)len, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (err || got != (size_t)len) {
        dsri_free(b);
        return dsri_error(DSR1_ERR_IO, "imatrix '%s': read failed", path);
    }
    *buf = b;
    *size = (size_t)len;
    return DSR1_OK;
}

static int finite_nonneg(float v) { return v >= 0.0f && v <= 3.4028235e38f; }

typedef struct cursor {
    const uint8_t *p, *end;
} cursor;

static int take(cursor *c, void *dst, size_t n)
{
    if ((size_t)(c->end - c->p) < n)
        return -1;
    memcpy(dst, c->p, n);
    c->p += n;
    return 0;
}

static dsr1_status load_legacy(const char *path, const uint8_t *buf, size_t size, dsri_imatrix *m)
{
    cursor c = {buf, buf + size};
    int32_t n_entries;
    if (take(&c, &n_entries, 4) != 0 || n_entries < 1)
        return dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': no entries (neither a GGUF nor a legacy imatrix file)",
                          path);
    m->is_legacy = 1;
    for (int32_t i = 0; i < n_entries; i++) {
        int32_t len, ncall, nval;
        if (take(&c, &len, 4) != 0 || len < 1 || (size_t)(c.end - c.p) < (size_t)len)
            return dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': entry %d: bad name length", path, (int)i + 1);
        const char *name = (const char *)c.p;
        c.p += len;
        if (memchr(name, '\0', (size_t)len))
            return dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': entry %d: name holds a NUL byte", path, (int)i + 1);
        if (take(&c, &ncall, 4) != 0 || take(&c, &nval, 4) != 0 || nval < 1 ||
            (size_t)(c.end - c.p) / 4 < (size_t)nval)
            return dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': entry %d (%.*s): bad value count or truncated", path,
                              (int)i + 1, (int)(len < 64 ? len : 64), name);
        char *nm = dsri_strndup(name, (size_t)len);
        if (!nm)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix '%s': out of memory", path);
        int dup = find_mut(m, nm) != NULL;
        dsri_free(nm);
        if (dup)
            return dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': entry '%.*s' appears twice", path, (int)len, name);
        dsri_imatrix_entry *e = add_entry(m, name, (size_t)len, nval, 1);
        if (!e)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix '%s': out of memory", path);
        memcpy(e->sums, c.p, (size_t)nval * 4);
        c.p += (size_t)nval * 4;
        e->counts[0] = ncall > 0 ? ncall : 1; /* llama-quantize divides only by a positive ncall */
        for (int32_t j = 0; j < nval; j++)
            if (!finite_nonneg(e->sums[j]))
                return dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': entry '%s': value %d is %g", path, e->name,
                                  (int)j, (double)e->sums[j]);
    }
    /* the optional trailer: chunk count, then the dataset's name */
    int32_t n_chunks, len;
    if (take(&c, &n_chunks, 4) == 0) {
        m->chunk_count = n_chunks;
        if (take(&c, &len, 4) == 0 && len > 0 && (size_t)(c.end - c.p) >= (size_t)len) {
            m->dataset = dsri_strndup((const char *)c.p, (size_t)len);
            if (!m->dataset)
                return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix '%s': out of memory", path);
        }
    }
    return DSR1_OK;
}

/* NAME.in_sum2 / NAME.counts: the length of NAME and which (1, 2), else 0 */
static int split_name(dsri_str s, size_t *base)
{
    static const char *const suffix[] = {".in_sum2", ".counts"};
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(suffix[k]);
        if (s.len > n && memcmp(s.ptr + s.len - n, suffix[k], n) == 0) {
            *base = (size_t)s.len - n;
            return k + 1;
        }
    }
    return 0;
}

static int64_t n_elems(const dsri_gguf_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < DSRI_GGUF_MAX_DIMS; d++) n *= t->ne[d];
    return n;
}

static dsr1_status load_gguf(const char *path, const uint8_t *buf, size_t size, dsri_imatrix *m)
{
    dsri_gguf *g = NULL;
    dsr1_status st = dsri_gguf_parse(buf, size, &g);
    if (st)
        return dsri_error(st, "imatrix '%s': %s", path, dsr1_last_error());
    int64_t v;
    if (dsri_gguf_get_i64(g, KEY_CHUNK_COUNT, &v) == 0 && v >= 0 && v <= INT32_MAX)
        m->chunk_count = (int32_t)v;
    if (dsri_gguf_get_i64(g, KEY_CHUNK_SIZE, &v) == 0 && v >= 0 && v <= INT32_MAX)
        m->chunk_size = (int32_t)v;
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, KEY_DATASETS);
    dsri_str ds;
    if (kv && kv->type == DSRI_GGUF_ARRAY && kv->arr_type == DSRI_GGUF_STRING && kv->arr_n > 0 &&
        dsri_gguf_arr_str(g, kv, 0, &ds) == 0 && !(m->dataset = dsri_strndup(ds.ptr, (size_t)ds.len))) {
        dsri_gguf_free(g);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix '%s': out of memory", path);
    }
    const uint64_t n_t = dsri_gguf_tensor_count(g);
    for (uint64_t i = 0; i < n_t && !st; i++) {
        const dsri_gguf_tensor *t = dsri_gguf_tensor_at(g, i);
        size_t base;
        if (split_name(t->name, &base) != 1)
            continue;
        /* NAME.in_sum2 with its NAME.counts */
        char *name = dsri_strndup(t->name.ptr, base);
        char *cname = name ? dsri_malloc(base + 8) : NULL;
        if (!cname) {
            dsri_free(name);
            st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix '%s': out of memory", path);
            break;
        }
        memcpy(cname, name, base);
        memcpy(cname + base, ".counts", 8);
        const dsri_gguf_tensor *ct = dsri_gguf_find_tensor(g, cname);
        const int64_t nval = n_elems(t), ncnt = ct ? n_elems(ct) : 0;
        if (!ct)
            st = dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': '%s' has sums but no counts", path, name);
        else if (t->type != 0 || ct->type != 0)
            st = dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': sums and counts of '%s' must be f32", path, name);
        else if (nval < 1 || ncnt < 1 || nval % ncnt != 0)
            st = dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': '%s': %lld sums do not split into %lld matrices", path,
                            name, (long long)nval, (long long)ncnt);
        else if (find_mut(m, name))
            st = dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': entry '%s' appears twice", path, name);
        dsri_imatrix_entry *e = NULL;
        if (!st && !(e = add_entry(m, name, base, nval, ncnt)))
            st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix '%s': out of memory", path);
        if (!st) {
            memcpy(e->sums, t->data, (size_t)nval * 4);
            for (int64_t j = 0; j < nval && !st; j++)
                if (!finite_nonneg(e->sums[j]))
                    st = dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': '%s': sum %lld is %g", path, name, (long long)j,
                                    (double)e->sums[j]);
            for (int64_t j = 0; j < ncnt && !st; j++) {
                float c;
                memcpy(&c, ct->data + 4 * j, 4);
                if (!finite_nonneg(c) || c > 9.0e15f)
                    st = dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': '%s': count %lld is %g", path, name,
                                    (long long)j, (double)c);
                else
                    e->counts[j] = (int64_t)llroundf(c);
            }
        }
        dsri_free(name);
        dsri_free(cname);
    }
    /* counts without sums */
    for (uint64_t i = 0; i < n_t && !st; i++) {
        const dsri_gguf_tensor *t = dsri_gguf_tensor_at(g, i);
        size_t base;
        if (split_name(t->name, &base) == 2) {
            int found = 0;
            for (int64_t k = 0; k < m->n_entries && !found; k++)
                found = strlen(m->entries[k].name) == base && memcmp(m->entries[k].name, t->name.ptr, base) == 0;
            if (!found)
                st = dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': '%.*s' has counts but no sums", path,
                                (int)(base < 200 ? base : 200), t->name.ptr);
        }
    }
    dsri_gguf_free(g);
    if (!st && m->n_entries == 0)
        st = dsri_error(DSR1_ERR_FORMAT, "imatrix '%s': a GGUF file without imatrix entries (NAME.in_sum2)", path);
    return st;
}

dsr1_status dsri_imatrix_load(const char *path, dsri_imatrix **out)
{
    *out = NULL;
    uint8_t *buf;
    size_t size;
    dsr1_status st = read_file(path, &buf, &size);
    if (st)
        return st;
    dsri_imatrix *m = dsri_imatrix_new();
    if (!m)
        st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix '%s': out of memory", path);
    else if (size >= 4 && memcmp(buf, "GGUF", 4) == 0)
        st = load_gguf(path, buf, size, m);
    else
        st = load_legacy(path, buf, size, m);
    dsri_free(buf);
    if (st) {
        dsri_imatrix_free(m);
        return st;
    }
    sort_entries(m);
    *out = m;
    return DSR1_OK;
}

int dsri_imatrix_weights(const dsri_imatrix_entry *e, int64_t n_per_row, int64_t n_mat, float *out)
{
    if (n_per_row < 1 || n_mat < 1 || e->n_values != n_per_row * n_mat || e->n_values % e->n_counts != 0)
        return -1;
    const int64_t per_count = e->n_values / e->n_counts;
    for (int64_t j = 0; j < e->n_values; j++) {
        const int64_t c = e->counts[j / per_count];
        out[j] = c > 0 ? e->sums[j] / (float)c : 1.0f;
    }
    return 0;
}

/* ----------------------------------------------------------- collecting */

dsr1_status dsri_imatrix_add(dsri_imatrix *m, const char *name, int64_t n_per_row, int64_t n_mat, int64_t mat,
                             const float *x, int64_t n_rows)
{
    if (n_per_row < 1 || n_mat < 1 || mat < 0 || mat >= n_mat || n_rows < 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "imatrix: bad shape for '%s'", name);
    dsri_imatrix_entry *e = find_mut(m, name);
    if (!e && !(e = add_entry(m, name, strlen(name), n_per_row * n_mat, n_mat)))
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix: out of memory");
    if (e->n_values != n_per_row * n_mat || e->n_counts != n_mat)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "imatrix: '%s' seen with %lld x %lld values, then %lld x %lld",
                          name, (long long)(e->n_values / e->n_counts), (long long)e->n_counts, (long long)n_per_row,
                          (long long)n_mat);
    float *acc = e->sums + mat * n_per_row;
    for (int64_t r = 0; r < n_rows; r++)
        for (int64_t j = 0; j < n_per_row; j++) acc[j] += x[r * n_per_row + j] * x[r * n_per_row + j];
    e->counts[mat] += n_rows;
    return DSR1_OK;
}

/* ------------------------------------------------------------- writing */

static dsr1_status put(FILE *f, const void *p, size_t n) { return dsri_gguf_write_bytes(f, p, n); }

/* a matrix of experts keeps a count per expert; other tensors one count
 * when all their matrices saw the same rows (llama-imatrix's dense rule) */
static int64_t counts_kept(const dsri_imatrix_entry *e)
{
    if (strstr(e->name, "_exps"))
        return e->n_counts;
    for (int64_t k = 1; k < e->n_counts; k++)
        if (e->counts[k] != e->counts[0])
            return e->n_counts;
    return 1;
}

static dsr1_status save_gguf(const dsri_imatrix *m, FILE *f)
{
    const char *dataset = m->dataset ? m->dataset : "";
    /* keys: general.type, the datasets, chunk count and size (llama-imatrix's order) */
    dsr1_status st = dsri_gguf_write_header(f, 2 * (uint64_t)m->n_entries, 4);
    if (!st)
        st = dsri_gguf_write_kv_str(f, "general.type", "imatrix");
    if (!st)
        st = dsri_gguf_write_kv_str_array(f, KEY_DATASETS, &dataset, m->dataset ? 1 : 0);
    if (!st)
        st = dsri_gguf_write_kv_u32(f, KEY_CHUNK_COUNT, (uint32_t)m->chunk_count);
    if (!st)
        st = dsri_gguf_write_kv_u32(f, KEY_CHUNK_SIZE, (uint32_t)m->chunk_size);
    const uint64_t align = 32;
    uint64_t off = 0;
    for (int64_t i = 0; i < m->n_entries && !st; i++) {
        const dsri_imatrix_entry *e = &m->entries[i];
        const int64_t nmat = e->n_counts, nc = counts_kept(e);
        const size_t nlen = strlen(e->name);
        char *tn = dsri_malloc(nlen + 9);
        if (!tn)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "imatrix: out of memory");
        memcpy(tn, e->name, nlen);
        /* ggml_n_dims: trailing dimensions of 1 are not written */
        const int64_t ne_s[4] = {e->n_values / nmat, nmat, 1, 1}, ne_c[4] = {1, nc, 1, 1};
        memcpy(tn + nlen, ".in_sum2", 9);
        if (!st)
            st = dsri_gguf_write_tensor_info(f, tn, nlen + 8, nmat > 1 ? 2 : 1, ne_s, 0, off);
        off += ((uint64_t)e->n_values * 4 + align - 1) / align * align;
        memcpy(tn + nlen, ".counts", 8);
        if (!st)
            st = dsri_gguf_write_tensor_info(f, tn, nlen + 7, nc > 1 ? 2 : 1, ne_c, 0, off);
        off += ((uint64_t)nc * 4 + align - 1) / align * align;
        dsri_free(tn);
    }
    /* the data section starts at the next multiple of the alignment */
    const long pos = ftell(f);
    if (!st && pos < 0)
        st = dsri_error(DSR1_ERR_IO, "imatrix: cannot tell the file position: %s", strerror(errno));
    if (!st)
        st = dsri_gguf_write_pad(f, (uint64_t)pos, align);
    for (int64_t i = 0; i < m->n_entries && !st; i++) {
        const dsri_imatrix_entry *e = &m->entries[i];
        st = put(f, e->sums, (size_t)e->n_values * 4);
        if (!st)
            st = dsri_gguf_write_pad(f, (uint64_t)e->n_values * 4, align);
        const int64_t nc = counts_kept(e);
        for (int64_t k = 0; k < nc && !st; k++) {
            const float c = (float)e->counts[k];
            st = put(f, &c, 4);
        }
        if (!st)
            st = dsri_gguf_write_pad(f, (uint64_t)nc * 4, align);
    }
    return st;
}

static dsr1_status save_legacy(const dsri_imatrix *m, FILE *f)
{
    const int64_t chunk = m->chunk_size > 0 ? m->chunk_size : 1;
    int32_t n = 0;
    for (int64_t i = 0; i < m->n_entries; i++) {
        const dsri_imatrix_entry *e = &m->entries[i];
        int any = 0;
        for (int64_t k = 0; k < e->n_counts; k++) any |= e->counts[k] > 0;
        n += any && e->n_values <= INT32_MAX;
    }
    dsr1_status st = put(f, &n, 4);
    for (int64_t i = 0; i < m->n_entries && !st; i++) {
        const dsri_imatrix_entry *e = &m->entries[i];
        int64_t max_count = 0;
        for (int64_t k = 0; k < e->n_counts; k++) max_count = e->counts[k] > max_count ? e->counts[k] : max_count;
        if (max_count == 0 || e->n_values > INT32_MAX)
            continue; /* no data: llama-imatrix skips it */
        const int32_t len = (int32_t)strlen(e->name), nval = (int32_t)e->n_values;
        const int32_t ncall = (int32_t)((max_count + chunk - 1) / chunk);
        st = put(f, &len, 4);
        if (!st)
            st = put(f, e->name, (size_t)len);
        if (!st)
            st = put(f, &ncall, 4);
        if (!st)
            st = put(f, &nval, 4);
        const int64_t per = e->n_values / e->n_counts;
        for (int64_t j = 0; j < e->n_values && !st; j++) {
            const int64_t c = e->counts[j / per];
            /* a matrix of no data stores 1 (llama-imatrix) */
            const float v = (c > 0 ? e->sums[j] / (float)c : 1.0f) * (float)ncall;
            st = put(f, &v, 4);
        }
    }
    const int32_t chunks = m->chunk_count, dlen = m->dataset ? (int32_t)strlen(m->dataset) : 0;
    if (!st)
        st = put(f, &chunks, 4);
    if (!st)
        st = put(f, &dlen, 4);
    if (!st && dlen)
        st = put(f, m->dataset, (size_t)dlen);
    return st;
}

dsr1_status dsri_imatrix_save(dsri_imatrix *m, const char *path, int legacy)
{
    sort_entries(m);
    FILE *f = fopen(path, "wb");
    if (!f)
        return dsri_error(DSR1_ERR_IO, "imatrix: cannot create '%s': %s", path, strerror(errno));
    dsr1_status st = legacy ? save_legacy(m, f) : save_gguf(m, f);
    if (fclose(f) != 0 && !st)
        st = dsri_error(DSR1_ERR_IO, "imatrix: cannot write '%s': %s", path, strerror(errno));
    if (st)
        remove(path);
    return st;
}
