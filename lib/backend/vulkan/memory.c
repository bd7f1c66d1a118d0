/*
 * Device memory: buffers with their own allocation (buf_new: activations,
 * KV cache), weights placed into shared blocks (place), and the device's
 * transfer command buffer that fills them when the memory cannot be mapped.
 *
 * Everything here runs under dev->lock: the device is shared by every
 * context of a model.
 */
#include <stdio.h>
#include <string.h>

#include "backend/vulkan/vk_internal.h"
#include "core/alloc.h"
#include "quant/iq_tables.h"
#include "quant/quant.h"
/* the table buffer's layout, shared with the shaders (valid C) */
#include "backend/vulkan/shaders/iq_tables.glsl"

#define MIB (1024.0 * 1024.0)
#define BLOCK_MIN ((uint64_t)256 << 20) /* a new block holds at least this much (fewer allocations) */
#define STAGING_BYTES ((uint64_t)16 << 20)
#define ALL_USES (VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT)

struct vk_block {
    VkDeviceMemory memory;
    uint64_t size, used;
    uint8_t *mapped;
    vk_block *next;
};

/* the device's transfer resources, created on first use */
typedef struct vk_xfer {
    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkFence fence;
    vk_part staging;
} vk_xfer;

static dsr1_status out_of_memory(dsri_device *dev, uint64_t bytes, const char *what)
{
    return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan device '%s': %s needs %.1f MiB, device has %.1f MiB",
                      dev->phys.props.deviceName, what, (double)(dev->allocated + bytes) / MIB,
                      (double)vk_physical_memory(&dev->phys) / MIB);
}

/* A memory type allowed by `bits` with the flags of `type`; `type` itself first. */
static int find_type(const dsri_device *dev, uint32_t bits, int type)
{
    VkFlags want = dev->phys.mem.memoryTypes[type].propertyFlags;
    if (bits >> type & 1u)
        return type;
    for (uint32_t i = 0; i < dev->phys.mem.memoryTypeCount; i++)
        if ((bits >> i & 1u) && (dev->phys.mem.memoryTypes[i].propertyFlags & want) == want)
            return (int)i;
    return -1;
}

static VkResult allocate(dsri_device *dev, uint64_t bytes, int type, VkDeviceMemory *out)
{
    /* Drivers may over-commit (lavapipe's heap is host memory): keep to the heap's size. */
    uint32_t heap = dev->phys.mem.memoryTypes[type].heapIndex;
    if (dev->allocated + bytes > dev->phys.mem.memoryHeaps[heap].size)
        return VK_ERROR_OUT_OF_DEVICE_MEMORY;
    VkMemoryAllocateInfo ai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, NULL, bytes, (uint32_t)type};
    VkResult r = dev->api.vkAllocateMemory(dev->device, &ai, NULL, out);
    if (r == VK_SUCCESS)
        dev->allocated += bytes;
    return r;
}

static void release(dsri_device *dev, VkDeviceMemory mem, uint64_t bytes)
{
    dev->api.vkFreeMemory(dev->device, mem, NULL);
    dev->allocated -= bytes;
}

static VkResult make_buffer(dsri_device *dev, uint64_t bytes, VkFlags usage, VkBuffer *out, VkMemoryRequirements *req)
{
    /* whole 32-bit words: shaders read quantized rows (of any even size) as
     * uint[], so a binding ends on a word boundary past the last byte */
    VkBufferCreateInfo bi = {VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, NULL, 0, (bytes + 3) / 4 * 4, usage,
                             VK_SHARING_MODE_EXCLUSIVE, 0, NULL};
    VkResult r = dev->api.vkCreateBuffer(dev->device, &bi, NULL, out);
    if (r == VK_SUCCESS)
        dev->api.vkGetBufferMemoryRequirements(dev->device, *out, req);
    else
        *out = 0;
    return r;
}

