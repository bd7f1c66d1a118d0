/*
 * Expert weights stay in the mapped file: resident memory of an MoE model
 * grows with the experts its tokens route to, not with the file size.
 *
 *   test_moe_rss DATA_DIR    (DATA_DIR/models/deepseek2-f16.gguf)
 *
 * 1. Writes, at run time, a DeepSeek-V3-style MoE GGUF of 388 MiB into
 *    $TMPDIR (default /tmp; skipped with 77 when under 2 GiB are free;
 *    removed at exit): the metadata and every non-expert tensor of the
 *    deepseek2-f16 fixture, with expert_count raised to 1024 (8 groups,
 *    4 kept, 4 experts a token) and no MTP block; the routed experts
 *    (ffn_{gate,up,down}_exps, 256 x 128 f16 each) are deterministic
 *    pseudo-random values of the fixture's scale, and the router
 *    (ffn_gate_inp, exp_probs_b) is scaled so that tokens spread over the
 *    experts. 99% of the file is routed experts.
 * 2. Drops the file from the page cache (fdatasync + POSIX_FADV_DONTNEED),
 *    as for a model that is not cached, loads it, advises MADV_RANDOM on the
 *    model's mapping (so the kernel reads nothing around a fault and the
 *    mapping's resident pages are exactly the pages the library touched),
 *    creates a context, evaluates a 16-token prompt and decodes 16 greedy
 *    tokens. After each step it reads VmRSS (/proc/self/status) and the
 *    resident bytes of the model's own mapping (/proc/self/smaps); at the
 *    end it counts, per MoE layer, the experts whose pages are mapped in
 *    (/proc/self/pagemap).
 * 3. The same run with the kernel's default advice (read-around): printed,
 *    not asserted, since it depends on the device's readahead and on folio
 *    sizes; the tokens must match.
 * 4. Control: maps the file again and reads every page; the mapping's
 *    resident bytes must then reach the file size, which shows that the
 *    measurement sees file pages.
 *
 * Asserts: loading maps in < 1% of the file; after the decode the mapping
 * holds < 40% of the file, no more than the used experts' slices plus the
 * other weights, and 4..128 experts a layer; VmRSS grew by < 40% of the
 * file; the control reaches ~100%; the logits are finite. Under
 * AddressSanitizer VmRSS includes shadow memory, so only the mapping's own
 * figures are asserted (a note is printed). When the page cache keeps the
 * file (tmpfs), a fault maps the cached folio around the page, so the size
 * bounds are not asserted either. Exits 0 on success, 77 to skip.
 */
#if !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* POSIX 2008 plus madvise, mincore */
#endif
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "dsr1.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "check.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif


/* The scaled-down MoE written by this test. */
#define N_EXPERT 1024
#define N_GROUP 8
#define N_GROUP_USED 4
#define N_PROMPT 16
#define N_DECODE 16
#define MIN_FREE_BYTES (2ull << 30)

#define MiB(x) ((double)(x) / (1024.0 * 1024.0))

static char tmp_path[4096];   /* the file, removed at exit ("" once removed) */
static char map_name[4096];   /* its name in /proc/self/maps */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------------- */
/* Measurements                                                             */
/* ---------------------------------------------------------------------- */

/* VmRSS in bytes, or 0 when unavailable. */
static uint64_t vm_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtoull(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb * 1024;
}

/* Does a /proc/self/maps or smaps header line name our file? Fills the
 * mapping's start address. */
static int header_names_file(const char *line, uintptr_t *start)
{
    const char *p = map_name[0] ? strstr(line, map_name) : NULL;
    if (!p)
        return 0;
    const char *rest = p + strlen(map_name);
    if (*rest != '\n' && *rest != '\0' && strncmp(rest, " (deleted)", 10) != 0)
        return 0;
    unsigned long long a = 0, b = 0;
    if (sscanf(line, "%llx-%llx", &a, &b) != 2)
        return 0;
    *start = (uintptr_t)a;
    return 1;
}

/* Resident bytes of the mapping of our file that starts at addr (0: the
 * first one found). Returns 0 when none. */
