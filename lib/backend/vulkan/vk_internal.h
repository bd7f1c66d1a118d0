/*
 * Vulkan backend internals: the loader's function table, devices, buffers,
 * instances, and the helpers the ops record with (see README-dev.md).
 *
 * Ownership:
 *   vk_api       one loaded libvulkan + VkInstance; each device opens its own
 *                (no global state: two models on two threads share nothing).
 *   dsri_device  a VkDevice with its queue, pipelines (created on first use)
 *                and the memory blocks placed weights live in; shared by all
 *                contexts of a model, so its mutable parts are under `lock`.
 *   vk_buf       a dsri_buf: one or more VkBuffers ("parts"), each a
 *                contiguous byte range of the buffer. buf_new gives one part
 *                with its own allocation; place splits a weight into parts of
 *                whole rows so no part exceeds what one binding or one
 *                allocation can hold.
 *   dsri_backend an instance (one context): a command buffer being recorded,
 *                a descriptor pool and a host ring for small arrays and
 *                uploads. Everything recorded runs at sync (or earlier when
 *                the pool or the ring fills up: then it syncs on its own).
 */
#ifndef DSRI_VK_INTERNAL_H
#define DSRI_VK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "backend/backend.h"
#include "backend/vulkan/spirv.h"
#include "backend/vulkan/vk.h"
#include "core/error.h"

/* ---- loader (loader.c) ---- */

typedef struct vk_api {
    void *lib; /* dlopen handle of libvulkan.so.1 */
    PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
#define DSRI_VK_DECL(name, ret, args) ret(*name) args;
    DSRI_VK_GLOBAL_FUNCS(DSRI_VK_DECL)
    DSRI_VK_INSTANCE_FUNCS(DSRI_VK_DECL)
    DSRI_VK_DEBUG_FUNCS(DSRI_VK_DECL)
#undef DSRI_VK_DECL
    VkInstance instance;
    VkDebugUtilsMessengerEXT messenger; /* 0: validation off */
    atomic_int n_messages;              /* validation warnings and errors seen */
} vk_api;

/* Open the loader and create an instance. With $DSR1_VK_VALIDATION=1 the
 * Khronos validation layer is enabled and every warning or error it reports
 * is printed and counted (vk_api.n_messages). No loader, no driver
 * (VK_ERROR_INCOMPATIBLE_DRIVER) or no usable device: DSR1_ERR_UNSUPPORTED
 * with the reason. */
dsr1_status vk_api_open(vk_api *api);
void vk_api_close(vk_api *api);

/* What the backend needs to know about a physical device. */
typedef struct vk_physical {
    VkPhysicalDevice handle;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem;
    uint32_t subgroup_size;
    uint64_t max_allocation; /* maxMemoryAllocationSize */
    uint32_t queue_family;   /* a family with compute */
    int has_8bit_storage, has_float16, has_int8, has_int16, has_float64, has_memory_budget;
} vk_physical;

/* Usable physical devices (Vulkan >= 1.1, a compute queue, 16-bit storage),
 * in the loader's order, at most `max`; returns how many (out may be NULL). */
int vk_physical_list(vk_api *api, vk_physical *out, int max);
/* bytes of the largest device-local heap */
uint64_t vk_physical_memory(const vk_physical *pd);

/* ---- devices and memory (device.c) ---- */

typedef struct vk_block vk_block; /* a VkDeviceMemory that placed weights are carved from */

typedef struct vk_part {
    VkBuffer buffer;
    VkDeviceMemory own_memory; /* its own allocation (buf_new), else 0 (in a block) */
    uint64_t own_bytes;        /* size of own_memory */
    uint64_t begin;            /* first byte of the dsri_buf it holds */
    uint64_t size;
    uint8_t *mapped; /* host address of the part's byte 0 when mapped, else NULL */
} vk_part;

typedef struct vk_buf {
    dsri_buf pub; /* pub.impl points back here */
    int n_parts;
    vk_part *parts;
    struct vk_buf *next_placed; /* the device's list of placed weights */
} vk_buf;

typedef struct vk_pipeline {
    VkShaderModule module;
    VkDescriptorSetLayout set_layout;
    VkPipelineLayout layout;
    VkPipeline pipeline;
    uint32_t n_bindings;
} vk_pipeline;