dsr1_status vk_part_new(dsri_device *dev, uint64_t bytes, int type, int map, VkFlags usage, vk_part *out)
{
    memset(out, 0, sizeof *out);
    VkMemoryRequirements req;
    VkResult r = make_buffer(dev, bytes, usage, &out->buffer, &req);
    if (r != VK_SUCCESS)
        return vk_result_error(r, "creating a buffer");
    out->size = bytes;
    int t = find_type(dev, req.memoryTypeBits, type);
    if (t < 0) {
        vk_part_free(dev, out);
        return dsri_error(DSR1_ERR_UNSUPPORTED, "Vulkan: no memory type fits a storage buffer");
    }
    r = allocate(dev, req.size, t, &out->own_memory);
    if (r != VK_SUCCESS) {
        out->own_memory = 0;
        vk_part_free(dev, out);
        if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
            return out_of_memory(dev, req.size, "a buffer");
        return vk_result_error(r, "allocating device memory");
    }
    out->own_bytes = req.size;
    r = dev->api.vkBindBufferMemory(dev->device, out->buffer, out->own_memory, 0);
    void *p = NULL;
    if (r == VK_SUCCESS && map)
        r = dev->api.vkMapMemory(dev->device, out->own_memory, 0, VK_WHOLE_SIZE, 0, &p);
    if (r != VK_SUCCESS) {
        vk_part_free(dev, out);
        return vk_result_error(r, "binding or mapping device memory");
    }
    out->mapped = p;
    return DSR1_OK;
}

void vk_part_free(dsri_device *dev, vk_part *p)
{
    if (p->buffer)
        dev->api.vkDestroyBuffer(dev->device, p->buffer, NULL);
    if (p->own_memory)
        release(dev, p->own_memory, p->own_bytes);
    memset(p, 0, sizeof *p);
}

/* ---- the transfer command buffer ---- */

static void xfer_free(dsri_device *dev)
{
    vk_xfer *x = dev->xfer;
    if (!x)
        return;
    if (x->fence)
        dev->api.vkDestroyFence(dev->device, x->fence, NULL);
    if (x->pool)
        dev->api.vkDestroyCommandPool(dev->device, x->pool, NULL);
    vk_part_free(dev, &x->staging);
    dsri_free(x);
    dev->xfer = NULL;
}

static dsr1_status xfer_ready(dsri_device *dev)
{
    VkResult r = VK_SUCCESS;
    if (!dev->xfer) {
        vk_xfer *x = dev->xfer = dsri_calloc(1, sizeof *x);
        if (!x)
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of memory");
        VkCommandPoolCreateInfo pi = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, NULL,
                                      VK_COMMAND_POOL_CREATE_TRANSIENT_BIT, dev->phys.queue_family};
        VkFenceCreateInfo fi = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, NULL, 0};
        r = dev->api.vkCreateCommandPool(dev->device, &pi, NULL, &x->pool);
        if (r == VK_SUCCESS) {
            VkCommandBufferAllocateInfo ai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, x->pool,
                                              VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
            r = dev->api.vkAllocateCommandBuffers(dev->device, &ai, &x->cmd);
        }
        if (r == VK_SUCCESS)
            r = dev->api.vkCreateFence(dev->device, &fi, NULL, &x->fence);
        if (r != VK_SUCCESS) {
            xfer_free(dev);
            return vk_result_error(r, "creating the transfer queue");
        }
    }
    return DSR1_OK;
}

static dsr1_status xfer_begin(dsri_device *dev)
{
    dsr1_status st = xfer_ready(dev);
    if (st)
        return st;
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL,
                                   VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT, NULL};
    VkResult r = dev->api.vkResetCommandPool(dev->device, dev->xfer->pool, 0);
    if (r == VK_SUCCESS)
        r = dev->api.vkBeginCommandBuffer(dev->xfer->cmd, &bi);
    return r == VK_SUCCESS ? DSR1_OK : vk_result_error(r, "recording a transfer");
}

