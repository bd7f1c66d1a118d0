/*
 * libdsr1 - importance matrix files (lib/quant/imatrix.c).
 *
 * Checks: entries collected with dsri_imatrix_add give the means they were
 * fed; written as GGUF and as legacy .dat and read back they give the same
 * weights; the GGUF file has llama-imatrix's keys, tensor names, shapes and
 * types (read with the GGUF parser); hand-made files in both formats, laid
 * out byte by byte as llama.cpp writes them, load with the values they
 * hold; hostile files (every truncation, every single-byte corruption of
 * both formats, and named faults: NaN and negative values, bad counts, sums
 * without counts, duplicate names, wrong types) are refused with a message
 * naming the file, or load with finite non-negative values, never crash.
 * Collecting (lib/model/imatrix_collect.c) on the qwen2 and deepseek2
 * fixtures: blk.0.attn_q's weights equal the mean square of RMS-normed
 * embeddings computed here from the f32 file; weights that share an input
 * (q/k/v, gate/up, q_a/kv_a_mqa, gate_exps/up_exps) get identical entries;
 * counts are the tokens evaluated (per expert: the tokens routed to it,
 * n_expert_used per token in all); the output head is not collected.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/alloc.h"
#include "gguf/gguf.h"
#include "model/imatrix_collect.h"
#include "model/model.h"
#include "quant/imatrix.h"

static char g_dir[4096];

static void path_of(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "create %s", path);
    if (f) {
        CHECK(fwrite(p, 1, n, f) == n, "write %s", path);
        fclose(f);
    }
}

static uint8_t *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

/* a little-endian byte builder */
typedef struct {
    uint8_t b[8192];
    size_t n;
} buf;
static void put(buf *b, const void *p, size_t n)
{
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void put_i32(buf *b, int32_t v) { put(b, &v, 4); }
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_f32(buf *b, float v) { put(b, &v, 4); }
static void put_str(buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad(buf *b, size_t a)
{
    while (b->n % a) b->b[b->n++] = 0;
}

/* A legacy file: two entries, chunk count 5, dataset "wiki.txt". */
static void make_legacy(buf *b)
{
    b->n = 0;
    put_i32(b, 2);
    put_i32(b, 19);
    put(b, "blk.0.attn_q.weight", 19);
    put_i32(b, 4); /* ncall */
    put_i32(b, 4); /* nval */
    for (int j = 0; j < 4; j++) put_f32(b, 4.0f * (float)(j + 1)); /* means 1..4 */
    put_i32(b, 21);
    put(b, "blk.1.ffn_up_exps.wei", 21);
    put_i32(b, 2);
    put_i32(b, 6);
    for (int j = 0; j < 6; j++) put_f32(b, 2.0f * 0.5f * (float)j); /* means 0, .5, ... */
    put_i32(b, 5);
    put_i32(b, 8);
    put(b, "wiki.txt", 8);
}

/* A GGUF file as llama-imatrix writes it: one dense entry (2 columns) and
 * one of 3 experts x 2 columns, counts {4} and {2, 0, 8}. */
static void make_gguf(buf *b)
{
    b->n = 0;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, 4); /* tensors */
    put_u64(b, 4); /* keys */
    put_str(b, "general.type");
    put_u32(b, 8);
    put_str(b, "imatrix");
    put_str(b, "imatrix.datasets");
    put_u32(b, 9);
    put_u32(b, 8);
    put_u64(b, 1);
    put_str(b, "text.txt");
    put_str(b, "imatrix.chunk_count");
    put_u32(b, 4);
    put_u32(b, 3);
    put_str(b, "imatrix.chunk_size");
    put_u32(b, 4);
    put_u32(b, 512);
    /* tensor infos: name, n_dims, ne, type, offset */
    put_str(b, "a.weight.counts");
    put_u32(b, 1);
    put_u64(b, 1);
    put_u32(b, 0);
    put_u64(b, 0);
    put_str(b, "a.weight.in_sum2");
    put_u32(b, 1);
    put_u64(b, 2);
    put_u32(b, 0);
    put_u64(b, 32);
    put_str(b, "e_exps.weight.in_sum2");
    put_u32(b, 2);
    put_u64(b, 2);
    put_u64(b, 3);
    put_u32(b, 0);
    put_u64(b, 64);
    put_str(b, "e_exps.weight.counts");
    put_u32(b, 2);
    put_u64(b, 1);
    put_u64(b, 3);
    put_u32(b, 0);
    put_u64(b, 96);
    pad(b, 32);
    put_f32(b, 4);
    pad(b, 32);
    put_f32(b, 8);
    put_f32(b, 12);
    pad(b, 32);
    for (int j = 0; j < 6; j++) put_f32(b, (float)(j + 1));
    pad(b, 32);
    put_f32(b, 2);
    put_f32(b, 0);
    put_f32(b, 8);
    pad(b, 32);
}

static dsri_imatrix *load_ok(const char *path)
{
    dsri_imatrix *m = NULL;
    dsr1_status st = dsri_imatrix_load(path, &m);
    CHECK(st == DSR1_OK && m, "load %s: %s", path, st ? dsr1_last_error() : "");
    return st ? NULL : m;
}

static void check_weights(const dsri_imatrix *m, const char *name, int64_t n_per_row, int64_t n_mat,
                          const float *want, const char *what)
{
    const dsri_imatrix_entry *e = dsri_imatrix_find(m, name);
    CHECK(e != NULL, "%s: entry %s", what, name);
    if (!e)
        return;
    float w[64];
    CHECK(dsri_imatrix_weights(e, n_per_row, n_mat, w) == 0, "%s: weights of %s", what, name);
    for (int64_t j = 0; j < n_per_row * n_mat; j++)
        CHECK(fabsf(w[j] - want[j]) <= 1e-6f * fabsf(want[j]) + 1e-7f, "%s: %s[%lld] = %g, want %g", what, name,
              (long long)j, (double)w[j], (double)want[j]);
    CHECK(dsri_imatrix_weights(e, n_per_row + 1, n_mat, w) == -1, "%s: %s: wrong size refused", what, name);
}

static void test_handmade(void)
{
    char path[4200];
    buf b;
    make_legacy(&b);
    path_of(path, sizeof path, "legacy.dat");
    write_bytes(path, b.b, b.n);
    dsri_imatrix *m = load_ok(path);
    if (m) {
        CHECK(m->is_legacy && m->n_entries == 2 && m->chunk_count == 5 && m->dataset &&
                  strcmp(m->dataset, "wiki.txt") == 0,
              "legacy header fields");
        const float q[4] = {1, 2, 3, 4}, e[6] = {0, 0.5f, 1, 1.5f, 2, 2.5f};
        check_weights(m, "blk.0.attn_q.weight", 4, 1, q, "legacy");
        check_weights(m, "blk.1.ffn_up_exps.wei", 2, 3, e, "legacy");
        dsri_imatrix_free(m);
    }
    make_gguf(&b);
    path_of(path, sizeof path, "hand.gguf");
    write_bytes(path, b.b, b.n);
    m = load_ok(path);
    if (m) {
        CHECK(!m->is_legacy && m->n_entries == 2 && m->chunk_count == 3 && m->chunk_size == 512 && m->dataset &&
                  strcmp(m->dataset, "text.txt") == 0,
              "gguf header fields");
        const float a[2] = {2, 3};
        /* expert 1 saw no rows: weight 1, as llama-quantize */
        const float e[6] = {0.5f, 1, 1, 1, 5.0f / 8, 6.0f / 8};
        check_weights(m, "a.weight", 2, 1, a, "gguf");
        check_weights(m, "e_exps.weight", 2, 3, e, "gguf");
        dsri_imatrix_free(m);
    }
}

/* write m in both formats, read both back: the same weights */
static void test_round_trip(void)
{
    dsri_imatrix *m = dsri_imatrix_new();
    CHECK(m != NULL, "new");
    if (!m)
        return;
    float x[3 * 8];
    for (int j = 0; j < 24; j++) x[j] = (float)(j % 7) - 3.0f + 0.25f * (float)j;
    /* dense: 3 rows of 8; experts: 4 experts of 8 columns, expert 2 never seen */
    CHECK(dsri_imatrix_add(m, "blk.0.ffn_down.weight", 8, 1, 0, x, 3) == DSR1_OK, "add dense");
    CHECK(dsri_imatrix_add(m, "blk.1.ffn_down_exps.weight", 8, 4, 0, x, 1) == DSR1_OK, "add expert 0");
    CHECK(dsri_imatrix_add(m, "blk.1.ffn_down_exps.weight", 8, 4, 3, x + 8, 2) == DSR1_OK, "add expert 3");
    CHECK(dsri_imatrix_add(m, "blk.1.ffn_down_exps.weight", 8, 4, 1, x + 16, 1) == DSR1_OK, "add expert 1");
    CHECK(dsri_imatrix_add(m, "blk.1.ffn_down_exps.weight", 16, 2, 0, x, 1) == DSR1_ERR_INVALID_ARGUMENT,
          "a second shape refused");
    CHECK(dsri_imatrix_add(m, "blk.1.ffn_down_exps.weight", 8, 4, 4, x, 1) == DSR1_ERR_INVALID_ARGUMENT,
          "matrix out of range refused");
    m->chunk_count = 2;
    m->chunk_size = 2;
    m->dataset = dsri_strndup("corpus.txt", 10);
    float dense[8], exps[32];
    for (int j = 0; j < 8; j++) {
        dense[j] = (x[j] * x[j] + x[8 + j] * x[8 + j] + x[16 + j] * x[16 + j]) / 3;
        exps[j] = x[j] * x[j];
        exps[8 + j] = x[16 + j] * x[16 + j];
        exps[16 + j] = 1.0f;
        exps[24 + j] = (x[8 + j] * x[8 + j] + x[16 + j] * x[16 + j]) / 2;
    }
    check_weights(m, "blk.0.ffn_down.weight", 8, 1, dense, "collected");
    check_weights(m, "blk.1.ffn_down_exps.weight", 8, 4, exps, "collected");

    char gpath[4200], dpath[4200];
    path_of(gpath, sizeof gpath, "rt.gguf");
    path_of(dpath, sizeof dpath, "rt.dat");
    CHECK(dsri_imatrix_save(m, gpath, 0) == DSR1_OK, "save gguf: %s", dsr1_last_error());
    CHECK(dsri_imatrix_save(m, dpath, 1) == DSR1_OK, "save legacy: %s", dsr1_last_error());
    dsri_imatrix_free(m);

    dsri_imatrix *g = load_ok(gpath), *d = load_ok(dpath);
    if (g) {
        check_weights(g, "blk.0.ffn_down.weight", 8, 1, dense, "gguf round trip");
        check_weights(g, "blk.1.ffn_down_exps.weight", 8, 4, exps, "gguf round trip");
        CHECK(g->chunk_count == 2 && g->chunk_size == 2 && g->dataset && strcmp(g->dataset, "corpus.txt") == 0,
              "gguf round trip metadata");
        const dsri_imatrix_entry *e = dsri_imatrix_find(g, "blk.1.ffn_down_exps.weight");
        CHECK(e && e->n_counts == 4 && e->counts[0] == 1 && e->counts[1] == 1 && e->counts[2] == 0 &&
                  e->counts[3] == 2,
              "expert counts kept");
        e = dsri_imatrix_find(g, "blk.0.ffn_down.weight");
        CHECK(e && e->n_counts == 1 && e->counts[0] == 3, "dense count");
    }
    if (d) {
        check_weights(d, "blk.0.ffn_down.weight", 8, 1, dense, "legacy round trip");
        check_weights(d, "blk.1.ffn_down_exps.weight", 8, 4, exps, "legacy round trip");
        CHECK(d->chunk_count == 2 && d->dataset && strcmp(d->dataset, "corpus.txt") == 0, "legacy metadata");
    }
    dsri_imatrix_free(g);
    dsri_imatrix_free(d);

    /* the GGUF file as llama.cpp's loader sees it */
    size_t n = 0;
    uint8_t *bytes = read_bytes(gpath, &n);
    dsri_gguf *gg = NULL;
    CHECK(bytes && dsri_gguf_parse(bytes, n, &gg) == DSR1_OK, "our GGUF parses");
    if (gg) {
        dsri_str s;
        CHECK(dsri_gguf_get_str(gg, "general.type", &s) == 0 && dsri_str_eq(s, "imatrix"), "general.type");
        const dsri_gguf_kv *kv = dsri_gguf_find_kv(gg, "imatrix.datasets");
        CHECK(kv && kv->type == DSRI_GGUF_ARRAY && kv->arr_type == DSRI_GGUF_STRING && kv->arr_n == 1,
              "imatrix.datasets");
        uint64_t v;
        CHECK(dsri_gguf_get_u64(gg, "imatrix.chunk_count", &v) == 0 && v == 2, "chunk_count");
        CHECK(dsri_gguf_get_u64(gg, "imatrix.chunk_size", &v) == 0 && v == 2, "chunk_size");
        CHECK(dsri_gguf_tensor_count(gg) == 4, "4 tensors");
        const dsri_gguf_tensor *t = dsri_gguf_find_tensor(gg, "blk.1.ffn_down_exps.weight.in_sum2");
        CHECK(t && t->type == 0 && t->n_dims == 2 && t->ne[0] == 8 && t->ne[1] == 4, "expert sums [8, 4]");
        t = dsri_gguf_find_tensor(gg, "blk.1.ffn_down_exps.weight.counts");
        CHECK(t && t->type == 0 && t->n_dims == 2 && t->ne[0] == 1 && t->ne[1] == 4, "expert counts [1, 4]");
        t = dsri_gguf_find_tensor(gg, "blk.0.ffn_down.weight.in_sum2");
        CHECK(t && t->n_dims == 1 && t->ne[0] == 8, "dense sums [8]");
        t = dsri_gguf_find_tensor(gg, "blk.0.ffn_down.weight.counts");
        float c = 0;
        if (t)
            memcpy(&c, t->data, 4);
        CHECK(t && t->n_dims == 1 && t->ne[0] == 1 && c == 3.0f, "dense counts [1] = 3");
        dsri_gguf_free(gg);
    }
    free(bytes);
}

static uint8_t *find(uint8_t *b, size_t n, const char *s)
{
    const size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(b + i, s, k) == 0)
            return b + i;
    return NULL;
}

