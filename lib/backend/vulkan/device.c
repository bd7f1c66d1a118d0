/*
 * Vulkan devices: open/close, device memory (buffers of their own, and the
 * blocks placed weights are carved from), placing weights, pipelines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vk_internal.h"
#include "core/alloc.h"
#include "quant/quant.h"

/* Blocks for placed weights: at most 1 GiB or what one allocation may be. */
#define BLOCK_MAX ((uint64_t)1 << 30)
#define PUSH_BYTES 128u /* every pipeline's push-constant range (the guaranteed minimum) */
#define FENCE_TIMEOUT_NS (600ull * 1000000000ull)

dsr1_status vk_result_error(VkResult r, const char *what)
{
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_OUT_OF_POOL_MEMORY ||
        r == VK_ERROR_TOO_MANY_OBJECTS)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan: %s: out of %s memory (VkResult %d)", what,
                          r == VK_ERROR_OUT_OF_HOST_MEMORY ? "host" : "device", (int)r);
    if (r == VK_ERROR_DEVICE_LOST)
        return dsri_error(DSR1_ERR_INTERNAL, "Vulkan: %s: the device was lost", what);
    if (r == VK_TIMEOUT)
        return dsri_error(DSR1_ERR_INTERNAL, "Vulkan: %s: the device did not finish in %llu s", what,
                          FENCE_TIMEOUT_NS / 1000000000ull);
    return dsri_error(DSR1_ERR_INTERNAL, "Vulkan: %s failed (VkResult %d)", what, (int)r);
}

VkResult vk_submit_wait(dsri_device *dev, VkCommandBuffer cmd, VkFence fence, int locked)
{
    VkSubmitInfo si = {VK_STRUCTURE_TYPE_SUBMIT_INFO, NULL, 0, NULL, NULL, 1, &cmd, 0, NULL};
    if (!locked)
        pthread_mutex_lock(&dev->lock);
    VkResult r = dev->api.vkQueueSubmit(dev->queue, 1, &si, fence);
    if (!locked)
        pthread_mutex_unlock(&dev->lock);
    if (r != VK_SUCCESS)
        return r;
    r = dev->api.vkWaitForFences(dev->device, 1, &fence, 1, FENCE_TIMEOUT_NS);
    if (r == VK_SUCCESS)
        r = dev->api.vkResetFences(dev->device, 1, &fence);
    return r;
}

/* ---- pipelines ---- */

static void pipeline_free(dsri_device *dev, vk_pipeline *p)
{
    if (p->pipeline)
        dev->api.vkDestroyPipeline(dev->device, p->pipeline, NULL);
    if (p->layout)
        dev->api.vkDestroyPipelineLayout(dev->device, p->layout, NULL);
    if (p->set_layout)
        dev->api.vkDestroyDescriptorSetLayout(dev->device, p->set_layout, NULL);
    if (p->module)
        dev->api.vkDestroyShaderModule(dev->device, p->module, NULL);
    memset(p, 0, sizeof *p);
}

static VkResult pipeline_make(dsri_device *dev, const dsri_vk_shader *sh, vk_pipeline *p)
{
    VkShaderModuleCreateInfo mi = {VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, NULL, 0, sh->n_words * 4, sh->words};
    VkResult r = dev->api.vkCreateShaderModule(dev->device, &mi, NULL, &p->module);
    if (r != VK_SUCCESS)
        return r;
    VkDescriptorSetLayoutBinding b[DSRI_VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < sh->n_bindings; i++) {
        VkDescriptorSetLayoutBinding one = {i, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL};
        b[i] = one;
    }
    VkDescriptorSetLayoutCreateInfo li = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, NULL, 0, sh->n_bindings,
                                          b};
    r = dev->api.vkCreateDescriptorSetLayout(dev->device, &li, NULL, &p->set_layout);
    if (r != VK_SUCCESS)
        return r;
    VkPushConstantRange pr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, PUSH_BYTES};
    VkPipelineLayoutCreateInfo pli = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, NULL, 0, 1, &p->set_layout, 1, &pr};
    r = dev->api.vkCreatePipelineLayout(dev->device, &pli, NULL, &p->layout);
    if (r != VK_SUCCESS)
        return r;
    uint32_t spec[2] = {dev->wg_size, dev->subgroup_size};
    VkSpecializationMapEntry me[2] = {{0, 0, 4}, {1, 4, 4}};
    VkSpecializationInfo si = {2, me, sizeof spec, spec};
    VkComputePipelineCreateInfo ci = {
        VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, NULL, 0,
        {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, NULL, 0, VK_SHADER_STAGE_COMPUTE_BIT, p->module, "main", &si},
        p->layout, 0, -1};
    r = dev->api.vkCreateComputePipelines(dev->device, 0, 1, &ci, NULL, &p->pipeline);
    p->n_bindings = sh->n_bindings;
    return r;
}

