/*
 * Model loading: map the file, parse the container, pick the architecture,
 * load the vocabulary, bind the weights. Any failure unwinds completely.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "chat/chat.h"
#include "core/error.h"
#include "core/params.h"
#include "model/context.h"
#include "model/model.h"
#include "tokenizer/vocab.h"

static const dsri_arch_ops *const architectures[] = {
    &dsri_arch_llama,
    &dsri_arch_qwen2,
    &dsri_arch_qwen3,
    &dsri_arch_deepseek2,
};

void dsr1_model_params_default(dsr1_model_params *params, size_t struct_size)
{
    dsr1_model_params d;
    memset(&d, 0, sizeof d);
    d.log_level = DSR1_LOG_INFO;
    dsri_params_default(params, struct_size, &d, sizeof d);
}

/* Copy the caller's params (of whatever size it was compiled with) over the
 * defaults, so fields newer than the caller keep their default. */
static dsr1_status read_params(const dsr1_model_params *in, dsr1_model_params *p)
{
    dsr1_model_params_default(p, sizeof *p);
    dsr1_status st = dsri_params_read(in, p, sizeof *p, DSRI_KNOWN_SIZE(dsr1_model_params, cpu_moe),
                                      "dsr1_model_params");
    if (!st && (p->preload < 0 || p->preload > 1))
        st = dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_params.preload is %d (0 or 1)", p->preload);
    return st;
}

/* Load progress: the totals, what is done, and when it was last told. */
typedef struct progress {
    dsr1_progress_fn fn;
    void *user_data;
    dsr1_progress now;
    uint64_t told_bytes;
} progress;

/* Tell the callback (always when `force`, else once another 1/256 of the
 * bytes is done); DSR1_ERR_CANCELLED when it asks to stop. */
static dsr1_status report(progress *pr, int force)
{
    if (!pr->fn)
        return DSR1_OK;
    if (!force && pr->now.bytes_done - pr->told_bytes < pr->now.bytes_total / 256 + 1)
        return DSR1_OK;
    pr->told_bytes = pr->now.bytes_done;
    dsri_error_saved saved;
    dsri_error_save(&saved);
    int stop = pr->fn(&pr->now, pr->user_data);
    dsri_error_restore(&saved);
    if (stop)
        return dsri_error(DSR1_ERR_CANCELLED, "model load cancelled by the progress callback (%llu of %llu bytes)",
                          (unsigned long long)pr->now.bytes_done, (unsigned long long)pr->now.bytes_total);
    return DSR1_OK;
}

/* Read one byte of every page of the tensor data, in slices so progress
 * and cancellation come at least every PRELOAD_SLICE bytes. */
#define PRELOAD_SLICE ((uint64_t)32 << 20)
static dsr1_status preload_tensor(const dsr1_model *m, const dsri_gguf_tensor *t, progress *pr)
{
    const long page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
    const volatile uint8_t *p = t->data;
    dsr1_status st = DSR1_OK;
    for (uint64_t done = 0; !st && done < t->n_bytes;) {
        uint64_t n = t->n_bytes - done < PRELOAD_SLICE ? t->n_bytes - done : PRELOAD_SLICE;
        if (m->map) { /* start the disk on the whole slice at once */
            uintptr_t a = (uintptr_t)(p + done) & ~(uintptr_t)(page - 1);
            madvise((void *)a, (size_t)((uintptr_t)(p + done + n) - a), MADV_WILLNEED);
        }
        uint8_t sink = 0;
        for (uint64_t i = 0; i < n; i += (uint64_t)page)
            sink ^= p[done + i];
        sink ^= p[done + n - 1];
        (void)sink;
        done += n;
        pr->now.bytes_done += n;
        st = report(pr, 0);
    }
    return st;
}

/* Count the tensors (validated by now), reading their pages with preload. */
static dsr1_status walk_tensors(const dsr1_model *m, int preload, progress *pr)
{
    dsr1_status st = report(pr, 1);
    uint64_t n = dsri_gguf_tensor_count(m->gguf);
    for (uint64_t i = 0; !st && i < n; i++) {
        const dsri_gguf_tensor *t = dsri_gguf_tensor_at(m->gguf, i);
        if (preload && t->n_bytes > 0) {
            st = preload_tensor(m, t, pr);
        } else {
            pr->now.bytes_done += t->n_bytes;
            st = report(pr, 0);
        }
        pr->now.tensors_done++;
    }
    return st ? st : report(pr, 1);
}

