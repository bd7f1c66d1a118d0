/*
 * The Vulkan loader, opened at run time (dlopen of libvulkan.so.1, never
 * linked), an instance on it, and the list of usable physical devices.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vk_internal.h"
#include "core/alloc.h"

#define VALIDATION_LAYER "VK_LAYER_KHRONOS_validation"
#define DEBUG_UTILS_EXT "VK_EXT_debug_utils"

/* Validation messages are test failures: print each one and count it. */
static VkBool32 on_validation_message(VkFlags severity, VkFlags types, const VkDebugUtilsMessengerCallbackDataEXT *data,
                                      void *user)
{
    (void)types;
    vk_api *api = user;
    atomic_fetch_add(&api->n_messages, 1);
    fprintf(stderr, "vulkan validation (%s): %s\n",
            severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT ? "error" : "warning",
            data && data->pMessage ? data->pMessage : "?");
    return 0;
}

static int layer_present(vk_api *api, const char *name)
{
    uint32_t n = 0;
    if (api->vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || n == 0)
        return 0;
    VkLayerProperties *layers = dsri_calloc(n, sizeof *layers);
    int found = 0;
    if (layers && api->vkEnumerateInstanceLayerProperties(&n, layers) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(layers[i].layerName, name) == 0;
    dsri_free(layers);
    return found;
}

dsr1_status vk_api_open(vk_api *api)
{
    memset(api, 0, sizeof *api);
    const char *path = getenv("DSR1_VK_LOADER"); /* another loader (or a missing one, in tests) */
    if (!path || !*path)
        path = "libvulkan.so.1";
    api->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!api->lib)
        return dsri_error(DSR1_ERR_UNSUPPORTED, "no Vulkan: the loader %s cannot be opened (%s)", path, dlerror());
    /* dlsym returns an object pointer; copying it is the portable way to get the function */
    void *sym = dlsym(api->lib, "vkGetInstanceProcAddr");
    if (!sym) {
        vk_api_close(api);
        return dsri_error(DSR1_ERR_UNSUPPORTED, "no Vulkan: libvulkan.so.1 has no vkGetInstanceProcAddr");
    }
    memcpy(&api->vkGetInstanceProcAddr, &sym, sizeof sym);
#define DSRI_VK_LOAD(name, ret, args) \
    { PFN_vkVoidFunction f = api->vkGetInstanceProcAddr(NULL, #name); memcpy(&api->name, &f, sizeof f); }
    DSRI_VK_GLOBAL_FUNCS(DSRI_VK_LOAD)
    if (!api->vkCreateInstance || !api->vkEnumerateInstanceLayerProperties) {
        vk_api_close(api);
        return dsri_error(DSR1_ERR_UNSUPPORTED, "no Vulkan: the loader lacks vkCreateInstance");
    }

    const char *env = getenv("DSR1_VK_VALIDATION");
    int validation = env && strcmp(env, "1") == 0;
    if (validation && !layer_present(api, VALIDATION_LAYER)) {
        vk_api_close(api);
        return dsri_error(DSR1_ERR_UNSUPPORTED, "DSR1_VK_VALIDATION=1 but the layer %s is not installed",
                          VALIDATION_LAYER);
    }
    const char *layers[] = {VALIDATION_LAYER};
    const char *exts[] = {DEBUG_UTILS_EXT};
    VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO, NULL, "libdsr1", 1, "libdsr1", 1, VK_API_VERSION_1_1};
    VkInstanceCreateInfo ci = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, NULL, 0, &app, 0, NULL, 0, NULL};
    VkDebugUtilsMessengerCreateInfoEXT mi = {
        VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT, NULL, 0,
        VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
            VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        on_validation_message, api};
    if (validation) {
        ci.enabledLayerCount = 1;
        ci.ppEnabledLayerNames = layers;
        ci.enabledExtensionCount = 1;
        ci.ppEnabledExtensionNames = exts;
        ci.pNext = &mi; /* also reports on instance creation and destruction */
    }
    VkResult r = api->vkCreateInstance(&ci, NULL, &api->instance);
    if (r != VK_SUCCESS) {
        api->instance = NULL;
        vk_api_close(api);
        if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
            return dsri_error(DSR1_ERR_UNSUPPORTED, "no Vulkan: no driver (VK_ERROR_INCOMPATIBLE_DRIVER)");
        return dsri_error(DSR1_ERR_UNSUPPORTED, "no Vulkan: vkCreateInstance failed (VkResult %d)", (int)r);
    }
#define DSRI_VK_LOAD_INSTANCE(name, ret, args) \
    { PFN_vkVoidFunction f = api->vkGetInstanceProcAddr(api->instance, #name); memcpy(&api->name, &f, sizeof f); \
      if (!f) missing = #name; }
    const char *missing = NULL;
    DSRI_VK_INSTANCE_FUNCS(DSRI_VK_LOAD_INSTANCE)
    if (missing) {
        vk_api_close(api);
        return dsri_error(DSR1_ERR_UNSUPPORTED, "no Vulkan 1.1: the loader lacks %s", missing);
    }
    if (validation) {
        DSRI_VK_DEBUG_FUNCS(DSRI_VK_LOAD_INSTANCE)
        if (missing || api->vkCreateDebugUtilsMessengerEXT(api->instance, &mi, NULL, &api->messenger) != VK_SUCCESS) {
            vk_api_close(api);
            return dsri_error(DSR1_ERR_UNSUPPORTED, "validation requested but %s is not usable", DEBUG_UTILS_EXT);
        }
    }
    return DSR1_OK;
}

void vk_api_close(vk_api *api)
{
    if (api->messenger)
        api->vkDestroyDebugUtilsMessengerEXT(api->instance, api->messenger, NULL);
    if (api->instance)
        api->vkDestroyInstance(api->instance, NULL);
    if (api->lib)
        dlclose(api->lib);
    api->messenger = 0;
    api->instance = NULL;
    api->lib = NULL;
}

static int has_extension(vk_api *api, VkPhysicalDevice pd, const char *name)
{
    uint32_t n = 0;
    if (api->vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS || n == 0)
        return 0;
    VkExtensionProperties *ext = dsri_calloc(n, sizeof *ext);
    int found = 0;
    if (ext && api->vkEnumerateDeviceExtensionProperties(pd, NULL, &n, ext) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(ext[i].extensionName, name) == 0;
    dsri_free(ext);
    return found;
}

/* Fill *out for pd; 0 when the backend cannot use it. */
static int inspect(vk_api *api, VkPhysicalDevice pd, vk_physical *out)
{
    memset(out, 0, sizeof *out);
    out->handle = pd;
    VkPhysicalDeviceSubgroupProperties sub = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES, NULL, 0, 0, 0, 0};
    VkPhysicalDeviceMaintenance3Properties m3 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES, &sub, 0,
                                                 0};
    VkPhysicalDeviceProperties2 p2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &m3, {0}};
    api->vkGetPhysicalDeviceProperties2(pd, &p2);
    out->props = p2.properties;
    if (out->props.apiVersion < VK_API_VERSION_1_1)
        return 0;
    out->subgroup_size = sub.subgroupSize ? sub.subgroupSize : 1;
    out->max_allocation = m3.maxMemoryAllocationSize;

    VkPhysicalDeviceMemoryProperties2 mp = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2, NULL, {0}};
    api->vkGetPhysicalDeviceMemoryProperties2(pd, &mp);
    out->mem = mp.memoryProperties;

    int is12 = out->props.apiVersion >= VK_API_VERSION_1_2;
    VkPhysicalDeviceShaderFloat16Int8Features f16i8 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES,
                                                       NULL, 0, 0};
    VkPhysicalDevice8BitStorageFeatures s8 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES, &f16i8, 0, 0, 0};
    VkPhysicalDevice16BitStorageFeatures s16 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
                                                is12 ? (void *)&s8 : NULL, 0, 0, 0, 0};
    VkPhysicalDeviceFeatures2 f2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &s16, {{0}}};
    api->vkGetPhysicalDeviceFeatures2(pd, &f2);
    if (!s16.storageBuffer16BitAccess)
        return 0;
    out->has_8bit_storage = (int)s8.storageBuffer8BitAccess;
    out->has_float16 = (int)f16i8.shaderFloat16;
    out->has_int8 = (int)f16i8.shaderInt8;
    out->has_int16 = (int)f2.features.f[VK_FEATURE_SHADER_INT16];
    out->has_float64 = (int)f2.features.f[VK_FEATURE_SHADER_FLOAT64];
    out->has_memory_budget = has_extension(api, pd, "VK_EXT_memory_budget");

    uint32_t nq = 0;
    api->vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties q[16];
    if (nq > 16)
        nq = 16;
    api->vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, q);
    for (uint32_t i = 0; i < nq; i++)
        if (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
            out->queue_family = i;
            return 1;
        }
    return 0;
}