dsr1_status vk_pipeline_get(dsri_device *dev, int shader, const vk_pipeline **out)
{
    if (shader < 0 || shader >= DSRI_VK_SHADER_COUNT)
        return dsri_error(DSR1_ERR_INTERNAL, "Vulkan: shader %d does not exist", shader);
    pthread_mutex_lock(&dev->lock);
    vk_pipeline *p = &dev->pipelines[shader];
    VkResult r = VK_SUCCESS;
    if (!p->pipeline) {
        r = pipeline_make(dev, &dsri_vk_shaders[shader], p);
        if (r != VK_SUCCESS)
            pipeline_free(dev, p);
    }
    pthread_mutex_unlock(&dev->lock);
    if (r != VK_SUCCESS)
        return vk_result_error(r, dsri_vk_shaders[shader].name);
    *out = p;
    return DSR1_OK;
}

/* ---- open / close ---- */

static uint64_t env_bytes(const char *name)
{
    const char *s = getenv(name);
    return s ? strtoull(s, NULL, 10) : 0;
}

static int pick_memory_types(dsri_device *dev)
{
    const VkPhysicalDeviceMemoryProperties *m = &dev->phys.mem;
    uint64_t heap = vk_physical_memory(&dev->phys);
    dev->memory_type = -1;
    dev->host_type = -1;
    for (uint32_t i = 0; i < m->memoryTypeCount; i++) {
        VkFlags f = m->memoryTypes[i].propertyFlags;
        if (dev->memory_type < 0 && (f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) &&
            m->memoryHeaps[m->memoryTypes[i].heapIndex].size == heap)
            dev->memory_type = (int)i;
    }
    const VkFlags hv = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    for (uint32_t i = 0; i < m->memoryTypeCount; i++)
        if ((m->memoryTypes[i].propertyFlags & hv) == hv && dev->host_type < 0)
            dev->host_type = (int)i;
    if (dev->memory_type < 0)
        dev->memory_type = dev->host_type;
    if (dev->memory_type < 0 || dev->host_type < 0)
        return 0;
    const char *force = getenv("DSR1_VK_STAGING");
    const char *rope = getenv("DSR1_VK_ROPE_F32");
    dev->rope_f32 = rope && strcmp(rope, "1") == 0;
    dev->mappable = (m->memoryTypes[dev->memory_type].propertyFlags & hv) == hv && !(force && strcmp(force, "1") == 0);
    return 1;
}