static dsr1_status pick_arch(dsr1_model *m)
{
    dsri_str name;
    int r = dsri_gguf_get_str(m->gguf, "general.architecture", &name);
    if (r == -1) {
        if (m->vocab_only)
            return DSR1_OK;
        return dsri_error(DSR1_ERR_FORMAT, "model: required key 'general.architecture' is missing");
    }
    if (r != 0)
        return dsri_error(DSR1_ERR_FORMAT, "model: key 'general.architecture' is not a string");
    int n = (int)(name.len < sizeof m->arch_name - 1 ? name.len : sizeof m->arch_name - 1);
    memcpy(m->arch_name, name.ptr, (size_t)n);
    m->arch_name[n] = '\0';
    for (size_t i = 0; i < sizeof architectures / sizeof architectures[0]; i++)
        if (dsri_str_eq(name, architectures[i]->name)) {
            m->arch = architectures[i];
            return DSR1_OK;
        }
    if (m->vocab_only)
        return DSR1_OK;
    return dsri_error(DSR1_ERR_UNSUPPORTED, "model: architecture '%.*s' is not supported (qwen2, qwen3, llama, deepseek2 are)",
                      (int)(name.len > 64 ? 64 : name.len), name.ptr);
}

/* Chat formatting is R1's whatever the file says (a Qwen3 or other model
 * still loads and runs); say so when the file's template is another. */
static void warn_unknown_chat_template(const dsr1_model *m)
{
    dsri_str t;
    int r = dsri_gguf_get_str(m->gguf, "tokenizer.chat_template", &t);
    if (r == -1 || (r == 0 && dsri_chat_template_is_r1(t.ptr, (size_t)t.len)))
        return;
    dsri_log(&m->log, DSR1_LOG_WARN,
             "tokenizer.chat_template is not a DeepSeek-R1 template; chat formatting falls back to DeepSeek-R1's");
}

static dsr1_status copy_tensor_names(dsr1_model *m)
{
    uint64_t n = dsri_gguf_tensor_count(m->gguf);
    if (n == 0)
        return DSR1_OK;
    m->tensor_names = dsri_calloc((size_t)n, sizeof *m->tensor_names);
    if (!m->tensor_names)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "model: out of memory");
    for (uint64_t i = 0; i < n; i++) {
        const dsri_gguf_tensor *t = dsri_gguf_tensor_at(m->gguf, i);
        if (!(m->tensor_names[i] = dsri_strndup(t->name.ptr, (size_t)t->name.len)))
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "model: out of memory");
    }
    return DSR1_OK;
}

/* Above this a RoPE frequency (radians per position) is no trained value:
 * the standard ones are at most 1, and position x frequency must stay far
 * from float overflow (an infinite angle makes every logit NaN). */
#define MAX_ROPE_FREQ 1e4f

/* What the forward pass computes with besides the weights, derived from
 * several keys and tensors: each must be a usable number, or every result
 * would be NaN while evaluation reports success. */
static dsr1_status check_derived(const dsr1_model *m)
{
    const dsri_hparams *hp = &m->hp;
    for (int i = 0; m->rope_freq && i < hp->rope_dim / 2; i++)
        if (!(m->rope_freq[i] >= 0.0f && m->rope_freq[i] <= MAX_ROPE_FREQ))
            return dsri_error(DSR1_ERR_FORMAT,
                              "model: RoPE frequency %d is %g, outside [0, %g] (from '%s.rope.freq_base' %g, "
                              "'rope_freqs.weight' and the rope scaling keys)",
                              i, (double)m->rope_freq[i], (double)MAX_ROPE_FREQ, m->arch_name, (double)hp->rope_theta);
    if (!(m->attn_scale > 0.0f && isfinite(m->attn_scale)) || !(m->rope_mscale > 0.0f && isfinite(m->rope_mscale)))
        return dsri_error(DSR1_ERR_FORMAT, "model: the attention scale (%g) / RoPE magnitude (%g) derived from the "
                          "rope scaling keys is not a positive number", (double)m->attn_scale, (double)m->rope_mscale);
    /* llama.cpp writes "<arch>.vocab_size" in some files: it must agree */
    char key[64];
    snprintf(key, sizeof key, "%s.vocab_size", m->arch_name);
    int64_t n;
    int r = dsri_gguf_get_i64(m->gguf, key, &n);
    if (r == -2)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%s' is not an integer", key);
    if (r == 0 && n != hp->n_vocab)
        return dsri_error(DSR1_ERR_FORMAT, "model: key '%s' is %lld but the model has %d tokens", key, (long long)n,
                          hp->n_vocab);
    return DSR1_OK;
}

