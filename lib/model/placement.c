/*
 * Placement: which backend computes which layer, decided once per model.
 *
 * Every weight starts as a view into the mapped file (the host's placement,
 * m->host_w). With dsr1_model_params.n_gpu_layers > 0 the last n layers (the
 * MTP block with them) and the output head are copied once into a device's
 * memory (m->device.w); every context of the model then runs those layers
 * there and shares the copies. The rest stays on the host backend each
 * context picks. With experts_on_host (dsr1_model_params.cpu_moe) the
 * routed experts of the placed layers are not copied: the device layer's
 * ffn_*_exps stay views of the file, and the forward pass hands that part
 * of the layer to the host backend (dsri_ctx_expert_run).
 */
#include <string.h>

#include "backend/devices.h"
#include "core/alloc.h"
#include "core/error.h"
#include "core/log.h"
#include "model/model.h"
#include "quant/quant.h"

/* dsri_layer is nothing but tensors: placing one is placing each. */
#define LAYER_TENSORS ((int)(sizeof(dsri_layer) / sizeof(dsri_tensor)))

static uint64_t tensor_bytes(const dsri_tensor *t)
{
    return t->buf ? (uint64_t)t->rows * dsri_row_size(t->type, t->cols) : 0;
}

static dsr1_status place_one(dsr1_model *m, const dsri_tensor *src, dsri_tensor *dst)
{
    if (!src->buf) {
        *dst = *src;
        return DSR1_OK;
    }
    return m->device.ops->place(m->device.dev, src, dst);
}

/* A model with tied embeddings reads its output head from the embedding
 * table (the same bytes of the file): the device keeps one copy. */
static int output_is_embedding(const dsr1_model *m)
{
    return m->output.buf && m->output.buf == m->tok_embd.buf && m->output.offset == m->tok_embd.offset &&
           m->output.type == m->tok_embd.type && m->output.rows == m->tok_embd.rows &&
           m->output.cols == m->tok_embd.cols;
}

static void layer_tensors(const dsri_layer *L, const dsri_tensor **out)
{
    const dsri_tensor *t = (const dsri_tensor *)(const void *)L;
    for (int i = 0; i < LAYER_TENSORS; i++)
        out[i] = &t[i];
}

/* Whether t, one of layer L's tensors, holds routed experts. */
static int is_routed_expert(const dsri_layer *L, const dsri_tensor *t)
{
    return t == &L->ffn_gate_exps || t == &L->ffn_up_exps || t == &L->ffn_down_exps;
}

dsr1_status dsri_model_place(dsr1_model *m, const dsri_backend_ops *ops, int index, int first_layer,
                             int experts_on_host)
{
    const int n_all = m->hp.n_layer + m->hp.n_nextn_layers;
    dsri_placement *p = &m->device;
    dsr1_status st = ops->device_open(index, &p->dev);
    if (st)
        return st;
    p->ops = ops;
    p->device_index = index;
    p->first_layer = first_layer;
    p->experts_on_host = experts_on_host && m->hp.n_expert > 0;

    /* what the device must hold, against what it has, before copying */
    const int shared_head = first_layer == 0 && output_is_embedding(m);
    uint64_t need = tensor_bytes(&m->output_norm) + tensor_bytes(&m->rope_freq_t);
    if (first_layer == 0)
        need += tensor_bytes(&m->tok_embd);
    if (!shared_head)
        need += tensor_bytes(&m->output);
    for (int l = first_layer; l < n_all; l++) {
        const dsri_tensor *t[LAYER_TENSORS];
        layer_tensors(&m->layers[l], t);
        for (int i = 0; i < LAYER_TENSORS; i++)
            if (!(p->experts_on_host && is_routed_expert(&m->layers[l], t[i])))
                need += tensor_bytes(t[i]);
    }
    dsri_device_desc desc;
    uint64_t have = ops->device_free_memory(p->dev);
    if (ops->device_describe(index, &desc) == DSR1_OK && have > 0 && need > have)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "model: %d layers on '%s' need %.0f MiB, the device has %.0f MiB",
                          n_all - first_layer, desc.name, (double)need / 1048576.0, (double)have / 1048576.0);

    p->w.layers = dsri_calloc((size_t)n_all, sizeof *p->w.layers);
    if (!p->w.layers)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "model: out of memory");
    if ((first_layer == 0 && (st = place_one(m, &m->tok_embd, &p->w.tok_embd))) ||
        (st = place_one(m, &m->output_norm, &p->w.output_norm)) ||
        (!shared_head && (st = place_one(m, &m->output, &p->w.output))) ||
        (st = place_one(m, &m->rope_freq_t, &p->w.rope_freq)))
        return st;
    if (shared_head)
        p->w.output = p->w.tok_embd;
    for (int l = first_layer; l < n_all; l++) {
        const dsri_tensor *src[LAYER_TENSORS], *dst[LAYER_TENSORS];
        layer_tensors(&m->layers[l], src);
        layer_tensors(&p->w.layers[l], dst);
        for (int i = 0; i < LAYER_TENSORS; i++) {
            if (p->experts_on_host && is_routed_expert(&m->layers[l], src[i]))
                *(dsri_tensor *)dst[i] = *src[i];
            else if ((st = place_one(m, src[i], (dsri_tensor *)dst[i])))
                return st;
        }
    }
    dsri_log(&m->log, DSR1_LOG_INFO, "model: layers %d..%d%s and the output head on %s device %d (%.1f MiB)",
             first_layer, n_all - 1, p->experts_on_host ? " but their routed experts" : "", ops->name, index,
             (double)need / 1048576.0);
    return DSR1_OK;
}

void dsri_model_unplace(dsr1_model *m)
{
    dsri_placement *p = &m->device;
    dsri_free(p->w.layers);
    if (p->dev)
        p->ops->device_close(p->dev); /* frees what place() allocated */
    memset(p, 0, sizeof *p);
}

dsr1_status dsri_model_place_from_params(dsr1_model *m, int32_t n_gpu_layers, const char *device, int32_t cpu_moe)
{
    if (n_gpu_layers == 0 || m->vocab_only)
        return DSR1_OK;
    int device_index, index = 0;
    dsr1_status st = dsri_device_choose(device, &device_index);
    if (st)
        return st;
    const dsri_backend_ops *ops = dsri_device_backend(device_index, &index);
    if (!ops)
        return dsri_error(DSR1_ERR_INTERNAL, "model: device %d has no backend", device_index);
    int n = n_gpu_layers < 0 || n_gpu_layers > m->hp.n_layer ? m->hp.n_layer : n_gpu_layers;
    return dsri_model_place(m, ops, index, m->hp.n_layer - n, cpu_moe != 0);
}