/* must fail with a message naming the file */
static void expect_refused(const uint8_t *b, size_t n, const char *what)
{
    char path[4200];
    path_of(path, sizeof path, "bad.bin");
    write_bytes(path, b, n);
    dsri_imatrix *m = NULL;
    dsr1_status st = dsri_imatrix_load(path, &m);
    CHECK(st != DSR1_OK && m == NULL, "%s: refused", what);
    CHECK(st == DSR1_OK || strstr(dsr1_last_error(), path) != NULL, "%s: message '%s' names the file", what,
          dsr1_last_error());
    dsri_imatrix_free(m);
}

/* loads (then with sane values) or fails cleanly */
static int load_or_refuse(const uint8_t *b, size_t n)
{
    char path[4200];
    path_of(path, sizeof path, "fuzz.bin");
    write_bytes(path, b, n);
    dsri_imatrix *m = NULL;
    dsr1_status st = dsri_imatrix_load(path, &m);
    int ok = 1;
    if (st == DSR1_OK) {
        for (int64_t i = 0; i < m->n_entries; i++)
            for (int64_t j = 0; j < m->entries[i].n_values; j++)
                ok &= m->entries[i].sums[j] >= 0 && isfinite(m->entries[i].sums[j]);
    } else {
        ok = m == NULL && dsr1_last_error()[0] != '\0';
    }
    dsri_imatrix_free(m);
    return ok;
}

