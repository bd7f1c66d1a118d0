/*
 * dsr1 quantize IN.gguf OUT.gguf TYPE [--threads N]
 *
 * Re-encodes the weights of a GGUF model like llama-quantize without an
 * importance matrix: the same per-tensor type choices (llama.cpp's
 * llama_tensor_get_type rules, as of src/llama-quant.cpp in 2025/26, for the
 * K-quant mixes, and its fallbacks for rows that do not fit the block size), the same reference quantizers (bit-compatible
 * with ggml's), the same tensor order (non-layer tensors, then by layer, by
 * name within each) and the same metadata (copied byte for byte, with
 * general.quantization_version and general.file_type set at the end).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "core/alloc.h"
#include "core/threadpool.h"
#include "gguf/gguf.h"
#include "gguf/gguf_write.h"
#include "quant/quant.h"

#define CMD "quantize"

/* llama.cpp's llama_ftype values (stored as general.file_type). */
enum {
    FT_ALL_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q2_K = 10, FT_Q3_K_M = 12, FT_Q4_K_M = 15, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_BF16 = 32
};

typedef struct qtype {
    const char *name;
    int ftype;
    uint32_t base; /* ggml type most weights get */
} qtype;

static const qtype qtypes[] = {
    {"f32", FT_ALL_F32, DSRI_TYPE_F32},   {"f16", FT_F16, DSRI_TYPE_F16},
    {"bf16", FT_BF16, DSRI_TYPE_BF16},    {"q8_0", FT_Q8_0, DSRI_TYPE_Q8_0},
    {"q4_0", FT_Q4_0, DSRI_TYPE_Q4_0},    {"q4_1", FT_Q4_1, DSRI_TYPE_Q4_1},
    {"q5_0", FT_Q5_0, DSRI_TYPE_Q5_0},    {"q5_1", FT_Q5_1, DSRI_TYPE_Q5_1},
    {"q2_k", FT_Q2_K, DSRI_TYPE_Q2_K},    {"q3_k_m", FT_Q3_K_M, DSRI_TYPE_Q3_K},
    {"q4_k_m", FT_Q4_K_M, DSRI_TYPE_Q4_K}, {"q5_k_m", FT_Q5_K_M, DSRI_TYPE_Q5_K},
    {"q6_k", FT_Q6_K, DSRI_TYPE_Q6_K},
    /* llama-quantize's aliases */
    {"q3_k", FT_Q3_K_M, DSRI_TYPE_Q3_K},  {"q4_k", FT_Q4_K_M, DSRI_TYPE_Q4_K},
    {"q5_k", FT_Q5_K_M, DSRI_TYPE_Q5_K},
};

static int is_quantized(uint32_t t)
{
    return t != DSRI_TYPE_F32 && t != DSRI_TYPE_F16 && t != DSRI_TYPE_BF16;
}

static const char *tname(uint32_t t)
{
    const dsri_type_traits *tr = dsri_type_traits_get(t);
    return tr ? tr->name : "?";
}

static int64_t blck(uint32_t t)
{
    const dsri_type_traits *tr = dsri_type_traits_get(t);
    return tr ? tr->block_size : 1;
}

/* ------------------------------------------------------------------ */
/* Type choice: llama.cpp src/llama-quant.cpp, for the ftypes above.   */

typedef struct qstate {
    int ftype;
    int has_output;
    int n_layer;
    int n_expert;
    int n_gqa;
    int is_70b;
    int n_attention_wv, i_attention_wv;
    int i_ffn_down;
    int error;
} qstate;