struct dsri_device {
    vk_api api;
    vk_physical phys;
    VkDevice device;
    VkQueue queue;
    uint32_t wg_size;       /* default workgroup size (specialization constant 0) */
    uint32_t subgroup_size; /* specialization constant 1 */
    uint64_t max_binding;   /* bytes one storage-buffer binding may cover */
    uint64_t block_size;    /* bytes of one weight block */
    int memory_type;        /* device-local type buffers are allocated from */
    int mappable;           /* memory_type is host-visible+coherent and staging is not forced */
    int host_type;          /* host-visible, coherent type for staging and host arrays */
    int rope_f32;           /* $DSR1_VK_ROPE_F32=1: the f32 rope even with f64 (tests) */
    pthread_mutex_t lock;   /* pipelines, blocks, placed list, queue submission */
    vk_pipeline pipelines[DSRI_VK_SHADER_COUNT];
    vk_block *blocks;
    struct vk_xfer *xfer; /* transfers for place / buf_new (memory.c) */
    vk_buf *placed;
    vk_part iq_tables;  /* the IQ types' grids (vk_bind_iq_tables), made on first use */
    uint64_t allocated; /* bytes of device memory allocated through this device */
};

/* the limits the ops need */
static inline const VkPhysicalDeviceLimits *vk_limits(const dsri_device *dev) { return &dev->phys.props.limits; }

/* Allocate a buffer of one part with its own memory of `type` (mapped when
 * host-visible and `map`). */
dsr1_status vk_part_new(dsri_device *dev, uint64_t bytes, int type, int map, VkFlags usage, vk_part *out);
void vk_part_free(dsri_device *dev, vk_part *p);
/* The pipeline of a shader, created on first use (under dev->lock). */
dsr1_status vk_pipeline_get(dsri_device *dev, int shader, const vk_pipeline **out);
/* Submit one command buffer and wait for it (the queue is used under
 * dev->lock; `locked`: the caller holds it). */
VkResult vk_submit_wait(dsri_device *dev, VkCommandBuffer cmd, VkFence fence, int locked);
/* 1 for the weight types whose shaders read the IQ table buffer
 * (shaders/iq_tables.glsl: IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S). */
int vk_type_reads_iq_tables(uint32_t type);
/* Free placed weights, their blocks, the IQ tables and the transfer
 * resources (close). */
void vk_memory_release_all(dsri_device *dev);
/* dsr1 status and message for a failed Vulkan call */
dsr1_status vk_result_error(VkResult r, const char *what);

dsr1_status vk_device_open(int index, dsri_device **out);
void vk_device_close(dsri_device *dev);
uint64_t vk_device_free_memory(dsri_device *dev);
dsr1_status vk_buf_new(dsri_device *dev, uint64_t bytes, dsri_buf **out);
void vk_buf_free(dsri_buf *buf);
dsr1_status vk_place(dsri_device *dev, const dsri_tensor *src, dsri_tensor *out);
int vk_device_count(void);
dsr1_status vk_device_describe(int index, dsri_device_desc *desc);

/* ---- instances (instance.c) ---- */

/* One storage-buffer binding (see vk_view_rows). */
typedef struct vk_view {
    VkBuffer buffer;
    uint64_t offset; /* multiple of minStorageBufferOffsetAlignment */
    uint64_t range;
    uint32_t skip;   /* bytes from offset to the view's first row */
    int64_t rows;    /* rows of the tensor this binding covers */
} vk_view;

#define VK_MAX_POOLS 64
#define VK_MAX_CHUNKS 64

struct dsri_backend {
    dsri_device *dev;
    dsri_backend_config cfg;
    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkFence fence;
    VkDescriptorPool pools[VK_MAX_POOLS]; /* descriptor pools; the batch takes sets from pools[pool_at] */
    int n_pools, pool_at;
    uint32_t sets_used; /* sets taken from pools[pool_at] */
    vk_part chunks[VK_MAX_CHUNKS]; /* host-visible ring: host arrays and staged uploads/downloads */
    int n_chunks, chunk;
    uint64_t ring_used; /* bytes used in chunks[chunk] */
    int recording;       /* cmd has begun */
    int n_commands;      /* commands recorded since the last submit */
    dsr1_status status;  /* sticky */
    char message[256];
};

/* Record a sticky failure (the first one wins); later ops are skipped and
 * sync returns it. Returns the status. */