static void test_hostile(void)
{
    buf good, b;
    for (int fmt = 0; fmt < 2; fmt++) {
        if (fmt == 0)
            make_legacy(&good);
        else
            make_gguf(&good);
        const char *fn = fmt ? "gguf" : "legacy";
        /* every truncation of the entries (a legacy file's trailer is optional) */
        /* (the last 20 bytes of the GGUF file are padding, the last 16 of the
         * legacy file its optional trailer) */
        const size_t keep = fmt ? good.n - 21 : good.n - 17;
        int bad = 0;
        for (size_t n = 0; n <= keep; n++) {
            char path[4200];
            path_of(path, sizeof path, "trunc.bin");
            write_bytes(path, good.b, n);
            dsri_imatrix *m = NULL;
            if (dsri_imatrix_load(path, &m) == DSR1_OK || m != NULL || !strstr(dsr1_last_error(), path))
                bad++;
            dsri_imatrix_free(m);
        }
        CHECK(bad == 0, "%s: %d truncations not refused with a message", fn, bad);
        /* every byte replaced by a few values */
        static const uint8_t subs[] = {0x00, 0xFF, 0x7F, 0x80, 0x01};
        bad = 0;
        for (size_t i = 0; i < good.n; i++)
            for (size_t k = 0; k < sizeof subs; k++) {
                b = good;
                b.b[i] = subs[k];
                bad += !load_or_refuse(b.b, b.n);
            }
        CHECK(bad == 0, "%s: %d corruptions loaded bad values or failed without a message", fn, bad);
    }

    /* named faults */
    make_legacy(&b);
    memcpy(b.b + 4 + 4 + 19 + 8, &(float){NAN}, 4);
    expect_refused(b.b, b.n, "legacy NaN value");
    make_legacy(&b);
    memcpy(b.b + 4 + 4 + 19 + 8, &(float){-1.0f}, 4);
    expect_refused(b.b, b.n, "legacy negative value");
    make_legacy(&b);
    memcpy(b.b, &(int32_t){-3}, 4);
    expect_refused(b.b, b.n, "legacy negative entry count");
    make_legacy(&b);
    memcpy(b.b + 4 + 4 + 19 + 4, &(int32_t){0x7FFFFFFF}, 4);
    expect_refused(b.b, b.n, "legacy huge value count");
    make_legacy(&b);
    memcpy(b.b + 4, &(int32_t){0x7FFFFFF0}, 4);
    expect_refused(b.b, b.n, "legacy huge name length");
    {
        /* two entries of the same name */
        buf d;
        d.n = 0;
        put_i32(&d, 2);
        for (int k = 0; k < 2; k++) {
            put_i32(&d, 3);
            put(&d, "abc", 3);
            put_i32(&d, 1);
            put_i32(&d, 1);
            put_f32(&d, 1.0f);
        }
        expect_refused(d.b, d.n, "legacy duplicate entry");
    }
    expect_refused((const uint8_t *)"", 0, "empty file");
    expect_refused((const uint8_t *)"GGUF", 4, "GGUF magic only");

    /* GGUF faults: offsets of the data section in make_gguf's file */
    make_gguf(&good);
    const size_t data = good.n - 4 * 32;
    b = good;
    memcpy(b.b + data + 32, &(float){NAN}, 4);
    expect_refused(b.b, b.n, "gguf NaN sum");
    b = good;
    memcpy(b.b + data + 96 + 4, &(float){-2.0f}, 4);
    expect_refused(b.b, b.n, "gguf negative count");
    b = good;
    memcpy(b.b + data + 96 + 4, &(float){INFINITY}, 4);
    expect_refused(b.b, b.n, "gguf infinite count");
    {
        /* type f16 for the counts: the u32 after "a.weight.counts", n_dims and ne */
        b = good;
        uint8_t *p = find(b.b, b.n, "a.weight.counts");
        CHECK(p != NULL, "find tensor info");
        if (p) {
            memcpy(p + 15 + 4 + 8, &(uint32_t){1}, 4);
            expect_refused(b.b, b.n, "gguf f16 counts");
        }
        /* sums without counts: rename the counts tensor */
        b = good;
        p = find(b.b, b.n, "a.weight.counts");
        if (p) {
            memcpy(p, "b", 1);
            expect_refused(b.b, b.n, "gguf sums without counts and counts without sums");
        }
        /* 6 expert sums over 4 counts */
        b = good;
        p = find(b.b, b.n, "e_exps.weight.counts");
        if (p) {
            memcpy(p + 20 + 4 + 8, &(uint64_t){4}, 8);
            expect_refused(b.b, b.n, "gguf sums that do not split into the counts");
        }
    }
    {
        /* a GGUF file that is not an imatrix: no NAME.in_sum2 */
        buf d;
        d.n = 0;
        put(&d, "GGUF", 4);
        put_u32(&d, 3);
        put_u64(&d, 0);
        put_u64(&d, 0);
        expect_refused(d.b, d.n, "gguf without entries");
    }
    char path[4200];
    path_of(path, sizeof path, "does-not-exist.gguf");
    dsri_imatrix *m = NULL;
    CHECK(dsri_imatrix_load(path, &m) == DSR1_ERR_IO && !m && strstr(dsr1_last_error(), path), "missing file");
    CHECK(dsri_imatrix_load(g_dir, &m) != DSR1_OK && !m, "a directory refused");
}