static int use_more_bits(int i_layer, int n_layers)
{
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

/* The layer index llama.cpp uses for ffn_down rules: the running count for
 * dense models, the name's block number for MoE models. */
static int layer_of(qstate *qs, int counter, const char *name)
{
    if (qs->n_expert > 1) {
        int i = -1;
        if (sscanf(name, "blk.%d.", &i) != 1 || i < 0 || i >= qs->n_layer) {
            fprintf(stderr, "dsr1 " CMD ": cannot determine the layer of tensor '%s'\n", name);
            qs->error = 1;
            return 0;
        }
        return i;
    }
    return counter;
}

static uint32_t tensor_get_type(qstate *qs, uint32_t new_type, const char *name, int64_t nx)
{
    const int ft = qs->ftype;
    if (strcmp(name, "output.weight") == 0 || (!qs->has_output && strcmp(name, "token_embd.weight") == 0)) {
        if (nx % blck(new_type) != 0)
            new_type = DSRI_TYPE_Q8_0;
        else if (new_type != DSRI_TYPE_Q8_0)
            new_type = DSRI_TYPE_Q6_K;
    } else if (strcmp(name, "token_embd.weight") == 0) {
        /* only IQ/TQ mixes change it */
    } else if (strstr(name, "attn_v.weight") || strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight")) {
        /* attn_v-like (current llama.cpp: fused QKV and DeepSeek's combined kv_b too) */
        if (ft == FT_Q2_K)
            new_type = qs->n_gqa >= 4 ? DSRI_TYPE_Q4_K : DSRI_TYPE_Q3_K;
        else if (ft == FT_Q3_K_M)
            new_type = qs->i_attention_wv < 2 ? DSRI_TYPE_Q5_K : DSRI_TYPE_Q4_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(qs->i_attention_wv, qs->n_attention_wv))
            new_type = DSRI_TYPE_Q6_K;
        if (qs->is_70b && (new_type == DSRI_TYPE_Q3_K || new_type == DSRI_TYPE_Q4_K))
            new_type = DSRI_TYPE_Q5_K;
        if (qs->n_expert == 8)
            new_type = DSRI_TYPE_Q8_0;
        ++qs->i_attention_wv;
    } else if (strstr(name, "attn_k.weight")) {
        if (qs->n_expert == 8)
            new_type = DSRI_TYPE_Q8_0;
    } else if (strstr(name, "attn_q.weight")) {
        /* only IQ mixes change it */
    } else if (strstr(name, "ffn_down")) {
        int i_layer = layer_of(qs, qs->i_ffn_down, name), n_layer = qs->n_layer;
        if (ft == FT_Q2_K)
            new_type = DSRI_TYPE_Q3_K;
        else if (ft == FT_Q3_K_M)
            new_type = i_layer < n_layer / 16 ? DSRI_TYPE_Q5_K : DSRI_TYPE_Q4_K; /* not falcon */
        else if (ft == FT_Q4_K_M) {
            if (use_more_bits(i_layer, n_layer))
                new_type = DSRI_TYPE_Q6_K;
        } else if (ft == FT_Q5_K_M && use_more_bits(i_layer, n_layer))
            new_type = DSRI_TYPE_Q6_K;
        ++qs->i_ffn_down;
    } else if (strstr(name, "attn_output.weight")) {
        if (qs->n_expert == 8) {
            if (ft == FT_Q2_K || ft == FT_Q3_K_M || ft == FT_Q4_K_M)
                new_type = DSRI_TYPE_Q5_K;
        } else {
            if (ft == FT_Q2_K)
                new_type = DSRI_TYPE_Q3_K;
            else if (ft == FT_Q3_K_M)
                new_type = DSRI_TYPE_Q4_K;
        }
    }

    /* rows that do not split into whole blocks */
    if (nx % blck(new_type) != 0) {
        uint32_t fb;
        switch (new_type) {
        case DSRI_TYPE_Q2_K:
        case DSRI_TYPE_Q3_K:
            /* current llama.cpp; older versions used IQ4_NL here */
            fb = DSRI_TYPE_Q4_0;
            break;
        case DSRI_TYPE_Q4_K: fb = DSRI_TYPE_Q5_0; break;
        case DSRI_TYPE_Q5_K: fb = DSRI_TYPE_Q5_1; break;
        case DSRI_TYPE_Q6_K: fb = DSRI_TYPE_Q8_0; break;
        default:
            fprintf(stderr, "dsr1 " CMD ": tensor '%s': rows of %lld are not a multiple of %s's block size %lld\n",
                    name, (long long)nx, tname(new_type), (long long)blck(new_type));
            qs->error = 1;
            return new_type;
        }
        if (nx % blck(fb) != 0)
            fb = DSRI_TYPE_F16;
        new_type = fb;
    }
    return new_type;
}