dsr1_status vk_fail(dsri_backend *be, dsr1_status status, const char *fmt, ...) DSRI_PRINTF(3, 4);
/* Bind rows [first, first + n) of t, or as many as fit one binding (at
 * least 1). Returns the rows bound, 0 after a failure. */
int64_t vk_view_rows(dsri_backend *be, const dsri_tensor *t, int64_t first, int64_t n, vk_view *view);
/* A copy of `bytes` of host data, made now, bound for the next dispatches. */
int vk_view_host(dsri_backend *be, const void *data, uint64_t bytes, vk_view *view);
/* For weights of a type that reads the IQ tables: bind the device's table
 * buffer (made and filled on first use) at views[n], dequant.glsl's
 * IQ_BINDING, and return n + 1. Other types: n. 0 after a failure
 * (recorded). */
int vk_bind_iq_tables(dsri_backend *be, uint32_t type, vk_view *views, int n);
/* Record a dispatch (after a barrier that makes earlier commands' writes visible). */
void vk_dispatch(dsri_backend *be, int shader, const vk_view *views, int n_views, const void *push,
                 uint32_t push_bytes, uint32_t gx, uint32_t gy, uint32_t gz);
/* Record a buffer-to-buffer copy (same barrier rule). */
void vk_record_copy(dsri_backend *be, VkBuffer src, uint64_t src_offset, VkBuffer dst, uint64_t dst_offset,
                    uint64_t bytes);
/* Alignment of ring offsets (minStorageBufferOffsetAlignment, at least 4). */
uint64_t vk_align(const dsri_backend *be);
/* Bytes of a row of t (cols elements of its type). */

dsr1_status vk_create(const dsri_backend_config *cfg, dsri_device *dev, dsri_backend **out);
void vk_destroy(dsri_backend *be);
dsr1_status vk_sync(dsri_backend *be);
dsr1_status vk_upload(dsri_backend *be, const dsri_tensor *t, const void *src);
dsr1_status vk_download(dsri_backend *be, const dsri_tensor *t, void *dst);

/* ---- ops (ops.c, mm.c) ---- */
/* 1 when the shaders read weights of this type (placement refuses the others) */
int vk_mm_has_kernel(uint32_t type);
void vk_op_get_rows(dsri_backend *be, const dsri_tensor *w, const int32_t *ids, const dsri_tensor *y);
void vk_op_matmul(dsri_backend *be, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y);
void vk_op_matmul_t(dsri_backend *be, const dsri_tensor *w, const dsri_tensor *x, const dsri_tensor *y);
void vk_op_matmul_heads(dsri_backend *be, const dsri_tensor *w, int64_t w_step, int n_heads, int transposed,
                        const dsri_tensor *x, int64_t x_step, const dsri_tensor *y, int64_t y_step,
                        const dsri_tensor *work);
void vk_op_rmsnorm(dsri_backend *be, const dsri_tensor *x, const dsri_tensor *w, const dsri_tensor *y, float eps);
void vk_op_add(dsri_backend *be, const dsri_tensor *y, const dsri_tensor *x);
void vk_op_silu_mul(dsri_backend *be, const dsri_tensor *g, const dsri_tensor *u);
void vk_op_rope(dsri_backend *be, const dsri_tensor *x, int n_heads, int head_dim, int rot_dim, const int32_t *pos,
                const dsri_tensor *freq, float mscale, int neox);
void vk_op_attention(dsri_backend *be, const dsri_tensor *q, const dsri_tensor *k, const dsri_tensor *v,
                     const dsri_tensor *out, const int32_t *pos, int n_head, int n_head_kv, int dk, int dv,
                     float scale);
void vk_op_copy(dsri_backend *be, const dsri_tensor *src, const dsri_tensor *dst);
void vk_op_fill(dsri_backend *be, const dsri_tensor *y, float value);
void vk_op_moe_route(dsri_backend *be, const dsri_router_config *cfg, const dsri_tensor *logits,
                     const dsri_tensor *bias, const dsri_tensor *ids, const dsri_tensor *weights);
void vk_op_moe_ffn(dsri_backend *be, const dsri_tensor *gate, const dsri_tensor *up, const dsri_tensor *down,
                   int64_t ff, const dsri_tensor *x, const dsri_tensor *ids, const dsri_tensor *weights,
                   const dsri_tensor *y, const dsri_tensor *work);

#endif