static const dsri_imatrix_entry *entry_of(const dsri_imatrix *m, int l, const char *what)
{
    char name[128];
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, what);
    const dsri_imatrix_entry *e = dsri_imatrix_find(m, name);
    CHECK(e != NULL, "collected entry %s", name);
    return e;
}

static int same_entry(const dsri_imatrix_entry *a, const dsri_imatrix_entry *b)
{
    if (!a || !b || a->n_values != b->n_values || a->n_counts != b->n_counts)
        return 0;
    for (int64_t k = 0; k < a->n_counts; k++)
        if (a->counts[k] != b->counts[k])
            return 0;
    return memcmp(a->sums, b->sums, (size_t)a->n_values * sizeof(float)) == 0;
}

static int64_t total_count(const dsri_imatrix_entry *e)
{
    int64_t n = 0;
    for (int64_t k = 0; e && k < e->n_counts; k++) n += e->counts[k];
    return n;
}

/* Evaluate n_chunks chunks of n_ctx pseudo-random tokens while collecting. */
static dsri_imatrix *collect(const char *path, dsr1_model **model_out, int n_chunks, int n_ctx)
{
    dsr1_model *model = NULL;
    dsr1_model_params mp;
    dsr1_model_params_default(&mp, sizeof mp);
    if (dsr1_model_load(path, &mp, &model) != DSR1_OK) {
        CHECK(0, "load %s: %s", path, dsr1_last_error());
        return NULL;
    }
    const int split = dsri_imatrix_split_mla(model);
    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    cp.n_batch = split ? n_ctx - 2 : n_ctx;
    cp.n_threads = 2;
    dsr1_context *ctx = NULL;
    dsri_imatrix *m = dsri_imatrix_new();
    dsri_imatrix_collector *col = NULL;
    CHECK(dsr1_context_new(model, &cp, &ctx) == DSR1_OK && m, "context for %s", path);
    CHECK(ctx && dsri_imatrix_collect_start(ctx, m, &col) == DSR1_OK, "collect start");
    dsr1_token tok[256];
    uint32_t r = 7;
    const int32_t n_vocab = dsr1_model_n_vocab(model);
    for (int k = 0; col && k < n_chunks; k++) {
        for (int i = 0; i < n_ctx; i++) {
            r = r * 1664525u + 1013904223u;
            tok[i] = (dsr1_token)((r >> 8) % (uint32_t)n_vocab);
        }
        dsr1_context_reset(ctx);
        const int first = split ? 1 : n_ctx;
        CHECK(dsr1_eval(ctx, tok, first, 0, 0) == DSR1_OK &&
                  (first == n_ctx || dsr1_eval(ctx, tok + first, n_ctx - first, first, 0) == DSR1_OK),
              "eval chunk %d", k);
    }
    CHECK(!col || dsri_imatrix_collect_status(col) == DSR1_OK, "collector status");
    dsri_imatrix_collect_stop(col);
    /* no more observations once stopped */
    const int64_t n0 = m ? m->n_entries : 0;
    if (ctx) {
        dsr1_context_reset(ctx);
        dsr1_eval(ctx, tok, 4, 0, 0);
    }
    const dsri_imatrix_entry *e = m ? dsri_imatrix_find(m, "blk.0.ffn_down.weight") : NULL;
    CHECK(!e || total_count(e) == (int64_t)n_chunks * n_ctx, "nothing collected after stop");
    CHECK(!m || m->n_entries == n0, "no entries after stop");
    dsr1_context_free(ctx);
    *model_out = model;
    return m;
}