/* Which tensors are re-encoded at all (llama_model_quantize_impl). */
static int wants_quantize(const char *name, int n_dims_eff)
{
    size_t len = strlen(name);
    if (len < 6 || strcmp(name + len - 6, "weight") != 0)
        return 0;
    if (n_dims_eff < 2)
        return 0;
    static const char *const never[] = {"_norm.weight", "ffn_gate_inp.weight", "altup", "laurel",
                                        "per_layer_model_proj", "ssm_conv1d.weight",
                                        "shortconv.conv.weight", "time_mix_first.weight",
                                        "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
                                        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
                                        "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight",
                                        "time_mix_g1.weight", "time_mix_g2.weight",
                                        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
                                        "time_mix_lerp_fused.weight", "attn_rel_b.weight",
                                        ".position_embd."};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (strstr(name, never[i]))
            return 0;
    if (strcmp(name, "position_embd.weight") == 0 || strcmp(name, "token_types.weight") == 0)
        return 0;
    return 1;
}

/* ------------------------------------------------------------------ */

typedef struct tplan {
    const dsri_gguf_tensor *t;
    char *name;
    int layer;
    uint32_t new_type;
    uint64_t new_size;
    uint64_t offset;
    uint32_t n_dims; /* ggml_n_dims: trailing 1s dropped, as ggml writes it */
} tplan;

static int layer_num(const char *name)
{
    int l = -1;
    if (sscanf(name, "blk.%d.", &l) != 1)
        l = -1;
    return l;
}

