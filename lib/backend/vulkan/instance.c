/*
 * A Vulkan backend instance (one per context): ops are recorded into one
 * command buffer, with descriptor sets from the instance's pools and small
 * host arrays copied into its host-visible ring; sync submits the batch,
 * waits and recycles all of it. Pools and ring chunks are added when a batch
 * needs more and kept for the next batches, so a steady forward pass
 * allocates nothing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backend/vulkan/vk_internal.h"
#include "core/alloc.h"

#define SETS_PER_POOL 512u
#define RING_CHUNK ((uint64_t)4 << 20)
#define FENCE_TIMEOUT_NS (600ull * 1000000000ull)

#define WRITES (VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT)
#define SHADER_ACCESS (VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT)
#define TRANSFER_ACCESS (VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT)
#define STAGES (VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT)

dsr1_status vk_fail(dsri_backend *be, dsr1_status status, const char *fmt, ...)
{
    if (be->status == DSR1_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(be->message, sizeof be->message, fmt, ap);
        va_end(ap);
        be->status = status;
    }
    return be->status;
}

static const vk_api *api_of(const dsri_backend *be) { return &be->dev->api; }

/* ---- creation ---- */

static int add_pool(dsri_backend *be)
{
    if (be->n_pools == VK_MAX_POOLS)
        return 0;
    VkDescriptorPoolSize size = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, SETS_PER_POOL * DSRI_VK_MAX_BINDINGS};
    VkDescriptorPoolCreateInfo ci = {VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, NULL, 0, SETS_PER_POOL, 1, &size};
    if (api_of(be)->vkCreateDescriptorPool(be->dev->device, &ci, NULL, &be->pools[be->n_pools]) != VK_SUCCESS)
        return 0;
    be->n_pools++;
    return 1;
}

static int add_chunk(dsri_backend *be, uint64_t bytes)
{
    if (be->n_chunks == VK_MAX_CHUNKS)
        return 0;
    uint64_t size = bytes > RING_CHUNK ? bytes : RING_CHUNK;
    pthread_mutex_lock(&be->dev->lock);
    dsr1_status st = vk_part_new(be->dev, size, be->dev->host_type, 1,
                                 VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                     VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                                 &be->chunks[be->n_chunks]);
    pthread_mutex_unlock(&be->dev->lock);
    if (st)
        return 0;
    be->n_chunks++;
    return 1;
}

void vk_destroy(dsri_backend *be)
{
    if (!be)
        return;
    const vk_api *api = api_of(be);
    VkDevice d = be->dev->device;
    if (be->recording) {
        api->vkEndCommandBuffer(be->cmd);
        be->recording = 0;
    }
    for (int i = 0; i < be->n_pools; i++)
        api->vkDestroyDescriptorPool(d, be->pools[i], NULL);
    pthread_mutex_lock(&be->dev->lock);
    for (int i = 0; i < be->n_chunks; i++)
        vk_part_free(be->dev, &be->chunks[i]);
    pthread_mutex_unlock(&be->dev->lock);
    if (be->fence)
        api->vkDestroyFence(d, be->fence, NULL);
    if (be->pool)
        api->vkDestroyCommandPool(d, be->pool, NULL);
    dsri_free(be);
}

dsr1_status vk_create(const dsri_backend_config *cfg, dsri_device *dev, dsri_backend **out)
{
    dsri_backend *be = dsri_calloc(1, sizeof *be);
    if (!be)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of memory");
    be->dev = dev;
    be->cfg = *cfg;
    const vk_api *api = &dev->api;
    VkCommandPoolCreateInfo pi = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, NULL, VK_COMMAND_POOL_CREATE_TRANSIENT_BIT,
                                  dev->phys.queue_family};
    VkFenceCreateInfo fi = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, NULL, 0};
    VkResult r = api->vkCreateCommandPool(dev->device, &pi, NULL, &be->pool);
    if (r == VK_SUCCESS) {
        VkCommandBufferAllocateInfo ai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, be->pool,
                                          VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
        r = api->vkAllocateCommandBuffers(dev->device, &ai, &be->cmd);
    }
    if (r == VK_SUCCESS)
        r = api->vkCreateFence(dev->device, &fi, NULL, &be->fence);
    if (r != VK_SUCCESS) {
        vk_destroy(be);
        return vk_result_error(r, "creating an instance");
    }
    if (!add_pool(be) || !add_chunk(be, RING_CHUNK)) {
        vk_destroy(be);
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of memory creating an instance");
    }
    *out = be;
    return DSR1_OK;
}