static dsr1_status xfer_run(dsri_device *dev)
{
    VkResult r = dev->api.vkEndCommandBuffer(dev->xfer->cmd);
    if (r == VK_SUCCESS)
        r = vk_submit_wait(dev, dev->xfer->cmd, dev->xfer->fence, 1);
    return r == VK_SUCCESS ? DSR1_OK : vk_result_error(r, "a transfer");
}

/* Copy n rows of row_bytes (src rows src_stride apart) to byte `offset` of
 * a buffer that cannot be mapped, through the staging buffer. */
static dsr1_status xfer_write(dsri_device *dev, VkBuffer dst, uint64_t offset, const uint8_t *src,
                              uint64_t src_stride, uint64_t row_bytes, int64_t n)
{
    if (!dev->xfer || !dev->xfer->staging.buffer) {
        dsr1_status st = xfer_ready(dev);
        if (st)
            return st;
        st = vk_part_new(dev, STAGING_BYTES, dev->host_type, 1, VK_BUFFER_USAGE_TRANSFER_SRC_BIT, &dev->xfer->staging);
        if (st)
            return st;
    }
    int64_t rows_per_chunk = (int64_t)(STAGING_BYTES / row_bytes);
    for (int64_t r0 = 0; r0 < n; r0 += rows_per_chunk) {
        int64_t m = n - r0 < rows_per_chunk ? n - r0 : rows_per_chunk;
        if (row_bytes > STAGING_BYTES)
            return dsri_error(DSR1_ERR_UNSUPPORTED, "Vulkan: a row of %llu bytes is too long to stage",
                              (unsigned long long)row_bytes);
        for (int64_t i = 0; i < m; i++)
            memcpy(dev->xfer->staging.mapped + (uint64_t)i * row_bytes, src + (uint64_t)(r0 + i) * src_stride,
                   row_bytes);
        dsr1_status st = xfer_begin(dev);
        if (st)
            return st;
        VkBufferCopy c = {0, offset + (uint64_t)r0 * row_bytes, (uint64_t)m * row_bytes};
        dev->api.vkCmdCopyBuffer(dev->xfer->cmd, dev->xfer->staging.buffer, dst, 1, &c);
        st = xfer_run(dev);
        if (st)
            return st;
    }
    return DSR1_OK;
}

/* ---- buffers ---- */

dsr1_status vk_buf_new(dsri_device *dev, uint64_t bytes, dsri_buf **out)
{
    if (bytes == 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "Vulkan: a buffer of 0 bytes");
    vk_buf *vb = dsri_calloc(1, sizeof *vb);
    vk_part *part = dsri_calloc(1, sizeof *part);
    if (!vb || !part) {
        dsri_free(vb);
        dsri_free(part);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of memory");
    }
    pthread_mutex_lock(&dev->lock);
    dsr1_status st = vk_part_new(dev, bytes, dev->memory_type, dev->mappable, ALL_USES, part);
    if (!st && part->mapped) {
        memset(part->mapped, 0, bytes); /* buffers start zeroed; fresh memory is not */
    } else if (!st) {
        st = xfer_begin(dev);
        if (!st) {
            dev->api.vkCmdFillBuffer(dev->xfer->cmd, part->buffer, 0, VK_WHOLE_SIZE, 0);
            st = xfer_run(dev);
        }
        if (st)
            vk_part_free(dev, part);
    }
    pthread_mutex_unlock(&dev->lock);
    if (st) {
        dsri_free(vb);
        dsri_free(part);
        return st;
    }
    vb->pub.dev = dev;
    vb->pub.size = bytes;
    vb->pub.impl = vb;
    vb->n_parts = 1;
    vb->parts = part;
    *out = &vb->pub;
    return DSR1_OK;
}