static uint64_t mapping_rss(uintptr_t addr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return 0;
    char line[4608];
    int in = 0;
    uint64_t kb = 0;
    while (fgets(line, sizeof line, f)) {
        uintptr_t start;
        if (header_names_file(line, &start)) {
            in = (addr == 0 || start == addr);
            continue;
        }
        if (in && strncmp(line, "Rss:", 4) == 0) {
            kb = strtoull(line + 4, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

/* Start of the first mapping of our file, or 0. */
static uintptr_t mapping_start(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return 0;
    char line[4608];
    uintptr_t start = 0;
    while (fgets(line, sizeof line, f))
        if (header_names_file(line, &start))
            break;
    fclose(f);
    return start;
}

/* ---------------------------------------------------------------------- */
/* The synthetic model                                                       */
/* ---------------------------------------------------------------------- */

enum fill { FILL_COPY, FILL_F16, FILL_F32 };

typedef struct out_tensor {
    dsri_str name;
    uint32_t type, n_dims;
    int64_t ne[4];
    uint64_t offset, n_bytes;
    enum fill fill;
    const uint8_t *src; /* FILL_COPY */
    float std;          /* FILL_F16 / FILL_F32 */
    int layer;          /* expert stacks: layer, else -1 */
    int which;          /* 0 gate, 1 up, 2 down */
} out_tensor;

typedef struct plan {
    out_tensor *t;
    int n;
    uint64_t data_start; /* file offset of the data section */
    uint64_t file_size;
    uint64_t expert_bytes;
    int64_t ff, d; /* expert hidden size, model width */
} plan;

static int ends_with(dsri_str s, const char *suffix)
{
    size_t n = strlen(suffix);
    return s.len >= n && memcmp(s.ptr + s.len - n, suffix, n) == 0;
}

static int contains(dsri_str s, const char *needle)
{
    size_t n = strlen(needle);
    for (uint64_t i = 0; i + n <= s.len; i++)
        if (memcmp(s.ptr + i, needle, n) == 0)
            return 1;
    return 0;
}

static double tensor_std(const dsri_gguf_tensor *t)
{
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    double s = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double v;
        if (t->type == DSR1_TYPE_F16) {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            v = dsri_fp16_to_fp32(h);
        } else {
            float f;
            memcpy(&f, t->data + 4 * i, 4);
            v = f;
        }
        s += v;
        s2 += v * v;
    }
    double mean = s / (double)n, var = s2 / (double)n - mean * mean;
    return var > 0.0 ? sqrt(var) : 0.0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static int put(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

static int put_u32(FILE *f, uint32_t v) { return put(f, &v, 4); }
static int put_u64(FILE *f, uint64_t v) { return put(f, &v, 8); }

static int put_zeros(FILE *f, uint64_t n)
{
    static const uint8_t z[64];
    while (n > 0) {
        size_t k = n > sizeof z ? sizeof z : (size_t)n;
        if (put(f, z, k))
            return -1;
        n -= k;
    }
    return 0;
}

/* Uniform values of standard deviation std: f16 through a 4096-entry table
 * indexed by 12 random bits, f32 directly. */
static int write_random(FILE *f, const out_tensor *t, uint8_t *buf, size_t buf_size)
{
    double a = (t->std > 0.0f ? t->std : 0.02) * sqrt(3.0);
    uint64_t left = t->n_bytes;
    if (t->fill == FILL_F16) {
        uint16_t table[4096];
        for (int i = 0; i < 4096; i++)
            table[i] = dsri_fp32_to_fp16((float)(a * ((2.0 * i + 1.0) / 4096.0 - 1.0)));
        while (left > 0) {
            size_t k = left > buf_size ? buf_size : (size_t)left;
            uint16_t *h = (uint16_t *)buf;
            size_t n = k / 2, i = 0;
            while (i < n) {
                uint64_t r = rng_next();
                for (int j = 0; j < 5 && i < n; j++, r >>= 12)
                    h[i++] = table[r & 4095];
            }
            if (put(f, buf, k))
                return -1;
            left -= k;
        }
    } else {
        float *v = (float *)buf;
        size_t n = (size_t)(t->n_bytes / 4);
        if (n * 4 > buf_size)
            return -1;
        for (size_t i = 0; i < n; i++)
            v[i] = (float)(a * ((double)(rng_next() >> 11) * (2.0 / 9007199254740992.0) - 1.0));
        if (put(f, buf, n * 4))
            return -1;
    }
    return 0;
}

/* Keys whose (uint32) values the synthetic model changes. */
static int override_value(dsri_str key, uint32_t *v)
{
    if (dsri_str_eq(key, "deepseek2.expert_count"))
        *v = N_EXPERT;
    else if (dsri_str_eq(key, "deepseek2.expert_group_count"))
        *v = N_GROUP;
    else if (dsri_str_eq(key, "deepseek2.expert_group_used_count"))
        *v = N_GROUP_USED;
    else if (dsri_str_eq(key, "deepseek2.nextn_predict_layers"))
        *v = 0;
    else
        return 0;
    return 1;
}

/* Writes the synthetic model described at the top of the file to path. */
static int write_model(const uint8_t *src, size_t src_size, const char *path, plan *pl)
{
    dsri_gguf *g = NULL;
    if (dsri_gguf_parse(src, src_size, &g) != DSR1_OK) {
        printf("FAIL: cannot parse the fixture: %s\n", dsr1_last_error());
        return -1;
    }
    int rc = -1;
    FILE *f = NULL;
    uint8_t *buf = NULL;
    const size_t buf_size = 4u << 20;
    uint64_t n_kv = dsri_gguf_kv_count(g), n_src = dsri_gguf_tensor_count(g);
    uint64_t align = dsri_gguf_alignment(g);
    dsri_str arch;
    if (dsri_gguf_get_str(g, "general.architecture", &arch) != 0 || !dsri_str_eq(arch, "deepseek2") ||
        n_src == 0) {
        printf("FAIL: the fixture is not a deepseek2 model with tensors\n");
        goto done;
    }
    pl->t = calloc((size_t)n_src, sizeof *pl->t);
    buf = malloc(buf_size);
    if (!pl->t || !buf)
        goto done;

    /* the tensor plan */
    uint64_t off = 0;
    pl->expert_bytes = 0;
    for (uint64_t i = 0; i < n_src; i++) {
        const dsri_gguf_tensor *s = dsri_gguf_tensor_at(g, i);
        if (contains(s->name, ".nextn."))
            continue; /* no MTP block */
        out_tensor *t = &pl->t[pl->n++];
        t->name = s->name;
        t->type = s->type;
        t->n_dims = s->n_dims;
        memcpy(t->ne, s->ne, sizeof t->ne);
        t->fill = FILL_COPY;
        t->src = s->data;
        t->layer = -1;
        int expert_stack = ends_with(s->name, "_exps.weight");
        if (expert_stack || ends_with(s->name, "ffn_gate_inp.weight") || ends_with(s->name, "exp_probs_b.bias")) {
            if ((expert_stack && (s->n_dims != 3 || s->type != DSR1_TYPE_F16)) ||
                (!expert_stack && s->type != DSR1_TYPE_F32)) {
                printf("FAIL: unexpected fixture tensor layout\n");
                goto done;
            }
            t->ne[s->n_dims - 1] = N_EXPERT;
            t->fill = expert_stack ? FILL_F16 : FILL_F32;
            /* the expert matrices take the fixture's scale; the router is
             * scaled for logits of about unit size (the fixture's, made for
             * 16 experts, saturate the sigmoid so that ties decide) and a
             * small correction bias, so that tokens spread over experts */
            if (expert_stack)
                t->std = (float)tensor_std(s);
            else if (ends_with(s->name, "ffn_gate_inp.weight"))
                t->std = (float)(1.0 / sqrt((double)s->ne[0]));
            else
                t->std = 0.01f;
            if (expert_stack) {
                if (sscanf(s->name.ptr, "blk.%d.", &t->layer) != 1)
                    goto done;
                t->which = ends_with(s->name, "ffn_gate_exps.weight") ? 0 : ends_with(s->name, "ffn_up_exps.weight") ? 1 : 2;
                if (t->which == 0) {
                    pl->d = s->ne[0];
                    pl->ff = s->ne[1];
                }
            }
        }
        uint64_t elsize = t->type == DSR1_TYPE_F16 ? 2 : t->type == DSR1_TYPE_F32 ? 4 : 0;
        if (t->fill == FILL_COPY) {
            t->n_bytes = s->n_bytes;
        } else {
            if (elsize == 0)
                goto done;
            t->n_bytes = elsize * (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        }
        if (expert_stack)
            pl->expert_bytes += t->n_bytes;
        off = (off + align - 1) / align * align;
        t->offset = off;
        off += t->n_bytes;
    }

    f = fopen(path, "wb");
    if (!f) {
        printf("FAIL: cannot create %s: %s\n", path, strerror(errno));
        goto done;
    }
    /* header */
    if (put(f, "GGUF", 4) || put_u32(f, 3) || put_u64(f, (uint64_t)pl->n) || put_u64(f, n_kv))
        goto io;
    /* key/value pairs: each is copied byte for byte from its key's length
     * prefix to the next pair (the last one ends where the tensor infos
     * begin), except the few whose uint32 values change */
    const uint8_t *kv_end = (const uint8_t *)dsri_gguf_tensor_at(g, 0)->name.ptr - 8;
    for (uint64_t i = 0; i < n_kv; i++) {
        const dsri_gguf_kv *kv = dsri_gguf_kv_at(g, i);
        const uint8_t *b = (const uint8_t *)kv->key.ptr - 8;
        const uint8_t *e = i + 1 < n_kv ? (const uint8_t *)dsri_gguf_kv_at(g, i + 1)->key.ptr - 8 : kv_end;
        uint32_t v;
        if (override_value(kv->key, &v)) {
            if (kv->type != DSRI_GGUF_U32)
                goto done;
            if (put(f, b, 8 + (size_t)kv->key.len) || put_u32(f, DSRI_GGUF_U32) || put_u32(f, v))
                goto io;
        } else if (put(f, b, (size_t)(e - b))) {
            goto io;
        }
    }
    /* tensor infos */
    for (int i = 0; i < pl->n; i++) {
        const out_tensor *t = &pl->t[i];
        if (put_u64(f, t->name.len) || put(f, t->name.ptr, (size_t)t->name.len) || put_u32(f, t->n_dims))
            goto io;
        for (uint32_t k = 0; k < t->n_dims; k++)
            if (put_u64(f, (uint64_t)t->ne[k]))
                goto io;
        if (put_u32(f, t->type) || put_u64(f, t->offset))
            goto io;
    }
    long pos = ftell(f);
    if (pos < 0)
        goto io;
    pl->data_start = ((uint64_t)pos + align - 1) / align * align;
    if (put_zeros(f, pl->data_start - (uint64_t)pos))
        goto io;
    /* data */
    uint64_t at = 0;
    for (int i = 0; i < pl->n; i++) {
        const out_tensor *t = &pl->t[i];
        if (put_zeros(f, t->offset - at))
            goto io;
        if (t->fill == FILL_COPY ? put(f, t->src, (size_t)t->n_bytes) : write_random(f, t, buf, buf_size))
            goto io;
        at = t->offset + t->n_bytes;
    }
    pl->file_size = pl->data_start + at;
    if (fclose(f) != 0) {
        f = NULL;
        goto io;
    }
    f = NULL;
    rc = 0;
    goto done;
io:
    printf("FAIL: writing %s: %s\n", path, strerror(errno));
done:
    if (f)
        fclose(f);
    free(buf);
    dsri_gguf_free(g);
    return rc;
}

/* ---------------------------------------------------------------------- */
/* Page cache and page tables                                               */
/* ---------------------------------------------------------------------- */

/* Writes the file back and asks the kernel to drop it from the page cache,
 * as for a model that is not cached (one larger than RAM never is). Returns
 * the fraction of its pages still cached (mincore), or -1 if unknown. */
static double drop_from_cache(const char *path, uint64_t size, long page)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1.0;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    double frac = -1.0;
    void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
        size_t np = (size_t)((size + (uint64_t)page - 1) / (uint64_t)page), n = 0;
        unsigned char *vec = malloc(np);
        if (vec && mincore(p, (size_t)size, vec) == 0) {
            for (size_t i = 0; i < np; i++)
                n += vec[i] & 1;
            frac = (double)n / (double)np;
        }
        free(vec);
        munmap(p, (size_t)size);
    }
    close(fd);
    return frac;
}

/* Counts, per MoE layer, the experts whose gate, up and down slices are
 * mapped into this process (pagemap "present" bit on most of each slice's
 * pages: a slice shares at most its two boundary pages with neighbours).
 * Stores the counts in n_used[] (index: the order of the layers in the
 * file) and returns the number of layers, or -1 when pagemap is
 * unreadable. */
static int count_experts(const plan *pl, uintptr_t map, long page, int *n_used, int *layers)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        return -1;
    int n_layers = 0;
    for (int i = 0; i < pl->n; i++)
        if (pl->t[i].layer >= 0 && pl->t[i].which == 0 && n_layers < 64)
            layers[n_layers++] = pl->t[i].layer;
    uint64_t *ent = NULL;
    static unsigned char used[N_EXPERT];
    for (int li = 0; li < n_layers; li++) {
        memset(used, 1, sizeof used);
        for (int i = 0; i < pl->n; i++) {
            const out_tensor *t = &pl->t[i];
            if (t->layer != layers[li])
                continue;
            uintptr_t b = map + (uintptr_t)(pl->data_start + t->offset);
            uintptr_t p0 = b / (uintptr_t)page, p1 = (b + (uintptr_t)t->n_bytes - 1) / (uintptr_t)page;
            size_t np = (size_t)(p1 - p0 + 1);
            free(ent);
            ent = malloc(np * 8);
            if (!ent || pread(fd, ent, np * 8, (off_t)(p0 * 8)) != (ssize_t)(np * 8)) {
                n_layers = -1;
                goto out;
            }
            uintptr_t slice = (uintptr_t)(t->n_bytes / N_EXPERT);
            for (int e = 0; e < N_EXPERT; e++) {
                uintptr_t s0 = (b + (uintptr_t)e * slice) / (uintptr_t)page;
                uintptr_t s1 = (b + (uintptr_t)(e + 1) * slice - 1) / (uintptr_t)page;
                int n_present = 0, n_all = 0;
                for (uintptr_t q = s0; q <= s1; q++, n_all++)
                    n_present += (int)((ent[q - p0] >> 63) & 1);
                if (2 * n_present <= n_all)
                    used[e] = 0;
            }
        }
        n_used[li] = 0;
        for (int e = 0; e < N_EXPERT; e++)
            n_used[li] += used[e];
    }
out:
    free(ent);
    close(fd);
    return n_layers;
}

/* ---------------------------------------------------------------------- */
/* One run: load, context, prefill, decode                                  */
/* ---------------------------------------------------------------------- */

typedef struct run_result {
    uint64_t rss0, rss_load, rss_ctx, rss_prefill, rss_dec;     /* VmRSS */
    uint64_t map_load, map_ctx, map_prefill, map_dec;           /* the model mapping's Rss */
    uintptr_t map;
    int finite, ok;
    dsr1_token toks[N_PROMPT + N_DECODE];
    double seconds;
} run_result;

static int all_finite(const float *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

/* advise_random: madvise(MADV_RANDOM) the model's mapping right after the
 * load, so that the kernel reads no pages around a fault and the mapping's
 * resident pages are exactly those the library touched. The model stays
 * loaded (returned in *out) so the caller can inspect its mapping. */
static void run(int advise_random, uint64_t fsize, run_result *r, dsr1_model **out_m, dsr1_context **out_ctx)
{
    memset(r, 0, sizeof *r);
    *out_m = NULL;
    *out_ctx = NULL;
    const double t0 = now_seconds();
    r->rss0 = vm_rss();
    dsr1_model *m = NULL;
    dsr1_status st = dsr1_model_load(map_name, NULL, &m);
    CHECK(st == DSR1_OK, "load: %s", dsr1_last_error());
    if (st != DSR1_OK)
        return;
    *out_m = m;
    r->rss_load = vm_rss();
    r->map = mapping_start();
    CHECK(r->map != 0, "the model's mapping of %s is not in /proc/self/maps", map_name);
    r->map_load = mapping_rss(r->map);
    if (advise_random && r->map)
        CHECK(madvise((void *)r->map, (size_t)fsize, MADV_RANDOM) == 0, "madvise: %s", strerror(errno));

    dsr1_context_params cp;
    dsr1_context_params_default(&cp, sizeof cp);
    cp.n_ctx = 64;
    cp.n_batch = N_PROMPT;
    cp.n_threads = 2;
    dsr1_context *ctx = NULL;
    st = dsr1_context_new(m, &cp, &ctx);
    CHECK(st == DSR1_OK, "context: %s", dsr1_last_error());
    if (st != DSR1_OK)
        return;
    *out_ctx = ctx;
    r->rss_ctx = vm_rss();
    r->map_ctx = mapping_rss(r->map);

    const int n_vocab = dsr1_model_n_vocab(m);
    for (int i = 0; i < N_PROMPT; i++)
        r->toks[i] = (dsr1_token)((i * 37 + 11) % n_vocab);
    st = dsr1_eval(ctx, r->toks, N_PROMPT, 0, 0);
    CHECK(st == DSR1_OK, "prefill: %s", dsr1_last_error());
    const float *lg = st == DSR1_OK ? dsr1_logits(ctx, -1) : NULL;
    r->finite = lg && all_finite(lg, n_vocab);
    r->rss_prefill = vm_rss();
    r->map_prefill = mapping_rss(r->map);
    for (int i = 0; i < N_DECODE && lg; i++) {
        r->toks[N_PROMPT + i] = (dsr1_token)argmax(lg, n_vocab);
        st = dsr1_eval(ctx, &r->toks[N_PROMPT + i], 1, N_PROMPT + i, 0);
        CHECK(st == DSR1_OK, "decode %d: %s", i, dsr1_last_error());
        lg = st == DSR1_OK ? dsr1_logits(ctx, -1) : NULL;
        r->finite = r->finite && lg && all_finite(lg, n_vocab);
    }
    r->rss_dec = vm_rss();
    r->map_dec = mapping_rss(r->map);
    r->ok = lg != NULL;
    r->seconds = now_seconds() - t0;
}

static void report(const char *what, const run_result *r, uint64_t fsize)
{
    printf("%s:\n", what);
    printf("  VmRSS %.1f MiB before the load; growth: load +%.2f, context +%.2f, %d-token prefill +%.1f, "
           "%d decoded +%.1f MiB (%.1f%% of the file)\n",
           MiB(r->rss0), MiB(r->rss_load - r->rss0), MiB(r->rss_ctx - r->rss0), N_PROMPT,
           MiB(r->rss_prefill - r->rss0), N_DECODE, MiB(r->rss_dec - r->rss0),
           100.0 * (double)(r->rss_dec - r->rss0) / (double)fsize);
    printf("  model mapping resident: load %.2f MiB, context %.2f MiB, prefill %.1f MiB (%.1f%%), decode %.1f MiB "
           "(%.1f%% of the file); %.2f s\n",
           MiB(r->map_load), MiB(r->map_ctx), MiB(r->map_prefill), 100.0 * (double)r->map_prefill / (double)fsize,
           MiB(r->map_dec), 100.0 * (double)r->map_dec / (double)fsize, r->seconds);
}

/* ---------------------------------------------------------------------- */

static void remove_tmp(void)
{
    if (tmp_path[0])
        unlink(tmp_path);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    const long page = sysconf(_SC_PAGESIZE);
    const double t0 = now_seconds();

    if (vm_rss() == 0) {
        printf("SKIP: /proc/self/status has no VmRSS (not Linux?)\n");
        return 77;
    }
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) {
        printf("SKIP: statvfs(%s): %s\n", dir, strerror(errno));
        return 77;
    }
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * (uint64_t)vfs.f_frsize;
    if (free_bytes < MIN_FREE_BYTES) {
        printf("SKIP: %s has %.0f MiB free, the test needs 2 GiB\n", dir, MiB(free_bytes));
        return 77;
    }

    /* the fixture */
    char src_path[2048];
    snprintf(src_path, sizeof src_path, "%s/models/deepseek2-f16.gguf", argv[1]);
    FILE *sf = fopen(src_path, "rb");
    if (!sf) {
        printf("FAIL: cannot open %s\n", src_path);
        return 1;
    }
    fseek(sf, 0, SEEK_END);
    long src_size = ftell(sf);
    fseek(sf, 0, SEEK_SET);
    uint8_t *src = src_size > 0 ? malloc((size_t)src_size) : NULL;
    if (!src || fread(src, 1, (size_t)src_size, sf) != (size_t)src_size) {
        printf("FAIL: cannot read %s\n", src_path);
        fclose(sf);
        free(src);
        return 1;
    }
    fclose(sf);

    snprintf(tmp_path, sizeof tmp_path, "%s/dsr1-moe-rss-XXXXXX", dir);
    int tfd = mkstemp(tmp_path);
    if (tfd < 0) {
        printf("SKIP: mkstemp in %s: %s\n", dir, strerror(errno));
        tmp_path[0] = '\0';
        free(src);
        return 77;
    }
    close(tfd);
    atexit(remove_tmp);
    memcpy(map_name, tmp_path, sizeof map_name);

    plan pl = {0};
    if (write_model(src, (size_t)src_size, tmp_path, &pl) != 0) {
        free(src);
        free(pl.t);
        return 1;
    }
    free(src);
    const uint64_t fsize = pl.file_size;
    const uint64_t other_bytes = fsize - pl.expert_bytes;
    printf("wrote %s: %.1f MiB in %.2f s; %.1f MiB of it are routed experts (%d per MoE layer, gate/up/down "
           "%lld x %lld f16 each), %.1f MiB the rest\n",
           tmp_path, MiB(fsize), now_seconds() - t0, MiB(pl.expert_bytes), N_EXPERT, (long long)pl.d,
           (long long)pl.ff, MiB(other_bytes));
    if (UNDER_ASAN)
        printf("note: AddressSanitizer build: VmRSS includes shadow memory, so only the model mapping's own "
               "resident bytes (smaps) are asserted\n");

    /* 1. the pages the library touches: cold file, MADV_RANDOM */
    double cached = drop_from_cache(tmp_path, fsize, page);
    const int cold = cached >= 0.0 && cached < 0.05;
    if (!cold)
        printf("note: %.0f%% of the file stayed in the page cache (tmpfs?): a fault then maps the cached folio "
               "around the page, so the resident-size bounds are not asserted\n",
               cached < 0.0 ? 100.0 : 100.0 * cached);
    run_result r;
    dsr1_model *m;
    dsr1_context *ctx;
    run(1, fsize, &r, &m, &ctx);
    if (!r.ok) {
        dsr1_context_free(ctx);
        dsr1_model_free(m);
        free(pl.t);
        return 1;
    }
    printf("tokens:");
    for (int i = 0; i < N_PROMPT + N_DECODE; i++)
        printf(" %d", r.toks[i]);
    printf("\n");
    report("run 1, MADV_RANDOM (resident = the pages the library read)", &r, fsize);
    int n_used[64], layers[64];
    int n_layers = count_experts(&pl, r.map, page, n_used, layers);
    uint64_t used_bytes = 0;
    const uint64_t per_expert_layer = pl.expert_bytes / N_EXPERT / (uint64_t)(n_layers > 0 ? n_layers : 1);
    if (n_layers < 0)
        printf("  (no /proc/self/pagemap: experts not counted)\n");
    for (int li = 0; li < n_layers; li++) {
        printf("  layer %d: %d of %d experts mapped in (%d tokens x 4 routed: at most %d)\n", layers[li],
               n_used[li], N_EXPERT, N_PROMPT + N_DECODE, 4 * (N_PROMPT + N_DECODE));
        used_bytes += (uint64_t)n_used[li] * per_expert_layer;
        if (cold)
            CHECK(n_used[li] >= 4 && n_used[li] <= 4 * (N_PROMPT + N_DECODE), "layer %d: %d experts mapped in",
                  layers[li], n_used[li]);
    }
    if (n_layers > 0)
        printf("  the used experts hold %.1f MiB; with the %.1f MiB of other weights: %.1f MiB, resident %.1f MiB\n",
               MiB(used_bytes), MiB(other_bytes), MiB(used_bytes + other_bytes), MiB(r.map_dec));

    CHECK(r.finite, "non-finite logits");
    CHECK(r.map_load < fsize / 100, "loading mapped in %.1f MiB of a %.1f MiB file", MiB(r.map_load), MiB(fsize));
    CHECK(r.map_dec > r.map_ctx, "the decode mapped in nothing?");
    if (cold) {
        CHECK(r.map_dec < fsize / 5 * 2, "after the decode %.1f MiB of the %.1f MiB file are resident (>= 40%%)",
              MiB(r.map_dec), MiB(fsize));
        /* resident = the weights used (each slice may share its two boundary pages) */
        if (n_layers > 0)
            CHECK(r.map_dec <= used_bytes + other_bytes + used_bytes / per_expert_layer * 3 * 2 * (uint64_t)page,
                  "resident %.1f MiB exceeds the used weights %.1f MiB", MiB(r.map_dec),
                  MiB(used_bytes + other_bytes));
        if (!UNDER_ASAN) {
            CHECK(r.rss_load - r.rss0 < fsize / 50, "VmRSS grew by %.1f MiB on load", MiB(r.rss_load - r.rss0));
            CHECK(r.rss_dec - r.rss0 < fsize / 5 * 2, "VmRSS grew by %.1f MiB (>= 40%% of the %.1f MiB file)",
                  MiB(r.rss_dec - r.rss0), MiB(fsize));
        }
    }
    dsr1_context_free(ctx);
    dsr1_model_free(m);

    /* 2. the same with the kernel's default read-around (not asserted: it
     * depends on the block device's readahead and on folio sizes) */
    drop_from_cache(tmp_path, fsize, page);
    run_result r2;
    run(0, fsize, &r2, &m, &ctx);
    report("run 2, default advice (the kernel reads and maps around each fault)", &r2, fsize);
    CHECK(!r2.ok || memcmp(r.toks, r2.toks, sizeof r.toks) == 0, "the two runs decoded different tokens");
    dsr1_context_free(ctx);
    dsr1_model_free(m);

    /* 3. control: a mapping of the file with every page read */
    {
        int fd = open(tmp_path, O_RDONLY);
        CHECK(fd >= 0, "open %s: %s", tmp_path, strerror(errno));
        const uint64_t rss_before = vm_rss();
        const uint8_t *cm = fd >= 0 ? mmap(NULL, (size_t)fsize, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
        if (fd >= 0)
            close(fd);
        if (cm != MAP_FAILED) {
            volatile uint8_t sink = 0;
            for (uint64_t o = 0; o < fsize; o += (uint64_t)page)
                sink ^= cm[o];
            (void)sink;
            const uint64_t rss_after = vm_rss(), cmap = mapping_rss((uintptr_t)cm);
            printf("control, every page of a mapping read: resident %.1f MiB (%.1f%% of the file), VmRSS +%.1f MiB\n",
                   MiB(cmap), 100.0 * (double)cmap / (double)fsize, MiB(rss_after - rss_before));
            CHECK(cmap >= fsize / 100 * 95, "control: only %.1f MiB of %.1f MiB resident", MiB(cmap), MiB(fsize));
            if (!UNDER_ASAN)
                CHECK(rss_after - rss_before >= fsize / 100 * 90, "control: VmRSS grew by only %.1f MiB",
                      MiB(rss_after - rss_before));
            munmap((void *)cm, (size_t)fsize);
        }
    }
    free(pl.t);
    printf("total %.2f s\n", now_seconds() - t0);
    if (failures) {
        printf("%d failure(s)\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