/* ---- recording ---- */

static int begin(dsri_backend *be)
{
    if (be->status)
        return 0;
    if (be->recording)
        return 1;
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL,
                                   VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT, NULL};
    VkResult r = api_of(be)->vkBeginCommandBuffer(be->cmd, &bi);
    if (r != VK_SUCCESS) {
        vk_result_error(r, "recording");
        vk_fail(be, DSR1_ERR_INTERNAL, "Vulkan: vkBeginCommandBuffer failed (VkResult %d)", (int)r);
        return 0;
    }
    be->recording = 1;
    be->n_commands = 0;
    return 1;
}

/* Every command waits for the writes of the ones before it. */
static void barrier(dsri_backend *be, VkFlags dst_stage, VkFlags dst_access)
{
    if (be->n_commands == 0)
        return;
    VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL, WRITES, dst_access};
    api_of(be)->vkCmdPipelineBarrier(be->cmd, STAGES, dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

uint64_t vk_align(const dsri_backend *be)
{
    uint64_t a = vk_limits(be->dev)->minStorageBufferOffsetAlignment;
    return a > 4 ? a : 4;
}

/* `bytes` of ring space: the chunk and offset. */
static vk_part *ring_take(dsri_backend *be, uint64_t bytes, uint64_t *offset)
{
    uint64_t align = vk_align(be);
    for (;;) {
        vk_part *c = &be->chunks[be->chunk];
        uint64_t at = (be->ring_used + align - 1) / align * align;
        if (at + bytes <= c->size) {
            be->ring_used = at + bytes;
            *offset = at;
            return c;
        }
        if (be->chunk + 1 == be->n_chunks) {
            if (!add_chunk(be, bytes)) {
                vk_fail(be, DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of memory for %llu bytes of host data",
                        (unsigned long long)bytes);
                return NULL;
            }
        }
        be->chunk++;
        be->ring_used = 0;
    }
}

int vk_view_host(dsri_backend *be, const void *data, uint64_t bytes, vk_view *view)
{
    if (be->status)
        return 0;
    uint64_t off;
    vk_part *c = ring_take(be, bytes ? bytes : 4, &off);
    if (!c)
        return 0;
    memcpy(c->mapped + off, data, bytes);
    vk_view v = {c->buffer, off, bytes ? (bytes + 3) / 4 * 4 : 4, 0, 1};
    if (off + v.range > c->size)
        v.range = c->size - off;
    *view = v;
    return 1;
}

/* The part of t's buffer holding byte `at`. */
static const vk_part *part_at(const dsri_tensor *t, uint64_t at)
{
    const vk_buf *vb = t->buf->impl;
    for (int i = 0; i < vb->n_parts; i++)
        if (at >= vb->parts[i].begin && at < vb->parts[i].begin + vb->parts[i].size)
            return &vb->parts[i];
    return NULL;
}

int64_t vk_view_rows(dsri_backend *be, const dsri_tensor *t, int64_t first, int64_t n, vk_view *view)
{
    if (be->status)
        return 0;
    if (!t || !t->buf || t->buf->dev != be->dev) {
        vk_fail(be, DSR1_ERR_INVALID_ARGUMENT, "Vulkan: an op got a tensor that is not in this device's memory");
        return 0;
    }
    uint64_t row_bytes = dsri_tensor_row_bytes(t);
    uint64_t start = t->offset + (uint64_t)first * t->stride;
    const vk_part *p = part_at(t, start);
    if (!p || row_bytes == 0 || n <= 0) {
        vk_fail(be, DSR1_ERR_INVALID_ARGUMENT, "Vulkan: a tensor view outside its buffer (type %u, %lld rows)",
                t->type, (long long)n);
        return 0;
    }
    uint64_t in_part = start - p->begin;
    uint64_t align = vk_limits(be->dev)->minStorageBufferOffsetAlignment;
    uint64_t base = align > 1 ? in_part / align * align : in_part;
    uint64_t skip = in_part - base;
    uint64_t room = p->size - in_part; /* bytes from the first row to the part's end */
    uint64_t window = be->dev->max_binding - skip;
    if (window < room)
        room = window;
    int64_t k = 0;
    if (room >= row_bytes)
        k = t->stride ? (int64_t)((room - row_bytes) / t->stride) + 1 : n;
    if (k > n)
        k = n;
    if (k < 1) {
        vk_fail(be, DSR1_ERR_INTERNAL, "Vulkan: a row of %llu bytes does not fit one binding",
                (unsigned long long)row_bytes);
        return 0;
    }
    uint64_t range = skip + (uint64_t)(k - 1) * t->stride + row_bytes;
    range = (range + 3) / 4 * 4; /* buffers are made of whole words (memory.c) */
    if (base + range > (p->size + 3) / 4 * 4)
        range = (p->size + 3) / 4 * 4 - base;
    vk_view v = {p->buffer, base, range, (uint32_t)skip, k};
    *view = v;
    return k;
}

static VkDescriptorSet descriptor_set(dsri_backend *be, VkDescriptorSetLayout layout)
{
    for (;;) {
        VkDescriptorSetAllocateInfo ai = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, NULL, be->pools[be->pool_at], 1,
                                          &layout};
        VkDescriptorSet set = 0;
        if (be->sets_used < SETS_PER_POOL &&
            api_of(be)->vkAllocateDescriptorSets(be->dev->device, &ai, &set) == VK_SUCCESS) {
            be->sets_used++;
            return set;
        }
        if (be->pool_at + 1 == be->n_pools && !add_pool(be)) {
            vk_fail(be, DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of descriptor sets (sync more often)");
            return 0;
        }
        be->pool_at++;
        be->sets_used = 0;
    }
}

void vk_dispatch(dsri_backend *be, int shader, const vk_view *views, int n_views, const void *push,
                 uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz)
{
    if (!begin(be) || gx == 0 || gy == 0 || gz == 0)
        return;
    const vk_pipeline *p;
    dsr1_status st = vk_pipeline_get(be->dev, shader, &p);
    if (st) {
        vk_fail(be, st, "Vulkan: pipeline %s cannot be created", dsri_vk_shaders[shader].name);
        return;
    }
    const uint32_t *max = vk_limits(be->dev)->maxComputeWorkGroupCount;
    if ((uint32_t)n_views != p->n_bindings || push_bytes > 128 || gx > max[0] || gy > max[1] || gz > max[2]) {
        vk_fail(be, DSR1_ERR_INTERNAL, "Vulkan: bad dispatch of %s (%d views, %u push bytes, %ux%ux%u groups)",
                dsri_vk_shaders[shader].name, n_views, push_bytes, gx, gy, gz);
        return;
    }
    VkDescriptorSet set = descriptor_set(be, p->set_layout);
    if (!set)
        return;
    VkDescriptorBufferInfo info[DSRI_VK_MAX_BINDINGS];
    VkWriteDescriptorSet w[DSRI_VK_MAX_BINDINGS];
    for (int i = 0; i < n_views; i++) {
        VkDescriptorBufferInfo bi = {views[i].buffer, views[i].offset, views[i].range};
        VkWriteDescriptorSet wi = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, NULL, set, (uint32_t)i, 0, 1,
                                   VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, NULL, &info[i], NULL};
        info[i] = bi;
        w[i] = wi;
    }
    const vk_api *api = api_of(be);
    api->vkUpdateDescriptorSets(be->dev->device, (uint32_t)n_views, w, 0, NULL);
    barrier(be, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, SHADER_ACCESS);
    api->vkCmdBindPipeline(be->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->pipeline);
    api->vkCmdBindDescriptorSets(be->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p->layout, 0, 1, &set, 0, NULL);
    if (push_bytes)
        api->vkCmdPushConstants(be->cmd, p->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
    api->vkCmdDispatch(be->cmd, gx, gy, gz);
    be->n_commands++;
}

void vk_record_copy(dsri_backend *be, VkBuffer src, uint64_t src_offset, VkBuffer dst, uint64_t dst_offset,
                    uint64_t bytes)
{
    if (!begin(be) || bytes == 0)
        return;
    barrier(be, VK_PIPELINE_STAGE_TRANSFER_BIT, TRANSFER_ACCESS);
    VkBufferCopy c = {src_offset, dst_offset, bytes};
    api_of(be)->vkCmdCopyBuffer(be->cmd, src, dst, 1, &c);
    be->n_commands++;
}

/* ---- sync ---- */

static dsr1_status report(dsri_backend *be)
{
    if (be->status)
        return dsri_error(be->status, "%s", be->message);
    return DSR1_OK;
}

dsr1_status vk_sync(dsri_backend *be)
{
    const vk_api *api = api_of(be);
    if (be->recording) {
        be->recording = 0;
        if (be->n_commands) {
            /* the host reads results after the fence */
            VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL, WRITES, VK_ACCESS_HOST_READ_BIT};
            api->vkCmdPipelineBarrier(be->cmd, STAGES, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
        }
        VkResult r = api->vkEndCommandBuffer(be->cmd);
        if (r == VK_SUCCESS && be->status == DSR1_OK)
            r = vk_submit_wait(be->dev, be->cmd, be->fence, 0);
        if (r != VK_SUCCESS) {
            dsr1_status st = vk_result_error(r, "running the recorded work");
            vk_fail(be, st, "%s", dsr1_last_error());
        }
        api->vkResetCommandPool(be->dev->device, be->pool, 0);
        for (int i = 0; i <= be->pool_at && i < be->n_pools; i++)
            api->vkResetDescriptorPool(be->dev->device, be->pools[i], 0);
        be->pool_at = 0;
        be->sets_used = 0;
        be->chunk = 0;
        be->ring_used = 0;
        be->n_commands = 0;
    }
    int messages = atomic_load(&be->dev->api.n_messages);
    if (messages && be->status == DSR1_OK)
        vk_fail(be, DSR1_ERR_INTERNAL, "Vulkan validation reported %d message(s) (printed on stderr)", messages);
    return report(be);
}

/* ---- upload / download ---- */

/* Bytes [at, at+len) of t's buffer lie in one part: that part. */
static const vk_part *part_span(const dsri_tensor *t, uint64_t at, uint64_t len)
{
    const vk_part *p = part_at(t, at);
    return p && at + len <= p->begin + p->size ? p : NULL;
}

dsr1_status vk_upload(dsri_backend *be, const dsri_tensor *t, const void *src)
{
    if (be->status)
        return report(be);
    uint64_t row_bytes = dsri_tensor_row_bytes(t);
    const uint8_t *s = src;
    for (int64_t r = 0; r < t->rows; r++) {
        uint64_t at = t->offset + (uint64_t)r * t->stride;
        const vk_part *p = part_span(t, at, row_bytes);
        if (!p)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "Vulkan: upload outside the buffer");
        if (p->mapped && !be->recording) {
            /* nothing recorded reads or writes it yet: write it directly */
            memcpy(p->mapped + (at - p->begin), s + (uint64_t)r * row_bytes, row_bytes);
            continue;
        }
        vk_view v;
        if (!vk_view_host(be, s + (uint64_t)r * row_bytes, row_bytes, &v))
            return report(be);
        vk_record_copy(be, v.buffer, v.offset, p->buffer, at - p->begin, row_bytes);
    }
    return report(be);
}