dsr1_status vk_device_open(int index, dsri_device **out)
{
    dsri_device *dev = dsri_calloc(1, sizeof *dev);
    if (!dev)
        return dsri_error(DSR1_ERR_OUT_OF_MEMORY, "Vulkan: out of memory");
    dsr1_status st = vk_api_open(&dev->api);
    if (st) {
        dsri_free(dev);
        return st;
    }
    pthread_mutex_init(&dev->lock, NULL);
    vk_physical list[16];
    int n = vk_physical_list(&dev->api, list, 16);
    if (index < 0 || index >= n) {
        vk_device_close(dev);
        if (n == 0)
            return dsri_error(DSR1_ERR_UNSUPPORTED, "no Vulkan: no device with Vulkan 1.1, compute and 16-bit storage");
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "Vulkan device %d does not exist (%d found)", index, n);
    }
    dev->phys = list[index];
    const vk_physical *pd = &dev->phys;
    if (!pick_memory_types(dev)) {
        vk_device_close(dev);
        return dsri_error(DSR1_ERR_UNSUPPORTED, "Vulkan device '%s' has no usable memory type",
                          pd->props.deviceName);
    }

    int is12 = pd->props.apiVersion >= VK_API_VERSION_1_2;
    VkPhysicalDeviceShaderFloat16Int8Features f16i8 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
                                                       NULL, (VkBool32)pd->has_float16, (VkBool32)pd->has_int8};
    VkPhysicalDevice8BitStorageFeatures s8 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES, &f16i8,
                                              (VkBool32)pd->has_8bit_storage, 0, 0};
    VkPhysicalDevice16BitStorageFeatures s16 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
                                                is12 ? (void *)&s8 : NULL, 1, 0, 0, 0};
    VkPhysicalDeviceFeatures2 f2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &s16, {{0}}};
    f2.features.f[VK_FEATURE_SHADER_INT16] = (VkBool32)pd->has_int16;
    f2.features.f[VK_FEATURE_SHADER_FLOAT64] = (VkBool32)pd->has_float64;
    float priority = 1.0f;
    VkDeviceQueueCreateInfo qi = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, NULL, 0, pd->queue_family, 1, &priority};
    const char *exts[] = {"VK_EXT_memory_budget"};
    VkDeviceCreateInfo di = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, &f2, 0, 1, &qi, 0, NULL,
                             pd->has_memory_budget ? 1u : 0u, exts, NULL};
    VkResult r = dev->api.vkCreateDevice(pd->handle, &di, NULL, &dev->device);
    if (r != VK_SUCCESS) {
        dev->device = NULL;
        vk_device_close(dev);
        return vk_result_error(r, "creating the device");
    }
    dev->api.vkGetDeviceQueue(dev->device, pd->queue_family, 0, &dev->queue);

    const VkPhysicalDeviceLimits *lim = &pd->props.limits;
    dev->subgroup_size = pd->subgroup_size;
    uint32_t wg = dev->subgroup_size > 64 ? dev->subgroup_size : 64;
    while (wg > lim->maxComputeWorkGroupSize[0] || wg > lim->maxComputeWorkGroupInvocations)
        wg /= 2;
    dev->wg_size = wg;
    dev->max_binding = lim->maxStorageBufferRange & ~(uint64_t)15;
    uint64_t max_alloc = pd->max_allocation ? pd->max_allocation : BLOCK_MAX;
    dev->block_size = max_alloc < BLOCK_MAX ? max_alloc : BLOCK_MAX;
    /* tests shrink both to exercise the row chunks of big weights on small ones */
    uint64_t v = env_bytes("DSR1_VK_MAX_BINDING");
    if (v && v < dev->max_binding)
        dev->max_binding = v & ~(uint64_t)15;
    v = env_bytes("DSR1_VK_BLOCK_BYTES");
    if (v && v < dev->block_size)
        dev->block_size = v;
    *out = dev;
    return DSR1_OK;
}

void vk_device_close(dsri_device *dev)
{
    if (!dev)
        return;
    if (dev->device) {
        dev->api.vkDeviceWaitIdle(dev->device);
        for (int i = 0; i < DSRI_VK_SHADER_COUNT; i++)
            pipeline_free(dev, &dev->pipelines[i]);
        vk_memory_release_all(dev);
        dev->api.vkDestroyDevice(dev->device, NULL);
    }
    pthread_mutex_destroy(&dev->lock);
    vk_api_close(&dev->api);
    dsri_free(dev);
}

uint64_t vk_device_free_memory(dsri_device *dev)
{
    uint64_t heap = vk_physical_memory(&dev->phys);
    uint32_t hi = dev->phys.mem.memoryTypes[dev->memory_type].heapIndex;
    if (dev->phys.has_memory_budget) {
        VkPhysicalDeviceMemoryBudgetPropertiesEXT b = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT,
                                                       NULL, {0}, {0}};
        VkPhysicalDeviceMemoryProperties2 mp = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2, &b, {0}};
        dev->api.vkGetPhysicalDeviceMemoryProperties2(dev->phys.handle, &mp);
        if (b.heapBudget[hi])
            return b.heapBudget[hi] > b.heapUsage[hi] ? b.heapBudget[hi] - b.heapUsage[hi] : 0;
    }
    return heap > dev->allocated ? heap - dev->allocated : 0;
}