int vk_physical_list(vk_api *api, vk_physical *out, int max)
{
    uint32_t n = 0;
    if (api->vkEnumeratePhysicalDevices(api->instance, &n, NULL) != VK_SUCCESS || n == 0)
        return 0;
    VkPhysicalDevice *pds = dsri_calloc(n, sizeof *pds);
    if (!pds)
        return 0;
    int count = 0;
    VkResult r = api->vkEnumeratePhysicalDevices(api->instance, &n, pds);
    if (r == VK_SUCCESS || r == VK_INCOMPLETE)
        for (uint32_t i = 0; i < n; i++) {
            vk_physical pd;
            if (!inspect(api, pds[i], &pd))
                continue;
            if (out && count < max)
                out[count] = pd;
            count++;
        }
    dsri_free(pds);
    return out && count > max ? max : count;
}

uint64_t vk_physical_memory(const vk_physical *pd)
{
    uint64_t best = 0;
    for (uint32_t i = 0; i < pd->mem.memoryHeapCount; i++)
        if ((pd->mem.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && pd->mem.memoryHeaps[i].size > best)
            best = pd->mem.memoryHeaps[i].size;
    return best;
}

int vk_device_count(void)
{
    vk_api api;
    if (vk_api_open(&api) != DSR1_OK)
        return 0;
    int n = vk_physical_list(&api, NULL, 0);
    vk_api_close(&api);
    return n;
}

dsr1_status vk_device_describe(int index, dsri_device_desc *desc)
{
    vk_api api;
    dsr1_status st = vk_api_open(&api);
    if (st)
        return st;
    vk_physical list[16];
    int n = vk_physical_list(&api, list, 16);
    vk_api_close(&api);
    if (index < 0 || index >= n)
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "Vulkan device %d does not exist (%d found)", index, n);
    memset(desc, 0, sizeof *desc);
    snprintf(desc->name, sizeof desc->name, "%s", list[index].props.deviceName);
    desc->is_cpu = list[index].props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
    desc->memory = vk_physical_memory(&list[index]);
    return DSR1_OK;
}