static dsr1_status load_parsed(dsr1_model *m, const dsr1_model_params *p)
{
    /* the file's bytes as a host buffer the weight views point into */
    m->file_buf.host = (void *)(uintptr_t)m->bytes;
    m->file_buf.size = m->n_bytes;
    dsr1_status st = dsri_gguf_parse(m->bytes, m->n_bytes, &m->gguf);
    if (st)
        return st;
    progress pr = {p->progress_callback, p->progress_user_data, {sizeof(dsr1_progress), 0, 0, 0, 0}, 0};
    pr.now.tensors_total = (int64_t)dsri_gguf_tensor_count(m->gguf);
    for (int64_t i = 0; i < pr.now.tensors_total; i++)
        pr.now.bytes_total += dsri_gguf_tensor_at(m->gguf, (uint64_t)i)->n_bytes;
    if ((st = report(&pr, 1)))
        return st;
    if ((st = copy_tensor_names(m)) || (st = pick_arch(m)))
        return st;
    if (m->sizes_only) /* dsr1_model_estimate_memory: shapes, no vocabulary */
        return m->vocab_only || !m->arch ? DSR1_OK : m->arch->load(m);
    if ((st = dsri_vocab_load(m->gguf, &m->vocab)))
        return st;
    warn_unknown_chat_template(m);
    if (m->vocab_only)
        return walk_tensors(m, 0, &pr);
    if ((st = m->arch->load(m)) || (st = walk_tensors(m, p->preload, &pr)))
        return st;
    if (m->hp.n_vocab != dsri_vocab_n_tokens(m->vocab))
        return dsri_error(DSR1_ERR_FORMAT, "model: the vocabulary has %d tokens but the output layer has %d rows",
                          dsri_vocab_n_tokens(m->vocab), m->hp.n_vocab);
    if ((st = check_derived(m)))
        return st;
    dsri_log(&m->log, DSR1_LOG_INFO, "loaded %s model: %d layers, n_embd %d, n_vocab %d, %llu tensors",
             m->arch_name, m->hp.n_layer, m->hp.n_embd, m->hp.n_vocab,
             (unsigned long long)dsri_gguf_tensor_count(m->gguf));
    return DSR1_OK;
}

static dsr1_status finish_load(dsr1_model *m, const dsr1_model_params *p, dsr1_model **out)
{
    m->vocab_only = p->vocab_only != 0;
    m->log.fn = p->log_callback;
    m->log.user_data = p->log_user_data;
    m->log.level = p->log_level;
    dsr1_status st = load_parsed(m, p);
    if (!st && !m->vocab_only && m->arch) {
        dsri_weights hw = {m->tok_embd, m->output_norm, m->output, m->rope_freq_t, m->layers};
        m->host_w = hw;
        st = dsri_model_place_from_params(m, p->n_gpu_layers, p->device, p->cpu_moe);
    }
    if (st) {
        dsri_log(&m->log, DSR1_LOG_ERROR, "%s", dsr1_last_error());
        dsr1_model_free(m);
        return st;
    }
    *out = m;
    return DSR1_OK;
}

