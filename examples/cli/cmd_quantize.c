/*
 * dsr1 quantize IN.gguf OUT.gguf TYPE [--imatrix FILE] [--threads N]
 *
 * Re-encodes the weights of a GGUF model like llama-quantize: the same
 * per-tensor type choices (llama.cpp's llama_tensor_get_type rules, as of
 * src/llama-quant.cpp in 2025/26, for the K-quant and IQ mixes, and its
 * fallbacks for rows that do not fit the block size), the same quantizers
 * (bit-compatible with ggml's), the same tensor order (non-layer tensors,
 * then by layer, by name within each) and the same metadata (copied byte for
 * byte, with general.quantization_version and general.file_type set at the
 * end, and llama-quantize's quantize.imatrix.* keys when --imatrix is given).
 * With an importance matrix (llama-imatrix's or `dsr1 imatrix`'s file) each
 * tensor's rows are quantized with its entry's weights, each expert of a
 * 3-D expert tensor with its own; the types that need one (IQ1_S, IQ1_M,
 * IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS) are refused without it, as llama.cpp does.
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
#include "quant/imatrix.h"
#include "quant/quant.h"

#define CMD "quantize"

/* llama.cpp's llama_ftype values (stored as general.file_type). */
enum {
    FT_ALL_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q2_K = 10, FT_Q3_K_M = 12, FT_Q4_K_M = 15, FT_Q5_K_M = 17, FT_Q6_K = 18,
    FT_IQ2_XXS = 19, FT_IQ2_XS = 20, FT_IQ3_XXS = 23, FT_IQ1_S = 24, FT_IQ4_NL = 25, FT_IQ3_S = 26,
    FT_IQ3_M = 27, FT_IQ2_S = 28, FT_IQ2_M = 29, FT_IQ4_XS = 30, FT_IQ1_M = 31, FT_BF16 = 32
};

typedef struct qtype {
    const char *name;
    int ftype;
    uint32_t base; /* ggml type most weights get (llama_ftype_get_default_type) */
} qtype;