static void test_collect_qwen2(const char *data)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/models/qwen2-f32.gguf", data);
    dsr1_model *model = NULL;
    const int n_chunks = 3, n_ctx = 32;
    dsri_imatrix *m = collect(path, &model, n_chunks, n_ctx);
    if (!m || !model) {
        dsri_imatrix_free(m);
        dsr1_model_free(model);
        return;
    }
    const int n_layer = model->hp.n_layer;
    CHECK(m->n_entries == 7 * n_layer, "qwen2: %lld entries, want 7 per layer", (long long)m->n_entries);
    CHECK(dsri_imatrix_find(m, "output.weight") == NULL, "the output head is not collected");
    for (int l = 0; l < n_layer; l++) {
        const dsri_imatrix_entry *q = entry_of(m, l, "attn_q"), *k = entry_of(m, l, "attn_k"),
                                 *v = entry_of(m, l, "attn_v"), *g = entry_of(m, l, "ffn_gate"),
                                 *u = entry_of(m, l, "ffn_up"), *d = entry_of(m, l, "ffn_down"),
                                 *o = entry_of(m, l, "attn_output");
        CHECK(same_entry(q, k) && same_entry(q, v), "layer %d: q, k, v share their input", l);
        CHECK(same_entry(g, u), "layer %d: gate and up share their input", l);
        CHECK(total_count(q) == n_chunks * n_ctx && total_count(d) == n_chunks * n_ctx &&
                  total_count(o) == n_chunks * n_ctx,
              "layer %d: counts are the tokens", l);
        CHECK(d && d->n_values == 512 && o && o->n_values == 256, "layer %d: entry sizes", l);
    }
    /* blk.0.attn_q's input: each token's embedding, RMS-normed, times attn_norm */
    const dsri_gguf_tensor *emb = dsri_gguf_find_tensor(model->gguf, "token_embd.weight"),
                           *nw = dsri_gguf_find_tensor(model->gguf, "blk.0.attn_norm.weight");
    const dsri_imatrix_entry *q = dsri_imatrix_find(m, "blk.0.attn_q.weight");
    CHECK(emb && nw && q && emb->type == 0 && nw->type == 0, "f32 embeddings and norm");
    if (emb && nw && q) {
        const int64_t d = emb->ne[0];
        double *want = calloc((size_t)d, sizeof *want);
        uint32_t r = 7;
        const int32_t n_vocab = dsr1_model_n_vocab(model);
        for (int k = 0; k < n_chunks * n_ctx; k++) {
            r = r * 1664525u + 1013904223u;
            const int64_t t = (int64_t)((r >> 8) % (uint32_t)n_vocab);
            float x[1024], w;
            memcpy(x, emb->data + (size_t)(t * d) * 4, (size_t)d * 4);
            double ss = 0;
            for (int64_t j = 0; j < d; j++) ss += (double)x[j] * x[j];
            const double scale = 1.0 / sqrt(ss / (double)d + model->hp.rms_eps);
            for (int64_t j = 0; j < d; j++) {
                memcpy(&w, nw->data + 4 * j, 4);
                const double h = x[j] * scale * w;
                want[j] += h * h;
            }
        }
        float got[1024];
        CHECK(dsri_imatrix_weights(q, d, 1, got) == 0, "attn_q weights");
        double worst = 0;
        for (int64_t j = 0; j < d; j++) {
            const double wj = want[j] / (n_chunks * n_ctx), e = fabs(got[j] - wj) / (wj > 1e-12 ? wj : 1e-12);
            worst = e > worst ? e : worst;
        }
        printf("  qwen2 blk.0.attn_q: collected vs computed here, worst relative difference %.3g\n", worst);
        CHECK(worst < 1e-4, "blk.0.attn_q weights differ by %g from the RMS-normed embeddings", worst);
        free(want);
    }
    dsri_imatrix_free(m);
    dsr1_model_free(model);
}