static int plan_cmp(const void *a, const void *b)
{
    const tplan *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int get_int(const dsri_gguf *g, const char *arch, const char *suffix, int64_t def)
{
    char key[256];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    if (dsri_gguf_get_i64(g, key, &v) == 0)
        return (int)v;
    const dsri_gguf_kv *kv = dsri_gguf_find_kv(g, key);
    if (kv && kv->type == DSRI_GGUF_ARRAY && kv->arr_n > 0 && kv->arr_type != DSRI_GGUF_STRING &&
        kv->arr_type != DSRI_GGUF_F32 && kv->arr_type != DSRI_GGUF_F64)
        return (int)dsri_gguf_arr_int(kv, 0);
    return (int)def;
}

typedef struct qjob {
    const uint8_t *src;
    uint8_t *dst;
    uint32_t src_type, dst_type;
    int64_t ne0;
    size_t src_row, dst_row;
    int64_t n_rows;
    int n_tasks;
    float **scratch;
    int failed;
} qjob;

static void quant_task(void *arg, int i, int thread)
{
    qjob *j = arg;
    int64_t r0 = j->n_rows * i / j->n_tasks, r1 = j->n_rows * (i + 1) / j->n_tasks;
    float *buf = j->scratch[thread];
    for (int64_t r = r0; r < r1; r++) {
        if (dsri_dequantize_row(j->src_type, j->src + (size_t)r * j->src_row, buf, j->ne0) != 0 ||
            dsri_quantize_row(j->dst_type, buf, j->dst + (size_t)r * j->dst_row, j->ne0) != 0)
            j->failed = 1;
    }
}

int dsr1_cli_quantize(const dsr1_cli_command *cmd, dsr1_cli_opts *o)
{
    const char *const *pos = o->positional; /* the parser checked there are 3 */
    long n_threads = o->n_threads;
    const char *in_path = pos[0], *out_path = pos[1], *type_name = pos[2];
    const qtype *qt = NULL;
    for (size_t i = 0; i < sizeof qtypes / sizeof qtypes[0]; i++)
        if (strcasecmp(type_name, qtypes[i].name) == 0)
            qt = &qtypes[i];
    if (!qt) {
        if (strncasecmp(type_name, "iq", 2) == 0)
            fprintf(stderr, "dsr1 " CMD ": '%s': IQ types are not quantizable here (libdsr1 has no IQ quantizers; use llama-quantize)\n", type_name);
        else
            dsr1_cli_usage_error(cmd, "unknown type '%s'", type_name);
        return DSR1_EXIT_USAGE;
    }
    if (n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = nc > 0 ? (nc < 64 ? nc : 64) : 1;
    }
    if (strcmp(in_path, out_path) == 0) {
        fprintf(stderr, "dsr1 " CMD ": input and output are the same file\n");
        return 1;
    }

    /* map and parse the input */
    int fd = open(in_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "dsr1 " CMD ": cannot open '%s': %s\n", in_path, strerror(errno));
        return 1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0) {
        close(fd);
        fprintf(stderr, "dsr1 " CMD ": '%s' is not a non-empty regular file\n", in_path);
        return 1;
    }
    size_t map_size = (size_t)sb.st_size;
    void *map = mmap(NULL, map_size, PROT_READ, MAP_SHARED, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        fprintf(stderr, "dsr1 " CMD ": cannot map '%s': %s\n", in_path, strerror(map_errno));
        return 1;
    }
    int rc = 1;
    dsri_gguf *g = NULL;
    tplan *plan = NULL;
    dsri_pool *pool = NULL;
    float **scratch = NULL;
    uint8_t *chunk = NULL;
    FILE *f = NULL;
    char *part = NULL;
    int part_created = 0;
    uint64_t n_t = 0;
    /* a bar of the input bytes done, moved after each chunk of rows: one
     * large tensor takes a while, and its line says only that it started */
    dsr1_cli_progress bar;
    dsr1_cli_progress_init(&bar, "quantizing");

    dsr1_status st = dsri_gguf_parse(map, map_size, &g);
    if (st) {
        fprintf(stderr, "dsr1 " CMD ": cannot read '%s': %s\n", in_path, dsr1_last_error());
        goto done;
    }

    dsri_str arch_s;
    char arch[64] = "";
    if (dsri_gguf_get_str(g, "general.architecture", &arch_s) == 0 && arch_s.len < sizeof arch) {
        memcpy(arch, arch_s.ptr, (size_t)arch_s.len);
        arch[arch_s.len] = '\0';
    }
    qstate qs;
    memset(&qs, 0, sizeof qs);
    qs.ftype = qt->ftype;
    qs.n_layer = get_int(g, arch, "block_count", 0);
    qs.n_expert = get_int(g, arch, "expert_count", 0);
    int n_head = get_int(g, arch, "attention.head_count", 0);
    int n_head_kv = get_int(g, arch, "attention.head_count_kv", n_head);
    qs.n_gqa = n_head_kv > 0 ? n_head / n_head_kv : 0;
    /* llama.cpp's LLM_TYPE_70B: 80-layer llama (with GQA) and qwen2 */
    qs.is_70b = qs.n_layer == 80 && ((strcmp(arch, "llama") == 0 && n_head != n_head_kv) ||
                                     strcmp(arch, "qwen2") == 0);

    n_t = dsri_gguf_tensor_count(g);
    plan = dsri_calloc(n_t ? (size_t)n_t : 1, sizeof *plan);
    if (!plan)
        goto oom;
    for (uint64_t i = 0; i < n_t; i++) {
        const dsri_gguf_tensor *t = dsri_gguf_tensor_at(g, i);
        plan[i].t = t;
        plan[i].name = dsri_strndup(t->name.ptr, (size_t)t->name.len);
        if (!plan[i].name)
            goto oom;
        plan[i].layer = layer_num(plan[i].name);
        if (strcmp(plan[i].name, "output.weight") == 0)
            qs.has_output = 1;
        if (strstr(plan[i].name, "attn_v.weight") || strstr(plan[i].name, "attn_qkv.weight") ||
            strstr(plan[i].name, "attn_kv_b.weight"))
            qs.n_attention_wv++;
    }
    qsort(plan, (size_t)n_t, sizeof *plan, plan_cmp);

    /* choose types and lay out the data section */
    uint64_t align = dsri_gguf_alignment(g);
    uint64_t data_size = 0;
    size_t max_ne0 = 0;
    for (uint64_t i = 0; i < n_t; i++) {
        tplan *p = &plan[i];
        const dsri_gguf_tensor *t = p->t;
        int nd = 1;
        for (int d = DSRI_GGUF_MAX_DIMS - 1; d > 0; d--)
            if (t->ne[d] > 1) {
                nd = d + 1;
                break;
            }
        p->n_dims = (uint32_t)nd;
        p->new_type = t->type;
        if (wants_quantize(p->name, nd)) {
            uint32_t nt = qt->base;
            if (is_quantized(nt)) {
                nt = tensor_get_type(&qs, nt, p->name, t->ne[0]);
                if (qs.error)
                    goto done;
            }
            if (nt != t->type) {
                if (!dsri_type_traits_get(t->type) || dsri_row_size(t->type, t->ne[0]) == 0) {
                    fprintf(stderr, "dsr1 " CMD ": tensor '%s': cannot decode its type %u\n", p->name, t->type);
                    goto done;
                }
                p->new_type = nt;
                if ((size_t)t->ne[0] > max_ne0)
                    max_ne0 = (size_t)t->ne[0];
            }
        }
        if (p->new_type == t->type)
            p->new_size = t->n_bytes;
        else
            p->new_size = (uint64_t)dsri_row_size(p->new_type, t->ne[0]) *
                          (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
        p->offset = data_size;
        data_size += (p->new_size + align - 1) / align * align;
    }

    /* metadata: everything but the keys set below and the split keys */
    static const char *const dropped[] = {"general.quantization_version", "general.file_type", "split.no",
                                          "split.count", "split.tensors.count"};
    uint64_t n_kv = dsri_gguf_kv_count(g), n_kv_out = 2;
    for (uint64_t i = 0; i < n_kv; i++) {
        const dsri_gguf_kv *kv = dsri_gguf_kv_at(g, i);
        int drop = 0;
        for (size_t k = 0; k < sizeof dropped / sizeof dropped[0]; k++)
            drop |= dsri_str_eq(kv->key, dropped[k]);
        n_kv_out += !drop;
    }

    size_t plen = strlen(out_path);
    part = dsri_malloc(plen + 6);
    if (!part)
        goto oom;
    memcpy(part, out_path, plen);
    memcpy(part + plen, ".part", 6);
    f = fopen(part, "wb");
    if (!f) {
        fprintf(stderr, "dsr1 " CMD ": cannot create '%s': %s\n", part, strerror(errno));
        goto done;
    }
    part_created = 1;

    st = dsri_gguf_write_header(f, n_t, n_kv_out);
    uint64_t written = 24;
    for (uint64_t i = 0; !st && i < n_kv; i++) {
        const dsri_gguf_kv *kv = dsri_gguf_kv_at(g, i);
        int drop = 0;
        for (size_t k = 0; k < sizeof dropped / sizeof dropped[0]; k++)
            drop |= dsri_str_eq(kv->key, dropped[k]);
        if (!drop) {
            st = dsri_gguf_write_kv_copy(f, g, kv);
            written += dsri_gguf_kv_raw_size(g, kv);
        }
    }
    if (!st) {
        st = dsri_gguf_write_kv_u32(f, "general.quantization_version", 2);
        written += 8 + strlen("general.quantization_version") + 8;
    }
    if (!st) {
        st = dsri_gguf_write_kv_u32(f, "general.file_type", (uint32_t)qt->ftype);
        written += 8 + strlen("general.file_type") + 8;
    }
    for (uint64_t i = 0; !st && i < n_t; i++) {
        const tplan *p = &plan[i];
        st = dsri_gguf_write_tensor_info(f, p->name, strlen(p->name), p->n_dims, p->t->ne, p->new_type,
                                         p->offset);
        written += 8 + strlen(p->name) + 4 + 8 * (uint64_t)p->n_dims + 4 + 8;
    }
    if (!st)
        st = dsri_gguf_write_pad(f, written, align);
    if (st)
        goto io_fail;

    /* tensor data */
    if (max_ne0) {
        st = dsri_pool_new((int)n_threads, &pool);
        if (st)
            goto lib_fail;
        scratch = dsri_calloc((size_t)n_threads, sizeof *scratch);
        if (!scratch)
            goto oom;
        for (long i = 0; i < n_threads; i++)
            if (!(scratch[i] = dsri_malloc(max_ne0 * sizeof(float))))
                goto oom;
    }
    const size_t chunk_cap = (size_t)64 << 20;
    uint64_t orig_bytes = 0, new_bytes = 0, total_bytes = 0;
    for (uint64_t i = 0; i < n_t; i++)
        total_bytes += plan[i].t->n_bytes;
    for (uint64_t i = 0; i < n_t; i++) {
        const tplan *p = &plan[i];
        const dsri_gguf_tensor *t = p->t;
        dsr1_cli_progress_clear(&bar);
        printf("[%4llu/%4llu] %-40s %-6s -> %-6s %10.3f MiB -> %10.3f MiB\n", (unsigned long long)i + 1,
               (unsigned long long)n_t, p->name, tname(t->type), tname(p->new_type),
               (double)t->n_bytes / 1048576.0, (double)p->new_size / 1048576.0);
        fflush(stdout);
        dsr1_cli_progress_draw(&bar, orig_bytes, total_bytes, 1);
        if (p->new_type == t->type) {
            st = dsri_gguf_write_bytes(f, t->data, (size_t)t->n_bytes);
        } else {
            qjob j;
            memset(&j, 0, sizeof j);
            j.src_type = t->type;
            j.dst_type = p->new_type;
            j.ne0 = t->ne[0];
            j.src_row = dsri_row_size(t->type, t->ne[0]);
            j.dst_row = dsri_row_size(p->new_type, t->ne[0]);
            j.scratch = scratch;
            int64_t n_rows = t->ne[1] * t->ne[2] * t->ne[3];
            int64_t rows_per_chunk = (int64_t)(chunk_cap / j.dst_row);
            if (rows_per_chunk < 1)
                rows_per_chunk = 1;
            if (rows_per_chunk > n_rows)
                rows_per_chunk = n_rows;
            if (!chunk) {
                chunk = dsri_malloc(chunk_cap > j.dst_row ? chunk_cap : j.dst_row);
                if (!chunk)
                    goto oom;
            } else if (j.dst_row > chunk_cap) {
                uint8_t *c2 = dsri_realloc(chunk, j.dst_row);
                if (!c2)
                    goto oom;
                chunk = c2;
            }
            for (int64_t r = 0; !st && r < n_rows; r += rows_per_chunk) {
                j.n_rows = n_rows - r < rows_per_chunk ? n_rows - r : rows_per_chunk;
                j.src = t->data + (size_t)r * j.src_row;
                j.dst = chunk;
                j.n_tasks = (int)(j.n_rows < n_threads * 4 ? j.n_rows : n_threads * 4);
                dsri_pool_run(pool, quant_task, &j, j.n_tasks);
                if (j.failed) {
                    dsr1_cli_progress_end(&bar);
                    fprintf(stderr, "dsr1 " CMD ": tensor '%s': conversion %s -> %s failed\n", p->name,
                            tname(t->type), tname(p->new_type));
                    goto done;
                }
                st = dsri_gguf_write_bytes(f, chunk, (size_t)j.n_rows * j.dst_row);
                dsr1_cli_progress_draw(&bar, orig_bytes + (uint64_t)(r + j.n_rows) * j.src_row, total_bytes, 1);
            }
        }
        orig_bytes += t->n_bytes;
        new_bytes += p->new_size;
        dsr1_cli_progress_draw(&bar, orig_bytes, total_bytes, 1);
        if (!st)
            st = dsri_gguf_write_pad(f, p->new_size, align);
        if (st)
            goto io_fail;
    }
    if (fflush(f) != 0 || ferror(f)) {
        fprintf(stderr, "dsr1 " CMD ": cannot write '%s': %s\n", part, strerror(errno));
        goto done;
    }
    int close_rc = fclose(f);
    f = NULL;
    if (close_rc != 0) {
        fprintf(stderr, "dsr1 " CMD ": cannot write '%s': %s\n", part, strerror(errno));
        goto done;
    }
    if (rename(part, out_path) != 0) {
        fprintf(stderr, "dsr1 " CMD ": cannot rename '%s' to '%s': %s\n", part, out_path, strerror(errno));
        goto done;
    }
    dsr1_cli_progress_end(&bar);
    printf("%s: %.2f MiB -> %.2f MiB (%s, file_type %d)\n", out_path, (double)orig_bytes / 1048576.0,
           (double)new_bytes / 1048576.0, qt->name, qt->ftype);
    rc = 0;
    goto done;

io_fail:
    dsr1_cli_progress_end(&bar);
    fprintf(stderr, "dsr1 " CMD ": cannot write '%s': %s\n", part, dsr1_last_error());
    goto done;
lib_fail:
    dsr1_cli_progress_end(&bar);
    rc = dsr1_cli_fail(CMD, st);
    goto done;
oom:
    dsr1_cli_progress_end(&bar);
    fprintf(stderr, "dsr1 " CMD ": out of memory\n");
done:
    if (f) {
        fclose(f);
    }
    if (rc != 0 && part_created)
        remove(part);
    dsri_free(part);
    dsri_free(chunk);
    if (scratch)
        for (long i = 0; i < n_threads; i++)
            dsri_free(scratch[i]);
    dsri_free(scratch);
    dsri_pool_free(pool);
    if (plan)
        for (uint64_t i = 0; i < n_t; i++)
            dsri_free(plan[i].name);
    dsri_free(plan);
    dsri_gguf_free(g);
    munmap(map, map_size);
    return rc;
}