static void parts_free(dsri_device *dev, vk_buf *vb)
{
    for (int i = 0; i < vb->n_parts; i++)
        vk_part_free(dev, &vb->parts[i]);
    dsri_free(vb->parts);
    dsri_free(vb);
}

void vk_buf_free(dsri_buf *buf)
{
    if (!buf)
        return;
    dsri_device *dev = buf->dev;
    pthread_mutex_lock(&dev->lock);
    parts_free(dev, buf->impl);
    pthread_mutex_unlock(&dev->lock);
}

/* ---- placed weights ---- */

/* Room for a buffer with these requirements: the offset in *block. */
static dsr1_status block_fit(dsri_device *dev, const VkMemoryRequirements *req, vk_block **block, uint64_t *offset)
{
    vk_block *b = dev->blocks;
    if (b) {
        uint64_t at = (b->used + req->alignment - 1) / req->alignment * req->alignment;
        if (at + req->size <= b->size && (req->memoryTypeBits >> dev->memory_type & 1u)) {
            *block = b;
            *offset = at;
            return DSR1_OK;
        }
    }
    int t = find_type(dev, req->memoryTypeBits, dev->memory_type);
    if (t < 0)
        return dsri_error(DSR1_ERR_UNSUPPORTED, "Vulkan: no memory type fits a storage buffer");
    uint64_t size = req->size > BLOCK_MIN ? req->size : BLOCK_MIN;
    if (size > dev->block_size)
        size = req->size;
    b = dsri_calloc(1, sizeof *b);
    if (!b)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of memory");
    VkResult r = allocate(dev, size, t, &b->memory);
    if (r != VK_SUCCESS && size > req->size) {
        size = req->size; /* the last weights may still fit exactly */
        r = allocate(dev, size, t, &b->memory);
    }
    void *p = NULL;
    if (r == VK_SUCCESS && dev->mappable) {
        r = dev->api.vkMapMemory(dev->device, b->memory, 0, VK_WHOLE_SIZE, 0, &p);
        if (r != VK_SUCCESS)
            release(dev, b->memory, size);
    }
    if (r != VK_SUCCESS) {
        dsri_free(b);
        if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
            return out_of_memory(dev, req->size, "placing the weights");
        return vk_result_error(r, "allocating device memory");
    }
    b->size = size;
    b->mapped = p;
    b->next = dev->blocks;
    dev->blocks = b;
    *block = b;
    *offset = 0;
    return DSR1_OK;
}

/* Parts of rows_per_part rows for src, bound in blocks and filled. */
static dsr1_status place_parts(dsri_device *dev, const dsri_tensor *src, uint64_t row_bytes, int64_t rows_per_part,
                               vk_buf *vb)
{
    for (int i = 0; i < vb->n_parts; i++) {
        int64_t r0 = (int64_t)i * rows_per_part;
        int64_t n = src->rows - r0 < rows_per_part ? src->rows - r0 : rows_per_part;
        vk_part *p = &vb->parts[i];
        p->begin = (uint64_t)r0 * row_bytes;
        p->size = (uint64_t)n * row_bytes;
        VkMemoryRequirements req;
        VkResult r = make_buffer(dev, p->size, ALL_USES, &p->buffer, &req);
        if (r != VK_SUCCESS)
            return vk_result_error(r, "creating a buffer");
        vk_block *b = NULL;
        uint64_t at = 0;
        dsr1_status st = block_fit(dev, &req, &b, &at);
        if (st)
            return st;
        r = dev->api.vkBindBufferMemory(dev->device, p->buffer, b->memory, at);
        if (r != VK_SUCCESS)
            return vk_result_error(r, "binding device memory");
        b->used = at + req.size;
        const uint8_t *from = (const uint8_t *)dsri_host_ptr(src) + (uint64_t)r0 * src->stride;
        if (b->mapped) {
            p->mapped = b->mapped + at;
            for (int64_t k = 0; k < n; k++)
                memcpy(p->mapped + (uint64_t)k * row_bytes, from + (uint64_t)k * src->stride, row_bytes);
        } else {
            st = xfer_write(dev, p->buffer, 0, from, src->stride, row_bytes, n);
            if (st)
                return st;
        }
    }
    return DSR1_OK;
}