static void test_collect_deepseek2(const char *data)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/models/deepseek2-f16.gguf", data);
    dsr1_model *model = NULL;
    const int n_chunks = 2, n_ctx = 32;
    dsri_imatrix *m = collect(path, &model, n_chunks, n_ctx);
    if (!m || !model) {
        dsri_imatrix_free(m);
        dsr1_model_free(model);
        return;
    }
    const int n_tok = n_chunks * n_ctx, n_exp = model->hp.n_expert, n_used = model->hp.n_expert_used;
    int moe_layers = 0;
    for (int l = 0; l < model->hp.n_layer; l++) {
        const dsri_imatrix_entry *qa = entry_of(m, l, "attn_q_a"), *kva = entry_of(m, l, "attn_kv_a_mqa"),
                                 *kb = entry_of(m, l, "attn_k_b"), *vb = entry_of(m, l, "attn_v_b");
        CHECK(same_entry(qa, kva), "layer %d: q_a and kv_a_mqa share their input", l);
        /* MLA's per-head matrices, absorbed as llama.cpp runs them: every head sees every token */
        CHECK(kb && vb && kb->n_counts == vb->n_counts && kb->n_counts > 1, "layer %d: per-head k_b / v_b", l);
        for (int64_t h = 0; kb && vb && h < kb->n_counts && h < vb->n_counts; h++)
            CHECK(kb->counts[h] == n_tok && vb->counts[h] == n_tok, "layer %d head %lld: counts", l, (long long)h);
        char name[128];
        snprintf(name, sizeof name, "blk.%d.ffn_gate_exps.weight", l);
        if (!dsri_imatrix_find(m, name))
            continue;
        moe_layers++;
        const dsri_imatrix_entry *g = entry_of(m, l, "ffn_gate_exps"), *u = entry_of(m, l, "ffn_up_exps"),
                                 *d = entry_of(m, l, "ffn_down_exps"), *sg = entry_of(m, l, "ffn_gate_shexp");
        CHECK(same_entry(g, u), "layer %d: gate_exps and up_exps share their input", l);
        CHECK(g && g->n_counts == n_exp && d && d->n_counts == n_exp, "layer %d: a count per expert", l);
        for (int64_t k = 0; g && d && k < g->n_counts && k < d->n_counts; k++)
            CHECK(g->counts[k] == d->counts[k], "layer %d expert %lld: down sees gate's rows", l, (long long)k);
        CHECK(total_count(g) == (int64_t)n_tok * n_used, "layer %d: %lld expert rows, want %d", l,
              (long long)total_count(g), n_tok * n_used);
        CHECK(total_count(sg) == n_tok, "layer %d: the shared expert sees every token", l);
    }
    CHECK(moe_layers > 0, "deepseek2: MoE layers collected");
    dsri_imatrix_free(m);
    dsr1_model_free(model);
}

int main(int argc, char **argv)
{
    const char *data = argc > 1 ? argv[1] : ".";
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/dsr1-imatrix-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "test_imatrix: cannot create a temporary directory\n");
        return 1;
    }
    printf("test_imatrix: hand-made files\n");
    test_handmade();
    printf("test_imatrix: round trips\n");
    test_round_trip();
    printf("test_imatrix: hostile files\n");
    test_hostile();
    printf("test_imatrix: collecting on the fixtures in %s\n", data);
    test_collect_qwen2(data);
    test_collect_deepseek2(data);
    static const char *const files[] = {"legacy.dat", "hand.gguf", "rt.gguf", "rt.dat", "bad.bin", "fuzz.bin",
                                        "trunc.bin"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[4200];
        path_of(p, sizeof p, files[i]);
        unlink(p);
    }
    rmdir(g_dir);
    return check_summary("test_imatrix");
}