dsr1_status vk_download(dsri_backend *be, const dsri_tensor *t, void *dst)
{
    dsr1_status st = vk_sync(be);
    if (st)
        return st;
    uint64_t row_bytes = dsri_tensor_row_bytes(t);
    uint8_t *d = dst;
    /* rows that cannot be read directly go through the ring */
    uint64_t *staged = NULL;
    for (int64_t r = 0; r < t->rows; r++) {
        uint64_t at = t->offset + (uint64_t)r * t->stride;
        const vk_part *p = part_span(t, at, row_bytes);
        if (!p)
            return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "Vulkan: download outside the buffer");
        if (p->mapped) {
            memcpy(d + (uint64_t)r * row_bytes, p->mapped + (at - p->begin), row_bytes);
            continue;
        }
        if (!staged && !(staged = dsri_calloc((size_t)t->rows, sizeof *staged)))
            return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of memory");
        uint64_t off;
        vk_part *c = ring_take(be, row_bytes, &off);
        if (!c)
            break;
        staged[r] = (uint64_t)(c - be->chunks) << 48 | off; /* chunk index and offset */
        vk_record_copy(be, p->buffer, at - p->begin, c->buffer, off, row_bytes);
    }
    if (staged) {
        /* sync recycles the ring, but what the copies wrote stays until the next op */
        st = vk_sync(be);
        for (int64_t r = 0; r < t->rows && !st; r++)
            if (!part_span(t, t->offset + (uint64_t)r * t->stride, row_bytes)->mapped) {
                const vk_part *c = &be->chunks[staged[r] >> 48];
                memcpy(d + (uint64_t)r * row_bytes, c->mapped + (staged[r] & 0xFFFFFFFFFFFFull), row_bytes);
            }
        dsri_free(staged);
        return st;
    }
    return report(be);
}