dsr1_status vk_place(dsri_device *dev, const dsri_tensor *src, dsri_tensor *out)
{
    uint64_t row_bytes = dsri_tensor_row_bytes(src);
    if (!src->buf || !src->buf->host || row_bytes == 0 || src->rows <= 0)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "Vulkan: place needs a host tensor of a known type");
    if (!vk_mm_has_kernel(src->type)) {
        const dsri_type_traits *tt = dsri_type_traits_get(src->type);
        return dsri_error(DSR1_ERR_UNSUPPORTED,
                          "Vulkan: no shader reads %s weights yet; offload fewer layers (n_gpu_layers) or use a file "
                          "of another weight type", tt ? tt->name : "these");
    }
    uint64_t total = row_bytes * (uint64_t)src->rows;
    int64_t rows_per_part = (int64_t)(dev->block_size / row_bytes);
    if (rows_per_part == 0)
        return dsri_error(DSR1_ERR_UNSUPPORTED, "Vulkan: a weight row of %llu bytes exceeds one allocation",
                          (unsigned long long)row_bytes);
    pthread_mutex_lock(&dev->lock);
    uint32_t heap = dev->phys.mem.memoryTypes[dev->memory_type].heapIndex;
    if (dev->allocated + total > dev->phys.mem.memoryHeaps[heap].size) {
        dsr1_status st = out_of_memory(dev, total, "placing the weights");
        pthread_mutex_unlock(&dev->lock);
        return st;
    }
    vk_buf *vb = dsri_calloc(1, sizeof *vb);
    int n_parts = (int)((src->rows + rows_per_part - 1) / rows_per_part);
    vk_part *parts = dsri_calloc((size_t)n_parts, sizeof *parts);
    dsr1_status st = DSR1_OK;
    if (!vb || !parts) {
        dsri_free(vb);
        dsri_free(parts);
        st = dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of memory");
    } else {
        vb->parts = parts;
        vb->n_parts = n_parts;
        st = place_parts(dev, src, row_bytes, rows_per_part, vb);
        if (st) {
            parts_free(dev, vb); /* the blocks stay for the next weights; close frees them */
        } else {
            vb->pub.dev = dev;
            vb->pub.size = total;
            vb->pub.impl = vb;
            vb->next_placed = dev->placed;
            dev->placed = vb;
        }
    }
    pthread_mutex_unlock(&dev->lock);
    if (st)
        return st;
    dsri_tensor t = {&vb->pub, 0, src->type, src->cols, src->rows, row_bytes};
    *out = t;
    return DSR1_OK;
}

/* ---- the IQ types' tables ---- */

_Static_assert(IQT_IQ2XXS - IQT_KSIGNS == sizeof dsri_ksigns_iq2xs / 4 &&
                   IQT_IQ2XS - IQT_IQ2XXS == sizeof dsri_iq2xxs_grid / 4 &&
                   IQT_IQ2S - IQT_IQ2XS == sizeof dsri_iq2xs_grid / 4 &&
                   IQT_IQ3XXS - IQT_IQ2S == sizeof dsri_iq2s_grid / 4 &&
                   IQT_IQ3S - IQT_IQ3XXS == sizeof dsri_iq3xxs_grid / 4 &&
                   IQT_IQ1S - IQT_IQ3S == sizeof dsri_iq3s_grid / 4 &&
                   IQT_WORDS - IQT_IQ1S == sizeof dsri_iq1s_grid / 4,
               "shaders/iq_tables.glsl's layout does not fit lib/quant/iq_tables.c");

