/*
 * Damaged model files: every corruption must give the right status and a
 * message naming the cause, never a crash (this test also runs under
 * ASan+UBSan in CI). The damage is applied to a copy of a real fixture.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsr1.h"
#include "gguf/gguf.h"

static int failures, checks;

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return b;
}

/* Load buf and expect status `want` with a message containing `needle`. */
static void expect(const char *what, const uint8_t *buf, size_t size, dsr1_status want, const char *needle)
{
    dsr1_model *m = NULL;
    dsr1_status st = dsr1_model_load_from_memory(buf, size, NULL, &m);
    const char *msg = dsr1_last_error();
    checks++;
    int ok = st == want && m == NULL && (!needle || strstr(msg, needle));
    if (!ok) {
        printf("FAIL %s: status %d (want %d), message '%s' (want '%s')\n", what, st, want, msg,
               needle ? needle : "");
        failures++;
    }
    dsr1_model_free(m);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Byte offset of tensor `name`'s info fields within the file. */
typedef struct tinfo {
    size_t name_off, name_len, ndims_off, dims_off, type_off, offset_off;
} tinfo;

static int locate(const uint8_t *buf, size_t size, const char *name, tinfo *ti)
{
    dsri_gguf *g;
    if (dsri_gguf_parse(buf, size, &g) != DSR1_OK)
        return 0;
    const dsri_gguf_tensor *t = dsri_gguf_find_tensor(g, name);
    if (t) {
        ti->name_off = (size_t)((const uint8_t *)t->name.ptr - buf);
        ti->name_len = (size_t)t->name.len;
        ti->ndims_off = ti->name_off + ti->name_len;
        ti->dims_off = ti->ndims_off + 4;
        ti->type_off = ti->dims_off + 8 * t->n_dims;
        ti->offset_off = ti->type_off + 4;
    }
    dsri_gguf_free(g);
    return t != NULL;
}

static size_t data_start(const uint8_t *buf, size_t size)
{
    dsri_gguf *g;
    size_t lo = size;
    if (dsri_gguf_parse(buf, size, &g) != DSR1_OK)
        return 0;
    for (uint64_t i = 0; i < dsri_gguf_tensor_count(g); i++) {
        size_t at = (size_t)(dsri_gguf_tensor_at(g, i)->data - buf);
        if (at < lo)
            lo = at;
    }
    dsri_gguf_free(g);
    return lo;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data";
    char path[1024];
    snprintf(path, sizeof path, "%s/models/qwen2-q8_0.gguf", dir);
    size_t size;
    uint8_t *orig = read_file(path, &size);
    if (!orig) {
        printf("cannot read %s\n", path);
        return 1;
    }
    uint8_t *buf = malloc(size);
    size_t data = data_start(orig, size);
    printf("fixture: %zu bytes, tensor data from byte %zu\n", size, data);

    /* the intact file loads */
    dsr1_model *m;
    if (dsr1_model_load_from_memory(orig, size, NULL, &m) != DSR1_OK) {
        printf("FAIL intact file: %s\n", dsr1_last_error());
        return 1;
    }
    dsr1_model_free(m);

    /* truncated at every byte of the header and at steps through the data */
    for (size_t cut = 1; cut < size; cut += cut < data + 64 ? 1 : 4093) {
        char what[64];
        snprintf(what, sizeof what, "truncated at %zu", cut);
        expect(what, orig, cut, DSR1_ERR_FORMAT, NULL);
    }

    memcpy(buf, orig, size);
    buf[0] = 'X';
    expect("bad magic", buf, size, DSR1_ERR_FORMAT, "magic");

    memcpy(buf, orig, size);
    put_u32(buf + 4, 1);
    expect("version 1", buf, size, DSR1_ERR_UNSUPPORTED, "version 1");
    put_u32(buf + 4, 0x03000000u);
    expect("big-endian", buf, size, DSR1_ERR_UNSUPPORTED, "big-endian");
    put_u32(buf + 4, 7);
    expect("version 7", buf, size, DSR1_ERR_UNSUPPORTED, "version 7");

    memcpy(buf, orig, size);
    put_u64(buf + 8, UINT64_MAX / 2);
    expect("huge tensor count", buf, size, DSR1_ERR_FORMAT, "tensor count");
    memcpy(buf, orig, size);
    put_u64(buf + 16, 1u << 30);
    expect("huge key count", buf, size, DSR1_ERR_FORMAT, "key/value count");
    memcpy(buf, orig, size);
    put_u64(buf + 16, 2);
    expect("key count too small", buf, size, DSR1_ERR_FORMAT, NULL);

    tinfo ti, ti2;
    if (!locate(orig, size, "blk.0.attn_q.weight", &ti) || !locate(orig, size, "blk.0.attn_k.weight", &ti2)) {
        printf("FAIL cannot locate tensors\n");
        return 1;
    }
    memcpy(buf, orig, size);
    put_u64(buf + ti.offset_off, (uint64_t)size);
    expect("offset past the end", buf, size, DSR1_ERR_FORMAT, "blk.0.attn_q.weight");
    memcpy(buf, orig, size);
    put_u64(buf + ti.offset_off, UINT64_MAX - 31);
    expect("offset overflow", buf, size, DSR1_ERR_FORMAT, "blk.0.attn_q.weight");
    memcpy(buf, orig, size);
    put_u64(buf + ti.offset_off, 3);
    expect("misaligned offset", buf, size, DSR1_ERR_FORMAT, "aligned");
    memcpy(buf, orig, size);
    put_u32(buf + ti.type_off, 99);
    expect("unknown type", buf, size, DSR1_ERR_UNSUPPORTED, "blk.0.attn_q.weight");
    memcpy(buf, orig, size);
    put_u32(buf + ti.ndims_off, 9);
    expect("too many dims", buf, size, DSR1_ERR_FORMAT, "dimensions");
    memcpy(buf, orig, size);
    put_u64(buf + ti.dims_off, 0);
    expect("zero dim", buf, size, DSR1_ERR_FORMAT, "dimension 0");
    memcpy(buf, orig, size);
    put_u64(buf + ti.dims_off + 8, 1ull << 62);
    expect("huge dim", buf, size, DSR1_ERR_FORMAT, "blk.0.attn_q.weight");
    memcpy(buf, orig, size);
    put_u64(buf + ti.dims_off, 96); /* a valid block multiple, but the wrong shape */
    expect("wrong shape", buf, size, DSR1_ERR_FORMAT, "blk.0.attn_q.weight");
    memcpy(buf, orig, size);
    buf[ti.name_off + 6] = 'x'; /* blk.0.xttn_q.weight */
    expect("missing tensor", buf, size, DSR1_ERR_FORMAT, "required tensor 'blk.0.attn_q.weight' is missing");
    memcpy(buf, orig, size);
    memcpy(buf + ti2.name_off, "blk.0.attn_q.weight", ti2.name_len); /* same length names */
    expect("duplicate tensor", buf, size, DSR1_ERR_FORMAT, "duplicate tensor name");

    /* keys: find them by parsing, damage their type or value */
    dsri_gguf *g;
    dsri_gguf_parse(orig, size, &g);
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, "qwen2.block_count");
    size_t key_off = (size_t)((const uint8_t *)kv->key.ptr - orig);
    size_t vtype_off = key_off + (size_t)kv->key.len;
    size_t val_off = (size_t)(kv->data - orig);
    kv = dsri_gguf_find_kv(g, "tokenizer.ggml.tokens");
    size_t tok_n_off = (size_t)(kv->data - orig) - 8;
    dsri_gguf_free(g);

    memcpy(buf, orig, size);
    buf[key_off] = 'Q';
    expect("missing key", buf, size, DSR1_ERR_FORMAT, "'qwen2.block_count' is missing");
    memcpy(buf, orig, size);
    put_u32(buf + val_off, 0);
    expect("zero layers", buf, size, DSR1_ERR_FORMAT, "qwen2.block_count");
    memcpy(buf, orig, size);
    put_u32(buf + vtype_off, 8); /* now claims to be a string */
    expect("key type changed", buf, size, DSR1_ERR_FORMAT, NULL);
    memcpy(buf, orig, size);
    put_u32(buf + vtype_off, 77);
    expect("unknown value type", buf, size, DSR1_ERR_FORMAT, "unknown value type");
    memcpy(buf, orig, size);
    put_u64(buf + tok_n_off, 1ull << 40);
    expect("huge string array", buf, size, DSR1_ERR_FORMAT, "tokenizer.ggml.tokens");

    /* random damage: anything may happen except a crash or a silent success
     * with a wrong status; success is allowed (the byte may not matter) */
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    int loaded = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, orig, size);
        for (int k = 0; k < 1 + it % 4; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rng >> 33) % data;
            buf[at] = (uint8_t)(rng >> 11);
        }
        dsr1_model *mm = NULL;
        dsr1_status st = dsr1_model_load_from_memory(buf, size, NULL, &mm);
        checks++;
        if (st == DSR1_OK) {
            loaded++;
        } else if (mm != NULL || dsr1_last_error()[0] == '\0') {
            printf("FAIL random damage %d: status %d without a message\n", it, st);
            failures++;
        }
        dsr1_model_free(mm);
    }
    printf("random damage: %d of 3000 variants still loaded (the damage hit bytes that do not matter)\n", loaded);

    free(buf);
    free(orig);
    printf("%d checks, %d failures\n", checks, failures);
    return failures != 0;
}