static const qtype qtypes[] = {
    {"f32", FT_ALL_F32, DSRI_TYPE_F32},   {"f16", FT_F16, DSRI_TYPE_F16},
    {"bf16", FT_BF16, DSRI_TYPE_BF16},    {"q8_0", FT_Q8_0, DSRI_TYPE_Q8_0},
    {"q4_0", FT_Q4_0, DSRI_TYPE_Q4_0},    {"q4_1", FT_Q4_1, DSRI_TYPE_Q4_1},
    {"q5_0", FT_Q5_0, DSRI_TYPE_Q5_0},    {"q5_1", FT_Q5_1, DSRI_TYPE_Q5_1},
    {"q2_k", FT_Q2_K, DSRI_TYPE_Q2_K},    {"q3_k_m", FT_Q3_K_M, DSRI_TYPE_Q3_K},
    {"q4_k_m", FT_Q4_K_M, DSRI_TYPE_Q4_K}, {"q5_k_m", FT_Q5_K_M, DSRI_TYPE_Q5_K},
    {"q6_k", FT_Q6_K, DSRI_TYPE_Q6_K},
    {"iq4_nl", FT_IQ4_NL, DSRI_TYPE_IQ4_NL}, {"iq4_xs", FT_IQ4_XS, DSRI_TYPE_IQ4_XS},
    {"iq3_s", FT_IQ3_S, DSRI_TYPE_IQ3_S},   {"iq3_m", FT_IQ3_M, DSRI_TYPE_IQ3_S},
    {"iq3_xxs", FT_IQ3_XXS, DSRI_TYPE_IQ3_XXS},
    /* llama.cpp's IQ2_S mix is mostly IQ2_XS, its IQ2_M mostly IQ2_S */
    {"iq2_s", FT_IQ2_S, DSRI_TYPE_IQ2_XS},  {"iq2_m", FT_IQ2_M, DSRI_TYPE_IQ2_S},
    {"iq2_xs", FT_IQ2_XS, DSRI_TYPE_IQ2_XS}, {"iq2_xxs", FT_IQ2_XXS, DSRI_TYPE_IQ2_XXS},
    {"iq1_m", FT_IQ1_M, DSRI_TYPE_IQ1_M},   {"iq1_s", FT_IQ1_S, DSRI_TYPE_IQ1_S},
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
    int has_imatrix;
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

/* llama.cpp's tensor categories (tensor_get_category), by name */
enum { C_OUTPUT, C_TOKEN_EMBD, C_ATTN_V_LIKE, C_ATTN_K, C_ATTN_Q, C_ATTN_OUTPUT, C_FFN_UP, C_FFN_GATE,
       C_FFN_DOWN, C_OTHER };

static int category_of(const char *name)
{
    if (strcmp(name, "output.weight") == 0)
        return C_OUTPUT;
    if (strcmp(name, "token_embd.weight") == 0)
        return C_TOKEN_EMBD;
    /* attn_qkv and DeepSeek's combined kv_b count as attn_v (category_is_attn_v) */
    if (strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight") || strstr(name, "attn_v.weight"))
        return C_ATTN_V_LIKE;
    if (strstr(name, "attn_k.weight"))
        return C_ATTN_K;
    if (strstr(name, "attn_q.weight"))
        return C_ATTN_Q;
    if (strstr(name, "attn_output.weight"))
        return C_ATTN_OUTPUT;
    if (strstr(name, "ffn_up"))
        return C_FFN_UP;
    if (strstr(name, "ffn_gate"))
        return C_FFN_GATE;
    if (strstr(name, "ffn_down"))
        return C_FFN_DOWN;
    return C_OTHER;
}

static int ft_in(int ft, const int *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (set[i] == ft)
            return 1;
    return 0;
}
#define FT_IN(ft, ...) ft_in(ft, (const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

/* llama_tensor_get_type_impl and tensor_type_fallback for our ftypes */
static uint32_t tensor_get_type(qstate *qs, uint32_t new_type, const char *name, int64_t nx)
{
    const int ft = qs->ftype, cat = category_of(name);
    /* the lowest-bit IQ mixes have rules of their own */
    const int iq_low = FT_IN(ft, FT_IQ2_XXS, FT_IQ2_XS, FT_IQ1_S, FT_IQ2_S, FT_IQ2_M, FT_IQ1_M);
    const int iq2_sm = ft == FT_IQ2_S || ft == FT_IQ2_M;
    if (cat == C_OUTPUT || (!qs->has_output && cat == C_TOKEN_EMBD)) {
        if (nx % blck(new_type) != 0)
            new_type = DSRI_TYPE_Q8_0;
        else if (FT_IN(ft, FT_IQ2_XXS, FT_IQ2_XS, FT_IQ3_XXS, FT_IQ1_S, FT_IQ2_S, FT_IQ2_M, FT_IQ1_M))
            new_type = DSRI_TYPE_Q5_K;
        else if (new_type != DSRI_TYPE_Q8_0)
            new_type = DSRI_TYPE_Q6_K;
    } else if (cat == C_TOKEN_EMBD) {
        if (FT_IN(ft, FT_IQ2_XXS, FT_IQ2_XS, FT_IQ1_S, FT_IQ1_M))
            new_type = DSRI_TYPE_Q2_K;
        else if (iq2_sm || ft == FT_IQ3_XXS)
            new_type = DSRI_TYPE_IQ3_S;
    } else if (iq_low) {
        if (cat == C_ATTN_V_LIKE) {
            if (qs->n_gqa >= 4 || qs->n_expert >= 4)
                new_type = DSRI_TYPE_Q4_K;
            else
                new_type = iq2_sm ? DSRI_TYPE_IQ3_S : DSRI_TYPE_Q2_K;
            ++qs->i_attention_wv;
        } else if (qs->n_expert == 8 && cat == C_ATTN_K) {
            new_type = DSRI_TYPE_Q4_K;
        } else if (cat == C_FFN_DOWN) {
            /* the running count of ffn_down tensors, for MoE models too */
            if (qs->i_ffn_down < qs->n_layer / 8)
                new_type = iq2_sm ? DSRI_TYPE_IQ3_S : DSRI_TYPE_Q2_K;
            ++qs->i_ffn_down;
        } else if (cat == C_ATTN_OUTPUT) {
            if (qs->n_expert == 8)
                new_type = DSRI_TYPE_Q5_K;
            else if (ft == FT_IQ1_S || ft == FT_IQ1_M)
                new_type = DSRI_TYPE_IQ2_XXS;
            else if (iq2_sm)
                new_type = DSRI_TYPE_IQ3_S;
        }
    } else if (cat == C_ATTN_V_LIKE) {
        if (ft == FT_Q2_K)
            new_type = qs->n_gqa >= 4 ? DSRI_TYPE_Q4_K : DSRI_TYPE_Q3_K;
        else if (ft == FT_IQ3_XXS)
            new_type = qs->n_gqa >= 4 ? DSRI_TYPE_Q4_K : !qs->has_imatrix ? DSRI_TYPE_IQ3_S : DSRI_TYPE_IQ3_XXS;
        else if (ft == FT_IQ3_S && qs->n_gqa >= 4)
            new_type = DSRI_TYPE_Q4_K;
        else if (ft == FT_IQ3_M)
            new_type = DSRI_TYPE_Q4_K;
        else if (ft == FT_Q3_K_M)
            new_type = qs->i_attention_wv < 2 ? DSRI_TYPE_Q5_K : DSRI_TYPE_Q4_K;
        else if ((ft == FT_IQ4_NL || ft == FT_IQ4_XS) && qs->n_gqa >= 4)
            new_type = DSRI_TYPE_Q5_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(qs->i_attention_wv, qs->n_attention_wv))
            new_type = DSRI_TYPE_Q6_K;
        if (qs->is_70b && (new_type == DSRI_TYPE_Q3_K || new_type == DSRI_TYPE_Q4_K))
            new_type = DSRI_TYPE_Q5_K;
        if (qs->n_expert == 8)
            new_type = DSRI_TYPE_Q8_0;
        ++qs->i_attention_wv;
    } else if (cat == C_ATTN_K) {
        if (qs->n_expert == 8)
            new_type = DSRI_TYPE_Q8_0;
        else if (ft == FT_IQ3_XXS)
            new_type = DSRI_TYPE_IQ2_S;
    } else if (cat == C_ATTN_Q) {
        if (ft == FT_IQ3_XXS)
            new_type = DSRI_TYPE_IQ2_S;
    } else if (cat == C_FFN_DOWN) {
        int i_layer = layer_of(qs, qs->i_ffn_down, name), n_layer = qs->n_layer;
        if (ft == FT_Q2_K)
            new_type = DSRI_TYPE_Q3_K;
        else if (ft == FT_IQ3_XXS && !qs->has_imatrix)
            new_type = i_layer < n_layer / 8 ? DSRI_TYPE_Q4_K : DSRI_TYPE_Q3_K;
        else if (ft == FT_Q3_K_M)
            new_type = i_layer < n_layer / 16 ? DSRI_TYPE_Q5_K : DSRI_TYPE_Q4_K; /* not falcon */
        else if (ft == FT_IQ3_M && (i_layer < n_layer / 8 || (qs->n_expert == 8 && use_more_bits(i_layer, n_layer))))
            new_type = DSRI_TYPE_Q4_K;
        else if (ft == FT_Q4_K_M) {
            if (use_more_bits(i_layer, n_layer))
                new_type = DSRI_TYPE_Q6_K;
        } else if (i_layer < n_layer / 8 && (ft == FT_IQ4_NL || ft == FT_IQ4_XS) && !qs->has_imatrix)
            new_type = DSRI_TYPE_Q5_K;
        else if (ft == FT_Q5_K_M && use_more_bits(i_layer, n_layer))
            new_type = DSRI_TYPE_Q6_K;
        else if ((ft == FT_Q4_0 || ft == FT_Q5_0) && qs->has_imatrix && i_layer < n_layer / 8)
            new_type = ft == FT_Q4_0 ? DSRI_TYPE_Q4_1 : DSRI_TYPE_Q5_1;
        ++qs->i_ffn_down;
    } else if (cat == C_ATTN_OUTPUT) {
        if (qs->n_expert == 8) {
            if (FT_IN(ft, FT_Q2_K, FT_IQ3_XXS, FT_Q3_K_M, FT_IQ4_NL, FT_Q4_K_M, FT_IQ3_S, FT_IQ3_M, FT_IQ4_XS))
                new_type = DSRI_TYPE_Q5_K;
        } else {
            if (ft == FT_Q2_K)
                new_type = DSRI_TYPE_Q3_K;
            else if (ft == FT_IQ3_XXS)
                new_type = DSRI_TYPE_IQ3_S;
            else if (ft == FT_Q3_K_M || ft == FT_IQ3_M)
                new_type = DSRI_TYPE_Q4_K;
        }
    }

    /* rows that do not split into whole blocks */
    if (nx % blck(new_type) != 0) {
        uint32_t fb;
        switch (new_type) {
        case DSRI_TYPE_IQ1_S:
        case DSRI_TYPE_IQ1_M:
        case DSRI_TYPE_IQ2_XXS:
        case DSRI_TYPE_IQ2_XS:
        case DSRI_TYPE_IQ2_S:
        case DSRI_TYPE_IQ3_XXS:
        case DSRI_TYPE_IQ3_S:
        case DSRI_TYPE_IQ4_XS: fb = DSRI_TYPE_IQ4_NL; break;
        case DSRI_TYPE_Q2_K:
        case DSRI_TYPE_Q3_K:
            /* current llama.cpp; older versions used IQ4_NL here */
            fb = DSRI_TYPE_Q4_0;
            break;
        case DSRI_TYPE_Q4_K: fb = DSRI_TYPE_Q5_0; break;
        case DSRI_TYPE_Q5_K: fb = DSRI_TYPE_Q5_1; break;
        case DSRI_TYPE_Q6_K: fb = DSRI_TYPE_Q8_0; break;
        default: fb = new_type; /* a 32-block type: F16 below */
        }
        if (nx % blck(fb) != 0)
            fb = DSRI_TYPE_F16;
        new_type = fb;
    }
    return new_type;
}

/* tensor_requires_imatrix: the types whose quantization is garbage without one */
static int requires_imatrix(const char *name, uint32_t type)
{
    if (strcmp(name, "token_embd.weight") == 0 || strcmp(name, "output.weight") == 0)
        return 0;
    switch (type) {
    case DSRI_TYPE_IQ3_XXS:
    case DSRI_TYPE_IQ2_XXS:
    case DSRI_TYPE_IQ2_XS:
    case DSRI_TYPE_IQ2_S:
    case DSRI_TYPE_IQ1_M:
    case DSRI_TYPE_IQ1_S: return 1;
    default: return 0;
    }
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
    const dsri_imatrix_entry *imatrix; /* its importance matrix entry, or NULL */
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

/* Rows dequantized and quantized per call: a call never spans two experts
 * (each has its own importance weights). */
#define ROWS_PER_CALL 64

typedef struct qjob {
    const uint8_t *src;
    uint8_t *dst;
    uint32_t src_type, dst_type;
    int64_t ne0;
    size_t src_row, dst_row;
    int64_t first_row;     /* of the tensor: which expert a row belongs to */
    int64_t rows_per_mat;  /* rows of one expert (ne1) */
    const float *imatrix;  /* ne0 weights per expert, or NULL */
    int64_t n_rows;
    int n_tasks;
    float **scratch; /* ROWS_PER_CALL * ne0 floats per thread */
    int failed;
} qjob;

static void quant_task(void *arg, int i, int thread)
{
    qjob *j = arg;
    int64_t r0 = j->n_rows * i / j->n_tasks, r1 = j->n_rows * (i + 1) / j->n_tasks;
    float *buf = j->scratch[thread];
    while (r0 < r1) {
        const int64_t mat = (j->first_row + r0) / j->rows_per_mat;
        int64_t n = (mat + 1) * j->rows_per_mat - (j->first_row + r0);
        if (n > r1 - r0)
            n = r1 - r0;
        if (n > ROWS_PER_CALL)
            n = ROWS_PER_CALL;
        for (int64_t k = 0; k < n; k++)
            if (dsri_dequantize_row(j->src_type, j->src + (size_t)(r0 + k) * j->src_row, buf + k * j->ne0, j->ne0) != 0)
                j->failed = 1;
        if (dsri_quantize_rows(j->dst_type, buf, j->dst + (size_t)r0 * j->dst_row, n, j->ne0,
                               j->imatrix ? j->imatrix + mat * j->ne0 : NULL) != 0)
            j->failed = 1;
        r0 += n;
    }
}

/* Whether this build quantizes to type (with an importance matrix). */
static int can_quantize(uint32_t type)
{
    static const float zeros[256];
    float ones[256];
    uint8_t out[1024];
    for (int i = 0; i < 256; i++) ones[i] = 1.0f;
    return dsri_quantize_rows(type, zeros, out, 1, blck(type) > 32 ? 256 : 32, ones) == 0;
}

/* Metadata keys llama-quantize adds with an imatrix (and drops from its input). */
#define KEY_IMATRIX_FILE "quantize.imatrix.file"
#define KEY_IMATRIX_DATASET "quantize.imatrix.dataset"
#define KEY_IMATRIX_N_ENTRIES "quantize.imatrix.entries_count"
#define KEY_IMATRIX_N_CHUNKS "quantize.imatrix.chunks_count"

int dsr1_cli_quantize(const dsr1_cli_command *cmd, dsr1_cli_opts *o)
{
    const char *const *pos = o->positional; /* the parser checked there are 3 */
    long n_threads = o->n_threads;
    const char *in_path = pos[0], *out_path = pos[1], *type_name = pos[2];
    const qtype *qt = NULL;
    for (size_t i = 0; i < sizeof qtypes / sizeof qtypes[0]; i++)
        if (strcasecmp(type_name, qtypes[i].name) == 0)
            qt = &qtypes[i];
    if (!qt)
        dsr1_cli_usage_error(cmd, "unknown type '%s'", type_name);
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
    dsri_imatrix *imat = NULL;
    float *imat_w = NULL;
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
    if (o->imatrix_path) {
        if ((st = dsri_imatrix_load(o->imatrix_path, &imat)) != DSR1_OK) {
            fprintf(stderr, "dsr1 " CMD ": %s\n", dsr1_last_error());
            goto done;
        }
        printf("imatrix: %lld entries from %s computed on %d chunks\n", (long long)imat->n_entries,
               o->imatrix_path, (int)imat->chunk_count);
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
    qs.has_imatrix = imat != NULL;
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
    size_t max_ne0 = 0, max_imat = 0;
    const tplan *no_quantizer = NULL;
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
                const dsri_imatrix_entry *e = imat ? dsri_imatrix_find(imat, p->name) : NULL;
                const int64_t n_mat = t->ne[2] * t->ne[3];
                if (e && e->n_values != t->ne[0] * n_mat) {
                    if (strcmp(p->name, "token_embd.weight") != 0) {
                        fprintf(stderr, "dsr1 " CMD ": the imatrix entry of '%s' has %lld values, the tensor %lld x %lld columns\n",
                                p->name, (long long)e->n_values, (long long)t->ne[0], (long long)n_mat);
                        goto done;
                    }
                    e = NULL; /* llama-quantize ignores it for the embeddings */
                }
                if (!e && requires_imatrix(p->name, nt)) {
                    if (!imat)
                        fprintf(stderr,
                                "dsr1 " CMD ": %s needs an importance matrix (--imatrix FILE, from `dsr1 imatrix` or "
                                "llama-imatrix): tensor '%s' would be %s, which is garbage without one\n",
                                qt->name, p->name, tname(nt));
                    else
                        fprintf(stderr, "dsr1 " CMD ": the importance matrix has no entry for '%s', which %s makes %s\n",
                                p->name, qt->name, tname(nt));
                    goto done;
                }
                if (!no_quantizer && !can_quantize(nt))
                    no_quantizer = p; /* reported after the imatrix checks of every tensor */
                p->imatrix = e;
                if (e && (size_t)e->n_values > max_imat)
                    max_imat = (size_t)e->n_values;
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

    if (no_quantizer) {
        fprintf(stderr, "dsr1 " CMD ": tensor '%s': this build has no quantizer for %s yet\n", no_quantizer->name,
                tname(no_quantizer->new_type));
        goto done;
    }

    /* metadata: everything but the keys set below and the split keys */
    static const char *const dropped[] = {"general.quantization_version", "general.file_type", "split.no",
                                          "split.count", "split.tensors.count", KEY_IMATRIX_FILE,
                                          KEY_IMATRIX_DATASET, KEY_IMATRIX_N_ENTRIES, KEY_IMATRIX_N_CHUNKS};
    uint64_t n_kv = dsri_gguf_kv_count(g), n_kv_out = 2;
    if (imat)
        n_kv_out += 2 + (imat->dataset != NULL) + (imat->chunk_count > 0);
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
    if (!st && imat) {
        /* llama-quantize's keys (its strings cut at 127 bytes) */
        char file[128], dataset[128];
        snprintf(file, sizeof file, "%s", o->imatrix_path);
        snprintf(dataset, sizeof dataset, "%s", imat->dataset ? imat->dataset : "");
        st = dsri_gguf_write_kv_str(f, KEY_IMATRIX_FILE, file);
        written += 8 + strlen(KEY_IMATRIX_FILE) + 4 + 8 + strlen(file);
        if (!st && imat->dataset) {
            st = dsri_gguf_write_kv_str(f, KEY_IMATRIX_DATASET, dataset);
            written += 8 + strlen(KEY_IMATRIX_DATASET) + 4 + 8 + strlen(dataset);
        }
        if (!st) {
            st = dsri_gguf_write_kv_u32(f, KEY_IMATRIX_N_ENTRIES, (uint32_t)imat->n_entries);
            written += 8 + strlen(KEY_IMATRIX_N_ENTRIES) + 8;
        }
        if (!st && imat->chunk_count > 0) {
            st = dsri_gguf_write_kv_u32(f, KEY_IMATRIX_N_CHUNKS, (uint32_t)imat->chunk_count);
            written += 8 + strlen(KEY_IMATRIX_N_CHUNKS) + 8;
        }
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
            if (!(scratch[i] = dsri_malloc(ROWS_PER_CALL * max_ne0 * sizeof(float))))
                goto oom;
        if (max_imat && !(imat_w = dsri_malloc(max_imat * sizeof(float))))
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
            j.rows_per_mat = t->ne[1];
            if (p->imatrix) {
                dsri_imatrix_weights(p->imatrix, t->ne[0], t->ne[2] * t->ne[3], imat_w);
                j.imatrix = imat_w;
            }
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
                j.first_row = r;
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
    dsri_free(imat_w);
    dsri_imatrix_free(imat);
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
