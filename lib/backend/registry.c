/* Backend registry and selection by name. */
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/error.h"

static const dsri_backend_ops *const backends[] = {
#ifdef DSRI_HAVE_AVX512
    &dsri_backend_avx512,
#endif
#ifdef DSRI_HAVE_AVX2
    &dsri_backend_avx2,
#endif
#ifdef DSRI_HAVE_NEON
    &dsri_backend_neon,
#endif
    &dsri_backend_scalar,
#ifdef DSRI_HAVE_VULKAN
    &dsri_backend_vulkan,
#endif
};

#define N_BACKENDS ((int)(sizeof backends / sizeof backends[0]))

/* Names the project plans; asking for one that is not compiled in gets
 * DSR1_ERR_UNSUPPORTED rather than "unknown". */
static const char *const planned[] = {"avx2", "avx512", "neon", "vulkan"};

int dsri_backend_count(void) { return N_BACKENDS; }

const dsri_backend_ops *dsri_backend_at(int i)
{
    return i >= 0 && i < N_BACKENDS ? backends[i] : NULL;
}

dsr1_status dsri_backend_select(const char *name, const dsri_backend_ops **out)
{
    if (!name || !*name)
        name = getenv("DSR1_BACKEND");
    if (!name || !*name) {
        for (int i = 0; i < N_BACKENDS; i++)
            if (backends[i]->host_memory && backends[i]->available()) {
                *out = backends[i];
                return DSR1_OK;
            }
        return dsri_error(DSR1_ERR_UNSUPPORTED, "no backend is available on this machine");
    }
    for (int i = 0; i < N_BACKENDS; i++)
        if (strcmp(backends[i]->name, name) == 0) {
            if (!backends[i]->available())
                return dsri_error(DSR1_ERR_UNSUPPORTED, "backend '%s' is not usable on this machine", name);
            *out = backends[i];
            return DSR1_OK;
        }
    for (size_t i = 0; i < sizeof planned / sizeof planned[0]; i++)
        if (strcmp(planned[i], name) == 0)
            return dsri_error(DSR1_ERR_UNSUPPORTED, "backend '%s' is not compiled into this build", name);
    return dsri_error(DSR1_ERR_INVALID_ARGUMENT, "unknown backend '%s' (try \"scalar\")", name);
}

const dsri_backend_ops *dsri_backend_find(const char *name)
{
    for (int i = 0; name && i < N_BACKENDS; i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

int dsr1_backend_count(void) { return N_BACKENDS; }

const char *dsr1_backend_name(int index)
{
    const dsri_backend_ops *b = dsri_backend_at(index);
    return b ? b->name : NULL;
}

int dsr1_backend_available(const char *name)
{
    if (!name)
        return 0;
    for (int i = 0; i < N_BACKENDS; i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i]->available();
    return 0;
}
