/*
 * The Vulkan compute backend's table (backend.h). Device memory, ops
 * recorded into command buffers and run at sync; see README-dev.md for how
 * the files fit together.
 */
#include "backend/vulkan/vk_internal.h"

static int vulkan_available(void) { return vk_device_count() > 0; }

const dsri_backend_ops dsri_backend_vulkan = {
    .name = "vulkan",
    .host_memory = 0,
    .impl = NULL,
    .available = vulkan_available,
    .device_count = vk_device_count,
    .device_describe = vk_device_describe,
    .device_open = vk_device_open,
    .device_close = vk_device_close,
    .device_free_memory = vk_device_free_memory,
    .buf_new = vk_buf_new,
    .buf_free = vk_buf_free,
    .place = vk_place,
    .create = vk_create,
    .destroy = vk_destroy,
    .sync = vk_sync,
    .upload = vk_upload,
    .download = vk_download,
    .get_rows = vk_op_get_rows,
    .matmul = vk_op_matmul,
    .matmul_t = vk_op_matmul_t,
    .matmul_heads = vk_op_matmul_heads,
    .rmsnorm = vk_op_rmsnorm,
    .add = vk_op_add,
    .silu_mul = vk_op_silu_mul,
    .rope = vk_op_rope,
    .attention = vk_op_attention,
    .copy = vk_op_copy,
    .fill = vk_op_fill,
    .moe_route = vk_op_moe_route,
    .moe_ffn = vk_op_moe_ffn,
};