/* A model holding the file at path mapped read-only (nothing parsed). */
static dsr1_status map_file(const char *path, dsr1_model **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dsri_error(DSR1_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return dsri_error(DSR1_ERR_IO, "'%s' is not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return dsri_error(DSR1_ERR_FORMAT, "'%s' is empty", path);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return dsri_error(DSR1_ERR_IO, "cannot map '%s': %s", path, strerror(map_errno));

    dsr1_model *m = dsri_calloc(1, sizeof *m);
    if (!m) {
        munmap(map, (size_t)sb.st_size);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "out of memory");
    }
    m->map = map;
    m->map_size = (size_t)sb.st_size;
    m->bytes = map;
    m->n_bytes = (size_t)sb.st_size;
    *out = m;
    return DSR1_OK;
}

dsr1_status dsr1_model_load(const char *path, const dsr1_model_params *params, dsr1_model **out_model)
{
    if (!out_model)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_load: out_model is NULL");
    *out_model = NULL;
    if (!path)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_load: path is NULL");
    dsr1_model_params p;
    dsr1_model *m;
    dsr1_status st = read_params(params, &p);
    if (st || (st = map_file(path, &m)))
        return st;
    return finish_load(m, &p, out_model);
}

dsr1_status dsr1_model_estimate_memory(const char *path, const dsr1_model_params *model_params,
                                       const dsr1_context_params *ctx_params, dsr1_memory_estimate *out)
{
    if (!path || !out)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_estimate_memory: path and out must not be NULL");
    dsr1_memory_estimate e;
    memset(&e, 0, sizeof e);
    dsr1_model_params p;
    dsr1_model *m;
    dsr1_status st = read_params(model_params, &p);
    if (st || (st = dsri_struct_write(out, &e, sizeof e, "dsr1_memory_estimate")) || (st = map_file(path, &m)))
        return st;
    m->sizes_only = 1;
    m->vocab_only = p.vocab_only != 0;
    if (!(st = load_parsed(m, &p))) {
        e.file_bytes = m->n_bytes;
        if (!m->vocab_only && m->arch) {
            e.weight_bytes = dsr1_model_size_bytes(m);
            dsr1_context_params cp;
            dsri_ctx_sizes sz;
            if (!(st = dsri_ctx_resolve_params(m, ctx_params, &cp)) && !(st = dsri_ctx_sizes_of(m, &cp, &sz))) {
                e.kv_bytes_per_token = sz.kv_bytes_per_token;
                e.kv_bytes = sz.kv_bytes;
                e.scratch_bytes = sz.scratch_bytes + sz.other_bytes; /* < 2^63 each: no overflow */
                e.n_ctx = cp.n_ctx;
                e.n_batch = cp.n_batch;
            }
        }
    }
    dsr1_model_free(m);
    return st ? st : dsri_struct_write(out, &e, sizeof e, "dsr1_memory_estimate");
}

dsr1_status dsr1_model_load_from_memory(const void *data, size_t size, const dsr1_model_params *params,
                                        dsr1_model **out_model)
{
    if (!out_model)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_load_from_memory: out_model is NULL");
    *out_model = NULL;
    if (!data || size == 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_model_load_from_memory: empty buffer");
    dsr1_model_params p;
    dsr1_status st = read_params(params, &p);
    if (st)
        return st;
    dsr1_model *m = dsri_calloc(1, sizeof *m);
    if (!m)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "out of memory");
    m->bytes = data;
    m->n_bytes = size;
    return finish_load(m, &p, out_model);
}

void dsr1_model_free(dsr1_model *m)
{
    if (!m)
        return;
    if (m->tensor_names) {
        for (uint64_t i = 0; i < dsri_gguf_tensor_count(m->gguf); i++)
            dsri_free(m->tensor_names[i]);
        dsri_free(m->tensor_names);
    }
    for (int i = 0; i < m->n_owned; i++)
        dsri_free(m->owned[i]);
    dsri_free(m->owned);
    dsri_model_unplace(m);
    dsri_free(m->layers);
    dsri_vocab_free(m->vocab);
    dsri_gguf_free(m->gguf);
    if (m->map)
        munmap(m->map, m->map_size);
    dsri_free(m);
}

const struct dsri_vocab *dsri_model_vocab(const dsr1_model *model)
{
    return model ? model->vocab : NULL;
}

const char *dsr1_model_arch(const dsr1_model *m) { return m ? m->arch_name : ""; }
int32_t dsr1_model_n_vocab(const dsr1_model *m) { return m ? (m->vocab ? dsri_vocab_n_tokens(m->vocab) : m->hp.n_vocab) : 0; }
int32_t dsr1_model_n_ctx_train(const dsr1_model *m) { return m ? m->hp.n_ctx_train : 0; }
int32_t dsr1_model_n_embd(const dsr1_model *m) { return m ? m->hp.n_embd : 0; }
int32_t dsr1_model_n_layer(const dsr1_model *m) { return m ? m->hp.n_layer : 0; }
int32_t dsr1_model_n_head(const dsr1_model *m) { return m ? m->hp.n_head : 0; }
int32_t dsr1_model_n_head_kv(const dsr1_model *m) { return m ? m->hp.n_head_kv : 0; }

uint64_t dsr1_model_n_params(const dsr1_model *m)
{
    uint64_t n = 0;
    for (uint64_t i = 0; m && i < dsri_gguf_tensor_count(m->gguf); i++) {
        const dsri_gguf_tensor *t = dsri_gguf_tensor_at(m->gguf, i);
        /* the parser bounds each product by INT64_MAX; the sum saturates
         * (tensors may overlap in a file, so it is not bounded by its size) */
        uint64_t e = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
        n = e > UINT64_MAX - n ? UINT64_MAX : n + e;
    }
    return n;
}

uint64_t dsr1_model_size_bytes(const dsr1_model *m)
{
    uint64_t n = 0;
    for (uint64_t i = 0; m && i < dsri_gguf_tensor_count(m->gguf); i++) {
        uint64_t b = dsri_gguf_tensor_at(m->gguf, i)->n_bytes;
        n = b > UINT64_MAX - n ? UINT64_MAX : n + b;
    }
    return n;
}
