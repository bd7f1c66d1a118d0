/*
 * Devices a model can offload to (dsr1_device_count / dsr1_device_info),
 * and the rule choosing one (dsri_device_choose). Today these are the
 * Vulkan backend's devices.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/devices.h"
#include "core/error.h"

int32_t dsr1_device_count(void)
{
#ifdef DSRI_HAVE_VULKAN
    return dsri_backend_vulkan.device_count();
#else
    return 0;
#endif
}

dsr1_status dsr1_device_info(int32_t index, dsr1_device_props *props)
{
    if (!props || props->size < offsetof(dsr1_device_props, name))
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "dsr1_device_info: props is NULL or its size is not set");
#ifdef DSRI_HAVE_VULKAN
    dsri_device_desc d;
    dsr1_status st = dsri_backend_vulkan.device_describe(index, &d);
    if (st)
        return st;
    dsr1_device_props full;
    memset(&full, 0, sizeof full);
    full.size = props->size;
    snprintf(full.name, sizeof full.name, "%s", d.name);
    snprintf(full.backend, sizeof full.backend, "%s", dsri_backend_vulkan.name);
    full.is_cpu = d.is_cpu;
    full.memory = d.memory;
    memcpy(props, &full, props->size < sizeof full ? props->size : sizeof full);
    return DSR1_OK;
#else
    return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "device %d does not exist: this build has no device backend",
                      (int)index);
#endif
}

const dsri_backend_ops *dsri_device_backend(int index, int *backend_index)
{
    /* one device backend today: the list is its devices in its order */
    if (index < 0 || index >= dsr1_device_count())
        return NULL;
    *backend_index = index;
#ifdef DSRI_HAVE_VULKAN
    return &dsri_backend_vulkan;
#else
    return NULL;
#endif
}

/* a case-insensitive substring test */
static int contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && (hay[i] | 32) == (needle[i] | 32))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

dsr1_status dsri_device_choose(const char *spec, int *index)
{
    if (!spec || !*spec)
        spec = getenv("DSR1_DEVICE");
    int n = dsr1_device_count();
    if (n == 0)
        return dsri_error(DSR1_ERR_UNSUPPORTED, "no device%s%s%s to offload to (%s)", spec && *spec ? " '" : "",
                          spec && *spec ? spec : "", spec && *spec ? "'" : "",
#ifdef DSRI_HAVE_VULKAN
                          "no Vulkan device found: `dsr1 devices` lists them"
#else
                          "this build has no Vulkan backend"
#endif
        );
    dsr1_device_props p;
    if (spec && *spec) {
        char *end;
        long i = strtol(spec, &end, 10);
        if (*end == '\0') {
            if (i < 0 || i >= n)
                return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "device %ld does not exist (%d found: `dsr1 devices`)",
                                  i, n);
            *index = (int)i;
            return DSR1_OK;
        }
        for (int k = 0; k < n; k++) {
            p.size = sizeof p;
            if (dsr1_device_info(k, &p) == DSR1_OK && (contains(p.name, spec) || contains(p.backend, spec))) {
                *index = k;
                return DSR1_OK;
            }
        }
        return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "no device matches \"%s\" (`dsr1 devices` lists them)", spec);
    }
    /* the first GPU; a CPU-type device only when it is the only one */
    for (int k = 0; k < n; k++) {
        p.size = sizeof p;
        if (dsr1_device_info(k, &p) == DSR1_OK && !p.is_cpu) {
            *index = k;
            return DSR1_OK;
        }
    }
    if (n == 1) {
        *index = 0;
        return DSR1_OK;
    }
    return dsri_error(DSR1_ERR_UNSUPPORTED,
                      "only CPU-type Vulkan devices were found; choose one by index or name (--device, DSR1_DEVICE)");
}