int vk_type_reads_iq_tables(uint32_t type)
{
    switch (type) {
    case DSRI_TYPE_IQ1_S: case DSRI_TYPE_IQ1_M: case DSRI_TYPE_IQ2_XXS: case DSRI_TYPE_IQ2_XS:
    case DSRI_TYPE_IQ2_S: case DSRI_TYPE_IQ3_XXS: case DSRI_TYPE_IQ3_S: return 1;
    default: return 0;
    }
}

static void put_grid64(uint32_t *w, const uint64_t *grid, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        w[2 * i] = (uint32_t)grid[i];
        w[2 * i + 1] = (uint32_t)(grid[i] >> 32);
    }
}

/* The words of the table buffer, laid out as iq_tables.glsl says. */
static void iq_tables_fill(uint32_t *w)
{
    for (size_t i = 0; i < sizeof dsri_ksigns_iq2xs; i += 4)
        w[IQT_KSIGNS + i / 4] = (uint32_t)dsri_ksigns_iq2xs[i] | (uint32_t)dsri_ksigns_iq2xs[i + 1] << 8 |
                                (uint32_t)dsri_ksigns_iq2xs[i + 2] << 16 | (uint32_t)dsri_ksigns_iq2xs[i + 3] << 24;
    put_grid64(w + IQT_IQ2XXS, dsri_iq2xxs_grid, 256);
    put_grid64(w + IQT_IQ2XS, dsri_iq2xs_grid, 512);
    put_grid64(w + IQT_IQ2S, dsri_iq2s_grid, 1024);
    memcpy(w + IQT_IQ3XXS, dsri_iq3xxs_grid, sizeof dsri_iq3xxs_grid);
    memcpy(w + IQT_IQ3S, dsri_iq3s_grid, sizeof dsri_iq3s_grid);
    put_grid64(w + IQT_IQ1S, dsri_iq1s_grid, 2048);
}

/* The device's table buffer, made and filled once (under dev->lock). */
static dsr1_status iq_tables_ready(dsri_device *dev)
{
    if (dev->iq_tables.buffer)
        return DSR1_OK;
    const uint64_t bytes = IQT_WORDS * 4;
    uint32_t *w = dsri_malloc(bytes);
    if (!w)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of memory");
    iq_tables_fill(w);
    dsr1_status st = vk_part_new(dev, bytes, dev->memory_type, dev->mappable, ALL_USES, &dev->iq_tables);
    if (!st && dev->iq_tables.mapped)
        memcpy(dev->iq_tables.mapped, w, bytes);
    else if (!st)
        st = xfer_write(dev, dev->iq_tables.buffer, 0, (const uint8_t *)w, bytes, bytes, 1);
    if (st)
        vk_part_free(dev, &dev->iq_tables);
    dsri_free(w);
    return st;
}

int vk_bind_iq_tables(dsri_backend *be, uint32_t type, vk_view *views, int n)
{
    if (!vk_type_reads_iq_tables(type))
        return n;
    if (be->status)
        return 0;
    dsri_device *dev = be->dev;
    pthread_mutex_lock(&dev->lock);
    dsr1_status st = iq_tables_ready(dev);
    VkBuffer buffer = dev->iq_tables.buffer;
    pthread_mutex_unlock(&dev->lock);
    if (st) {
        vk_fail(be, st, "%s", dsr1_last_error());
        return 0;
    }
    views[n] = (vk_view){buffer, 0, IQT_WORDS * 4, 0, 1};
    return n + 1;
}

void vk_memory_release_all(dsri_device *dev)
{
    vk_part_free(dev, &dev->iq_tables);
    while (dev->placed) {
        vk_buf *vb = dev->placed;
        dev->placed = vb->next_placed;
        parts_free(dev, vb);
    }
    while (dev->blocks) {
        vk_block *b = dev->blocks;
        dev->blocks = b->next;
        release(dev, b->memory, b->size);
        dsri_free(b);
    }
    xfer_free(dev);
}
